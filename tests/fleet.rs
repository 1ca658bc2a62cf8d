//! Fleet mode: three real `lenscap serve` instances on one real `redis-server`, requests
//! spread round-robin as a load balancer would, behave as one site.
//!
//! Needs `redis-server` (Debian package `redis-server`; `scripts/test.sh` installs it): a
//! missing one fails the tests, naming it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds every wait: a hang is a failure.
const DEADLINE: Duration = Duration::from_secs(30);
const HOST: &str = "gallery.test";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0";
const PAGES: usize = 4;
const PER_PAGE: usize = 12;

fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free loopback ports (held together while chosen, so never the same twice).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

fn wait_for_port(port: u16, what: &str) {
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
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A throwaway `redis-server` on a loopback port: no persistence.
fn redis_server(port: u16) -> Running {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
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
fn gallery(name: &str) -> PathBuf {
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

/// Three instances (ports) sharing `redis` when given, else each on its own.
struct Fleet {
    instances: Vec<(Running, u16, u16)>,
    dir: PathBuf,
}

fn config(port: u16, admin: u16, redis: Option<u16>) -> String {
    let store = match redis {
        Some(redis) => format!(
            "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{redis}/0\"\ntimeout = \"50ms\"\n"
        ),
        None => String::new(),
    };
    // A person here pages faster than the default pace, so that the test needs no sleeps; a
    // script's image budget does not refill during a run, so runs compare exactly.
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\"\nroot = \"gallery\"\n\
         gallery = \"off\"\nwatch = false\n\n[client]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [limits]\npage_pace = {{ rate = \"100/s\", burst = 50 }}\n\
         images = {{ rate = \"1/h\", burst = 10 }}\n\n{store}"
    )
}

fn fleet(name: &str, redis: Option<u16>) -> Fleet {
    let dir = gallery(name);
    let instances = (0..3).map(|i| instance(&dir, i, redis)).collect();
    Fleet { instances, dir }
}

/// Instance `i`, listening; tried again on other ports when a parallel test took its port
/// between choosing and binding.
fn instance(dir: &Path, i: usize, redis: Option<u16>) -> (Running, u16, u16) {
    for _ in 0..5 {
        let [port, admin] = free_ports::<2>();
        let file = dir.join(format!("lenscap-{i}.toml"));
        std::fs::write(&file, config(port, admin, redis)).unwrap();
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
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Answer {
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
fn person(ports: &[u16], address: &str) -> Vec<(String, u16)> {
    let mut next = 0;
    let mut pick = || {
        next += 1;
        ports[next % ports.len()]
    };
    let mut cookie: Option<String> = None;
    let mut statuses = Vec::new();
    for page in 0..PAGES {
        let path = format!("/page{page}.html");
        let mut headers = vec![
            ("User-Agent", FIREFOX),
            ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ("Accept-Language", "en"),
            ("Accept-Encoding", "gzip, br"),
            ("X-Forwarded-For", address),
        ];
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
            let mut headers = vec![
                ("User-Agent", FIREFOX),
                ("Accept", "image/avif,image/webp,*/*"),
                ("Accept-Language", "en"),
                ("Accept-Encoding", "gzip, br"),
                ("Referer", referer.as_str()),
                ("X-Forwarded-For", address),
            ];
            if cookie.is_some() {
                headers.push(("Cookie", &cookie_line));
            }
            statuses.push((photo.clone(), get(pick(), &photo, &headers).status));
        }
    }
    statuses
}

/// A script at `address` pulling `count` photos it never saw on a page; how many it got.
fn scraper(ports: &[u16], address: &str, count: usize) -> usize {
    (0..count)
        .filter(|n| {
            let port = ports[n % ports.len()];
            let photo = format!("/photos/p{}-{}.jpg", (n / PER_PAGE) % PAGES, n % PER_PAGE);
            let headers = [
                ("User-Agent", FIREFOX),
                ("Accept", "image/avif,image/webp,*/*"),
                ("Accept-Language", "en"),
                ("Accept-Encoding", "gzip, br"),
                ("X-Forwarded-For", address),
            ];
            get(port, &photo, &headers).status == 200
        })
        .count()
}

fn refused(statuses: &[(String, u16)]) -> Vec<&(String, u16)> {
    statuses.iter().filter(|(_, s)| *s != 200).collect()
}

/// A fresh Redis and three instances on it.
fn on_one_redis(name: &str) -> (Running, Fleet) {
    let redis_port = free_port();
    let redis = redis_server(redis_port);
    (redis, fleet(name, Some(redis_port)))
}

fn ports(fleet: &Fleet) -> Vec<u16> {
    fleet.instances.iter().map(|(_, port, _)| *port).collect()
}

#[test]
fn a_person_spread_over_three_instances_is_never_refused() {
    let (_redis, shared) = on_one_redis("person");
    let statuses = person(&ports(&shared), "198.51.100.20");
    assert_eq!(statuses.len(), PAGES * (PER_PAGE + 1));
    assert!(refused(&statuses).is_empty(), "{:?}", refused(&statuses));

    // The same person over three instances that share nothing is refused: what Redis fixes.
    let alone = fleet("person-alone", None);
    let statuses = person(&ports(&alone), "198.51.100.20");
    assert!(
        !refused(&statuses).is_empty(),
        "three lone instances refused nothing"
    );
}

#[test]
fn a_scraper_spread_over_three_gets_no_more_than_from_one() {
    let (_redis, shared) = on_one_redis("scraper");
    let ports = ports(&shared);
    // Two addresses in different subnets: one on one instance, one spread over three.
    let from_one = scraper(&ports[..1], "203.0.113.7", 40);
    let spread = scraper(&ports, "192.0.2.7", 40);
    eprintln!("scraper: {from_one} from one instance, {spread} spread over three");
    assert!(
        from_one <= 10,
        "one instance let the script past its image burst: {from_one}"
    );
    // One instance's image burst is 10; what either run gets beyond its burst is the
    // quota's refill over the run, and the spread run takes a few round trips longer. Three
    // instances sharing nothing would give it three bursts (30).
    assert!(
        spread <= 10,
        "spread over three instances the scraper got {spread} (one instance's burst is 10; from one {from_one})"
    );
}

#[test]
fn a_cookie_issued_by_one_instance_is_valid_on_the_others() {
    let (_redis, shared) = on_one_redis("cookie");
    let ports = ports(&shared);
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

fn readyz(admin: u16) -> String {
    get(admin, "/readyz", &[]).body
}

fn wait_for_store(admins: &[u16], state: &str) {
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

#[test]
fn people_are_served_while_redis_is_gone_and_sharing_resumes_when_it_returns() {
    let redis_port = free_port();
    let redis = redis_server(redis_port);
    let shared = fleet("outage", Some(redis_port));
    let ports = ports(&shared);
    let admins: Vec<u16> = shared.instances.iter().map(|(_, _, a)| *a).collect();
    wait_for_store(&admins, "ok");

    drop(redis);
    let statuses = person(&ports, "198.51.100.40");
    assert!(refused(&statuses).is_empty(), "{:?}", refused(&statuses));
    wait_for_store(&admins, "degraded");
    let metrics = get(admins[0], "/metrics", &[]).body;
    assert!(
        metrics.contains("lenscap_store_state{backend=\"redis\",store=\"degraded\"} 1"),
        "{metrics}"
    );

    let _redis = redis_server(redis_port);
    wait_for_store(&admins, "ok");
    let statuses = person(&ports, "198.51.100.41");
    assert!(refused(&statuses).is_empty(), "{:?}", refused(&statuses));
}

/// The requests an instance answered, from its metrics.
fn requests_answered(admin: u16) -> u64 {
    get(admin, "/metrics", &[])
        .body
        .lines()
        .filter(|l| l.starts_with("lenscap_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn simulate_spreads_one_run_over_every_target() {
    let (_redis, shared) = on_one_redis("simulate");
    let targets: Vec<String> = ports(&shared)
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}/"))
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .arg("simulate")
        .args(targets.iter().flat_map(|t| ["--target", t.as_str()]))
        .args(["--max-requests", "150", "--duration", "20s", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "simulate printed no report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(report.is_object(), "{report}");
    let answered: Vec<u64> = shared
        .instances
        .iter()
        .map(|(_, _, admin)| requests_answered(*admin))
        .collect();
    let total: u64 = answered.iter().sum();
    assert!(
        total >= 100,
        "the run reached the fleet {total} times: {answered:?}"
    );
    for n in &answered {
        // Round-robin: each instance gets about a third.
        assert!(*n * 5 >= total, "one instance was left out: {answered:?}");
    }
}

/// Clients connected to the Redis at `port`, by its own count.
fn redis_clients(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut connection = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(&mut connection)
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("INFO clients has connected_clients")
        - 1 // this one
}

#[test]
fn a_policy_reload_keeps_the_connection() {
    let redis_port = free_port();
    let _redis = redis_server(redis_port);
    let shared = fleet("reload", Some(redis_port));
    let admins: Vec<u16> = shared.instances.iter().map(|(_, _, a)| *a).collect();
    wait_for_store(&admins, "ok");
    let before = redis_clients(redis_port);
    assert!(before >= 3, "three instances, {before} connections");

    let (child, _, _) = &shared.instances[0];
    let log = shared.dir.join("lenscap-0.log");
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("policy reloaded")
    {
        assert!(started.elapsed() < DEADLINE, "the reload never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(redis_clients(redis_port), before);
    wait_for_store(&admins, "ok");
}
