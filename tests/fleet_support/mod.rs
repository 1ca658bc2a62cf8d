//! What the fleet tests share: real `lenscap serve` instances on a gallery of real JPEGs, a
//! person and a scraper spread over them round-robin, and the processes they need, killed
//! by PID when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds every wait: a hang is a failure.
pub const DEADLINE: Duration = Duration::from_secs(30);
pub const HOST: &str = "gallery.test";
pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0";
pub const PAGES: usize = 4;
pub const PER_PAGE: usize = 12;

pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free loopback ports (held together while chosen, so never the same twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

pub fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < DEADLINE,
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A throwaway `redis-server` on a loopback port: no persistence.
pub fn redis_server(port: u16) -> Running {
    redis_server_with(port, &[])
}

/// A throwaway `redis-server` on a loopback port with `extra` arguments, listening.
pub fn redis_server_with(port: u16, extra: &[std::ffi::OsString]) -> Running {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): install the Debian package redis-server (scripts/test.sh does)")
        });
    wait_for_port(port, "redis-server");
    Running(child)
}

/// A gallery of `PAGES` pages, each embedding `PER_PAGE` real JPEGs.
pub fn gallery(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lenscap-fleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let photos = dir.join("gallery/photos");
    std::fs::create_dir_all(&photos).unwrap();
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 120, 40]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let index: String = (0..PAGES)
        .map(|page| format!("<a href=\"/page{page}.html\">page {page}</a>\n"))
        .collect();
    std::fs::write(dir.join("gallery/index.html"), index).unwrap();
    for page in 0..PAGES {
        let mut html = String::from("<!doctype html><title>The Crown</title>\n");
        for n in 0..PER_PAGE {
            let photo = format!("p{page}-{n}.jpg");
            std::fs::write(photos.join(&photo), &jpeg).unwrap();
            html.push_str(&format!("<img src=\"/photos/{photo}\">\n"));
        }
        std::fs::write(dir.join(format!("gallery/page{page}.html")), html).unwrap();
    }
    dir
}

/// Three instances: each one's process, port and admin port.
pub struct Fleet {
    pub instances: Vec<(Running, u16, u16)>,
    pub dir: PathBuf,
}

/// What the instances share.
#[derive(Clone, Debug)]
pub enum Store {
    /// Nothing: each instance on its own.
    Alone,
    /// One `redis-server` on this port.
    Redis(u16),
    /// A Redis Cluster of the nodes on these ports.
    Cluster(Vec<u16>),
}

impl Store {
    /// The `[store]` section, deciding locally past `timeout`.
    fn section(&self, timeout: &str) -> String {
        let servers = match self {
            Store::Alone => return String::new(),
            Store::Redis(port) => format!("url = \"redis://127.0.0.1:{port}/0\""),
            Store::Cluster(ports) => {
                let nodes: Vec<String> = ports
                    .iter()
                    .map(|port| format!("\"redis://127.0.0.1:{port}\""))
                    .collect();
                format!("nodes = [{}]", nodes.join(", "))
            }
        };
        format!("[store]\nbackend = \"redis\"\n{servers}\ntimeout = \"{timeout}\"\n")
    }
}

pub fn config(port: u16, admin: u16, store: &Store, timeout: &str) -> String {
    config_with(port, admin, store, timeout, "")
}

/// [`config`] with more `[limits]` lines.
pub fn config_with(port: u16, admin: u16, store: &Store, timeout: &str, limits: &str) -> String {
    let store = store.section(timeout);
    // A person here pages faster than the default pace, so that the test needs no sleeps; a
    // script's image budget does not refill during a run, so runs compare exactly.
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\"\nroot = \"gallery\"\n\
         gallery = \"off\"\nwatch = false\n\n[client]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [limits]\npage_pace = {{ rate = \"100/s\", burst = 50 }}\n\
         images = {{ rate = \"1/h\", burst = 10 }}\n{limits}\n{store}"
    )
}

/// Three instances on `store`, each deciding locally when it does not answer within
/// `timeout`.
pub fn fleet(name: &str, store: &Store, timeout: &str) -> Fleet {
    let dir = gallery(name);
    let instances = (0..3).map(|i| instance(&dir, i, store, timeout)).collect();
    Fleet { instances, dir }
}

/// Instance `i`, listening; tried again on other ports when a parallel test took its port
/// between choosing and binding.
pub fn instance(dir: &Path, i: usize, store: &Store, timeout: &str) -> (Running, u16, u16) {
    instance_with(dir, i, store, timeout, "")
}

