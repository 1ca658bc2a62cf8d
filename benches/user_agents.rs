//! What reading a User-Agent costs when the classifier has not seen it: `Policy::verdict_for`
//! on the same image request, once with User-Agents that rotate through the 11,600 browsers
//! of `tests/data/`, each in three spellings (a trailing ` r1`, ` r2` on two of them: 34,600,
//! twice what the classifier's table keeps, so every request reads its User-Agent afresh, as
//! for a scraper rotating User-Agents) and once rotating through 32 of
//! them (read once, then found in the table), interleaved in one run. Both sets are browsers,
//! so the rest of the verdict costs the same. Prints both, the difference (the cost of a
//! miss) and the ratio.
//!
//! `cargo bench --bench user_agents`. Instructions: `LENSCAP_BENCH_ROUNDS=4 valgrind
//! --tool=callgrind target/release/deps/user_agents-…`, then `callgrind_annotate
//! --inclusive=yes` on `drive_rotating` and `drive_repeated` ((rounds − 1) × 34,600 requests
//! each, after a warm-up round).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, header};
use lenscap::{PeerAddr, Policy};

fn user_agents() -> Vec<&'static str> {
    [
        include_str!("../tests/data/browsers.txt"),
        include_str!("../tests/data/browsers-generated.txt"),
    ]
    .into_iter()
    .flat_map(str::lines)
    .map(|l| l.trim().trim_matches('\''))
    .filter(|l| !l.is_empty() && !l.starts_with('#'))
    .collect()
}

fn request(ua: &str) -> Request<()> {
    let mut r = Request::get("/photos/IMG_0001.jpg")
        .header(header::USER_AGENT, HeaderValue::from_str(ua).unwrap())
        .header(header::ACCEPT, "image/avif,image/webp,*/*;q=0.8")
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
        .header(header::REFERER, "http://gallery.test/gallery/1")
        .body(())
        .unwrap();
    r.extensions_mut()
        .insert(PeerAddr("203.0.113.9:50000".parse::<SocketAddr>().unwrap()));
    r
}

#[inline(always)]
fn drive(policy: &Policy, requests: &[Request<()>]) -> usize {
    let mut agents = 0;
    for r in requests {
        let (_, verdict) = policy.verdict_for(black_box(r));
        agents += usize::from(verdict.agent.is_some());
    }
    agents
}

// One named function per contender, so callgrind can attribute instructions to each.
#[inline(never)]
fn drive_rotating(policy: &Policy, requests: &[Request<()>]) -> usize {
    black_box(0);
    drive(policy, requests)
}
#[inline(never)]
fn drive_repeated(policy: &Policy, requests: &[Request<()>]) -> usize {
    black_box(1);
    drive(policy, requests)
}

fn main() {
    let policy = Policy::embedded().unwrap();
    let browsers = user_agents();
    let agents: Vec<String> = ["", " r1", " r2"]
        .iter()
        .flat_map(|spelling| browsers.iter().map(move |ua| format!("{ua}{spelling}")))
        .collect();
    let rotating: Vec<_> = agents.iter().map(|ua| request(ua)).collect();
    // Every 360th browser: 32 spread over the list, kept by the table after their first read.
    let few: Vec<&str> = browsers
        .iter()
        .step_by(browsers.len() / 32)
        .take(32)
        .copied()
        .collect();
    let repeated: Vec<_> = (0..agents.len())
        .map(|i| request(few[i % few.len()]))
        .collect();
    let rounds: usize = std::env::var("LENSCAP_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20)
        .max(2);
    let mut totals = [Duration::ZERO; 2];
    let mut named = 0;
    for round in 0..rounds {
        let start = Instant::now();
        named += drive_rotating(&policy, &rotating);
        let rotated = start.elapsed();
        let start = Instant::now();
        assert_eq!(
            drive_repeated(&policy, &repeated),
            0,
            "Chrome is no catalog agent"
        );
        let repeated = start.elapsed();
        if round > 0 {
            totals[0] += rotated;
            totals[1] += repeated;
        }
    }
    assert_eq!(named, 0, "browsers name no catalog agent");
    let per = |d: Duration| d.as_nanos() as f64 / ((rounds - 1) * agents.len()) as f64;
    let [rotating, repeated] = totals.map(per);
    println!(
        "per request ({} User-Agents):\n  rotating through all (a miss each)  {rotating:8.1} ns\n  rotating through 32 (a hit each)    {repeated:8.1} ns\n  a miss costs {:+.1} ns; ratio all / 32: {:.2}",
        agents.len(),
        rotating - repeated,
        rotating / repeated
    );
}
