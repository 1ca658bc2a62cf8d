//! Cost of the transport and datacenter signals, measured per call next to a baseline in the
//! same run: the datacenter lookup and the transport check run on every request; the JA4 and
//! HTTP/2 fingerprints are computed once per connection.
//!
//! `cargo bench --bench transport`. Instructions per call: `LENSCAP_BENCH_ROUNDS=1 valgrind
//! --tool=callgrind target/release/deps/transport-…`, then `callgrind_annotate
//! --inclusive=yes` on the `drive_*` functions (each runs its operation [`CALLS`] times).

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use lenscap::catalog::datacenter::DatacenterRanges;
use lenscap::signals::BrowserUa;
use lenscap::signals::transport::{
    ClientHelloFacts, H2_PREFACE, H2Fingerprint, TlsFingerprint, Transport, contradicts,
};

const CALLS: usize = 200_000;

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// A Chrome ClientHello's lists (the JA4 specification's example).
const CIPHERS: [u16; 16] = [
    0x1a1a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
    0x009c, 0x009d, 0x002f, 0x0035,
];
const EXTENSIONS: [u16; 17] = [
    0x0a0a, 0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
    0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
];
const ALGORITHMS: [u16; 8] = [
    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
];

fn hello() -> ClientHelloFacts<'static> {
    ClientHelloFacts {
        version: 0x0304,
        sni: true,
        ciphers: &CIPHERS,
        extensions: &EXTENSIONS,
        signature_algorithms: &ALGORITHMS,
        alpn: Some(b"h2"),
    }
}

/// Chrome's HTTP/2 opening: preface, SETTINGS, WINDOW_UPDATE, the first HEADERS.
fn h2_opening() -> Vec<u8> {
    let mut bytes = H2_PREFACE.to_vec();
    let frame = |bytes: &mut Vec<u8>, kind: u8, flags: u8, payload: &[u8]| {
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        bytes.extend_from_slice(&[kind, flags]);
        bytes.extend_from_slice(&(u32::from(kind == 1)).to_be_bytes());
        bytes.extend_from_slice(payload);
    };
    let settings: Vec<u8> = [(1u16, 65536u32), (2, 0), (4, 6291456), (6, 262144)]
        .iter()
        .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect();
    frame(&mut bytes, 4, 0, &settings);
    frame(&mut bytes, 8, 0, &15663105u32.to_be_bytes());
    frame(
        &mut bytes,
        1,
        5,
        &[0x82, 0x41, 0x03, b'a', b'.', b'b', 0x87, 0x84],
    );
    bytes
}

#[inline(never)]
fn drive_baseline(ips: &[IpAddr]) -> usize {
    ips.iter().map(|ip| black_box(ip).is_ipv4() as usize).sum()
}

#[inline(never)]
fn drive_datacenter_lookup(ranges: &DatacenterRanges, ips: &[IpAddr]) -> usize {
    ips.iter()
        .filter(|ip| ranges.provider_index(*black_box(*ip)).is_some())
        .count()
}

#[inline(never)]
fn drive_transport_check(browser: &BrowserUa, transport: &Transport) -> usize {
    (0..CALLS)
        .filter(|_| contradicts(black_box(browser), black_box(transport)))
        .count()
}

#[inline(never)]
fn drive_ja4(calls: usize) -> usize {
    (0..calls)
        .map(|_| TlsFingerprint::from_hello(black_box(&hello())).ja4().len())
        .sum()
}

#[inline(never)]
fn drive_h2(opening: &[u8], calls: usize) -> usize {
    (0..calls)
        .filter(|_| {
            matches!(
                H2Fingerprint::read(black_box(opening)),
                lenscap::signals::transport::H2Reading::Done(_)
            )
        })
        .count()
}

fn nanos_per_call(calls: usize, run: impl FnOnce() -> usize) -> f64 {
    let start = Instant::now();
    black_box(run());
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn main() {
    let rounds: usize = std::env::var("LENSCAP_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    let ranges = DatacenterRanges::embedded().unwrap();
    // Addresses spread over the whole space (a few in a cloud range, most not), v4 and v6.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let ips: Vec<IpAddr> = (0..CALLS)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if i % 4 == 0 {
                IpAddr::from(((u128::from(state) << 64) | u128::from(state)).to_be_bytes())
            } else {
                IpAddr::from((state as u32).to_be_bytes())
            }
        })
        .collect();
    let browser = BrowserUa::parse(CHROME.as_bytes());
    let opening = h2_opening();
    let lenscap::signals::transport::H2Reading::Done(h2) = H2Fingerprint::read(&opening) else {
        panic!("the bench's opening does not read");
    };
    let transport = Transport {
        tls: Some(TlsFingerprint::from_hello(&hello())),
        h2: Some(h2),
    };
    let per_connection = CALLS / 20;
    let mut best = [f64::MAX; 5];
    for _ in 0..rounds {
        let times = [
            nanos_per_call(CALLS, || drive_baseline(&ips)),
            nanos_per_call(CALLS, || drive_datacenter_lookup(&ranges, &ips)),
            nanos_per_call(CALLS, || drive_transport_check(&browser, &transport)),
            nanos_per_call(per_connection, || drive_ja4(per_connection)),
            nanos_per_call(per_connection, || drive_h2(&opening, per_connection)),
        ];
        for (best, time) in best.iter_mut().zip(times) {
            *best = best.min(time);
        }
    }
    let [baseline, lookup, check, ja4, h2] = best;
    let hits = drive_datacenter_lookup(&ranges, &ips);
    println!(
        "best of {rounds} rounds, per call:\n  baseline (read the address)          {baseline:7.1} ns\n  datacenter lookup (every request)    {lookup:7.1} ns  ({hits} of {CALLS} addresses in a range, {} prefixes)\n  transport check (every TLS request)  {check:7.1} ns\n  JA4 of a ClientHello (per connection) {ja4:6.1} ns\n  HTTP/2 fingerprint (per connection)  {h2:7.1} ns",
        ranges.len()
    );
}