/// [`instance`] with more `[limits]` lines.
pub fn instance_with(
    dir: &Path,
    i: usize,
    store: &Store,
    timeout: &str,
    limits: &str,
) -> (Running, u16, u16) {
    for _ in 0..5 {
        let [port, admin] = free_ports::<2>();
        let file = dir.join(format!("lenscap-{i}.toml"));
        std::fs::write(&file, config_with(port, admin, store, timeout, limits)).unwrap();
        let log_path = dir.join(format!("lenscap-{i}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lenscap"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut running = Running(child);
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (running, port, admin);
            }
            let exited = running.0.try_wait().unwrap();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if exited.is_some() && log.contains("Address already in use") {
                break;
            }
            assert!(
                exited.is_none() && started.elapsed() < DEADLINE,
                "lenscap {i} did not listen on {port} ({exited:?}): {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("lenscap {i}: every port tried was taken");
}

/// One answer: status and headers.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A person at `address`: views each page, then its photos, requests spread round-robin.
/// Returns every status, in order.
pub fn person(ports: &[u16], address: &str) -> Vec<(String, u16)> {
    let mut next = 0;
    let mut pick = || {
        next += 1;
        ports[next % ports.len()]
    };
    let mut cookie: Option<String> = None;
    let mut statuses = Vec::new();
    for page in 0..PAGES {
        let path = format!("/page{page}.html");
        let mut headers = browser("text/html,application/xhtml+xml,*/*;q=0.8", address);
        let cookie_line = cookie.clone().unwrap_or_default();
        if cookie.is_some() {
            headers.push(("Cookie", &cookie_line));
        }
        let answer = get(pick(), &path, &headers);
        statuses.push((path.clone(), answer.status));
        if let Some(set) = answer.header("set-cookie") {
            cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        let referer = format!("http://{HOST}{path}");
        let cookie_line = cookie.clone().unwrap_or_default();
        for n in 0..PER_PAGE {
            let photo = format!("/photos/p{page}-{n}.jpg");
            let mut headers = browser("image/avif,image/webp,*/*", address);
            headers.push(("Referer", referer.as_str()));
            if cookie.is_some() {
                headers.push(("Cookie", &cookie_line));
            }
            statuses.push((photo.clone(), get(pick(), &photo, &headers).status));
        }
    }
    statuses
}

/// What Firefox sends (accepting `accept`), from `address` behind the trusted proxy.
pub fn browser<'a>(accept: &'a str, address: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("User-Agent", FIREFOX),
        ("Accept", accept),
        ("Accept-Language", "en"),
        ("Accept-Encoding", "gzip, br"),
        ("X-Forwarded-For", address),
    ]
}

/// A script's `n`th request from `address`: a photo no page view vouches for. Its status.
fn scraper_photo(port: u16, address: &str, n: usize) -> u16 {
    let photo = format!("/photos/p{}-{}.jpg", (n / PER_PAGE) % PAGES, n % PER_PAGE);
    get(port, &photo, &browser("image/avif,image/webp,*/*", address)).status
}

/// A script at `address` pulling `count` photos it never saw on a page; how many it got.
pub fn scraper(ports: &[u16], address: &str, count: usize) -> usize {
    (0..count)
        .filter(|&n| scraper_photo(ports[n % ports.len()], address, n) == 200)
        .count()
}

pub fn refused(statuses: &[(String, u16)]) -> Vec<&(String, u16)> {
    statuses.iter().filter(|(_, s)| *s != 200).collect()
}

/// A fresh Redis and three instances on it.
/// Three instances on a new `redis-server`, each connected to it. Their store timeout is one
/// no loaded test machine reaches: a round trip past it makes an instance decide from its
/// own copy, and what these tests measure is the shared one.
pub fn on_one_redis(name: &str) -> (Running, Fleet) {
    let redis_port = free_port();
    let redis = redis_server(redis_port);
    let fleet = fleet(name, &Store::Redis(redis_port), "2s");
    wait_for_store(&admins(&fleet), "ok");
    (redis, fleet)
}

pub fn ports(fleet: &Fleet) -> Vec<u16> {
    fleet.instances.iter().map(|(_, port, _)| *port).collect()
}

/// A visitor cookie issued by the first instance is honoured by the others (no new one is
/// set), and a forged one by none.
pub fn cookie_is_valid_everywhere(ports: &[u16]) {
    let page = |port: u16, cookie: Option<&str>| {
        let mut headers = vec![
            ("User-Agent", FIREFOX),
            ("Accept", "text/html,*/*;q=0.8"),
            ("Accept-Language", "en"),
            ("X-Forwarded-For", "198.51.100.30"),
        ];
        if let Some(cookie) = cookie {
            headers.push(("Cookie", cookie));
        }
        get(port, "/page0.html", &headers)
    };
    let first = page(ports[0], None);
    assert_eq!(first.status, 200);
    let cookie = first
        .header("set-cookie")
        .expect("a first page view gets a visitor cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for &port in &ports[1..] {
        let answer = page(port, Some(&cookie));
        assert_eq!(answer.status, 200);
        // A cookie the instance did not honour would be replaced by a new one.
        assert_eq!(
            answer.header("set-cookie"),
            None,
            "port {port} refused the cookie"
        );
    }
    // A forged cookie is not honoured anywhere: the check can fail.
    let (name, value) = cookie.split_once('=').unwrap();
    let swap = if value.as_bytes()[2] == b'A' {
        "B"
    } else {
        "A"
    };
    let forged = format!("{name}={}{swap}{}", &value[..2], &value[3..]);
    assert!(page(ports[1], Some(&forged)).header("set-cookie").is_some());
}

pub fn readyz(admin: u16) -> String {
    get(admin, "/readyz", &[]).body
}

pub fn wait_for_store(admins: &[u16], state: &str) {
    let started = Instant::now();
    loop {
        let all: Vec<String> = admins.iter().map(|&a| readyz(a)).collect();
        if all
            .iter()
            .all(|r| r.contains(&format!("store=\"{state}\"")))
        {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the instances never reported store={state:?}: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A script at `address` sending `count` requests for photos it never saw on a page all at
/// once, spread round-robin over `ports`; how many it got.
pub fn scraper_at_once(ports: &[u16], address: &str, count: usize) -> usize {
    let start = std::sync::Barrier::new(count);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let sent: Vec<_> = (0..count)
            .map(|n| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    scraper_photo(ports[n % ports.len()], address, n)
                })
            })
            .collect();
        sent.into_iter().map(|t| t.join().unwrap()).collect()
    });
    statuses.iter().filter(|s| **s == 200).count()
}

