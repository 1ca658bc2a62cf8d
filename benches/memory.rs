//! Bytes of limiter and tracker state per tracked client, counted by the allocator, for one
//! million clients, each from its own /24 (so each also costs a subnet record: the worst
//! case), sent through the real layer. Then a flood of a million more addresses against a
//! cap of one million: memory must stay flat.
//!
//! `cargo bench --bench memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};

use futures_util::FutureExt;
use http::{Request, Response, header};
use lenscap::{LenscapLayer, PeerAddr, Policy};
use tower::{Service, ServiceExt};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn request(n: u32) -> Request<()> {
    // One address per /24: 10.0.0.1, 10.0.1.1, …
    let ip = Ipv4Addr::from(0x0a00_0001 + (n << 8));
    let mut r = Request::get("/photos/IMG_0001.jpg")
        .header(
            header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0",
        )
        .header(header::ACCEPT, "image/avif,image/webp,*/*")
        .header(header::ACCEPT_LANGUAGE, "en")
        .header(header::ACCEPT_ENCODING, "gzip, br")
        .body(())
        .unwrap();
    r.extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip.into(), 40_000)));
    r
}

fn main() {
    const CLIENTS: u32 = 1_000_000;
    let layer = LenscapLayer::new(Policy::embedded().unwrap());
    let mut app = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(tower::service_fn(|_r: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let mut send = |n| {
        app.ready()
            .now_or_never()
            .unwrap()
            .unwrap()
            .call(request(n))
            .now_or_never()
            .unwrap()
            .unwrap()
    };
    drop(send(u32::MAX >> 8));
    let before = LIVE.load(Ordering::Relaxed);
    for n in 0..CLIENTS {
        drop(send(n));
    }
    let after = LIVE.load(Ordering::Relaxed);
    let tracked = layer.limits().tracked_clients();
    let per_client = (after - before) as f64 / f64::from(CLIENTS);
    println!(
        "{tracked} clients tracked, {CLIENTS} subnets: {:.1} MiB live, {per_client:.1} bytes per client (client + subnet record, map overhead included)",
        (after - before) as f64 / (1 << 20) as f64
    );
    for n in CLIENTS..2 * CLIENTS {
        drop(send(n));
    }
    let flooded = LIVE.load(Ordering::Relaxed);
    println!(
        "after 1,000,000 more addresses (cap 1,000,000): {} tracked, {} evicted, {:.1} MiB live ({:+.1}% vs at the cap)",
        layer.limits().tracked_clients(),
        layer.limits().evictions(),
        (flooded - before) as f64 / (1 << 20) as f64,
        100.0 * (flooded - after) as f64 / (after - before) as f64
    );
}