/// A counter summed over the instances' `/metrics`.
pub fn counter(admins: &[u16], name: &str) -> u64 {
    admins
        .iter()
        .map(|&admin| {
            get(admin, "/metrics", &[])
                .body
                .lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        })
        .sum()
}

pub fn admins(fleet: &Fleet) -> Vec<u16> {
    fleet.instances.iter().map(|(_, _, admin)| *admin).collect()
}

/// Checks that a scraper's burst of concurrent requests over the fleet gets no more than one
/// instance's image budget (`burst`), plus one per decision an instance made from its local
/// state (a merge that did not answer within `timeout`: the documented bound).
pub fn one_budget_at_once(shared: &Fleet, address: &str, burst: usize) {
    let admins = admins(shared);
    let before = counter(&admins, "lenscap_store_fallbacks_total");
    let got = scraper_at_once(&ports(shared), address, 3 * burst);
    let local = counter(&admins, "lenscap_store_fallbacks_total") - before;
    let late = counter(&admins, "lenscap_store_late_refusals_total");
    eprintln!(
        "at once: {got} of {} served, {late} refused after the merge, {local} decided locally",
        3 * burst
    );
    assert!(got >= 1, "the scraper got nothing: the budget was not used");
    assert!(
        got as u64 <= burst as u64 + local,
        "spread over three instances at once the scraper got {got} (budget {burst}, {local} local decisions)"
    );
}

/// A person without cookies at `address` clicking through `clicks` pages at once, each
/// with the previous page as Referer, round-robin: how many answers were the way-through
/// page holding a pass (each mints one).
pub fn passes_minted(ports: &[u16], address: &str, clicks: usize) -> usize {
    let mut minted = 0;
    let mut from = format!("http://{HOST}/");
    for n in 0..clicks {
        let path = format!("/page{}.html", n % PAGES);
        let mut headers = browser("text/html,application/xhtml+xml,*/*;q=0.8", address);
        headers.push(("Referer", from.as_str()));
        let answer = get(ports[n % ports.len()], &path, &headers);
        if answer.status == 429 && answer.body.contains("/.well-known/lenscap/pass?") {
            minted += 1;
        }
        from = format!("http://{HOST}{path}");
    }
    minted
}
