//! The owner's dashboard, the access log and the admin credentials, against the real server on
//! loopback ports: people and crawlers are played through it (client addresses given by
//! X-Forwarded-For from a trusted loopback proxy), then the dashboard, `/api/summary`, the
//! access log and `lenscap replay` on that log are checked against what the clients saw. No
//! timing assertions: timeouts only keep a broken build from hanging.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lenscap::server::{Overrides, RunningServer, ServeOptions, Server, ServerError};

mod common;

use common::server::start_server;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
/// img2dataset's default User-Agent (see DESIGN.md).
const IMG2DATASET: &str =
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0";
const GPTBOT: &str = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)";
const CLAUDEBOT: &str = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)";
const GUARD: Duration = Duration::from_secs(20);
const HOST: &str = "pub.example";

fn scratch(name: &str) -> PathBuf {
    let dir = common::scratch("dash", name);
    std::fs::create_dir_all(dir.join("root/photos")).unwrap();
    // The page embeds the photos people look at (plain and in the crowd's two rounds): only
    // images a viewed page embeds earn a page view's credit.
    let mut page = String::from("<h1>The Crown</h1>");
    for n in 1..=8 {
        page.push_str(&format!("<img src=\"/photos/{n}.jpg\">"));
        for round in 0..2 {
            page.push_str(&format!("<img src=\"/photos/{n}.jpg?v={round}\">"));
        }
    }
    std::fs::write(dir.join("root/index.html"), page).unwrap();
    for n in 1..=8 {
        std::fs::write(
            dir.join(format!("root/photos/{n}.jpg")),
            b"\xFF\xD8\xFF\xE0not-a-real-jpeg",
        )
        .unwrap();
    }
    dir
}

async fn start(dir: &Path, config: &str) -> Result<RunningServer, ServerError> {
    start_server(dir, config, Some(dir.join("root"))).await
}

/// Sends exactly `headers` (hyper adds nothing but Host when it is missing).
async fn send(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let (status, _, body) = exchange(addr, path, headers).await;
    (status, body)
}

/// [`send`], with the response's visitor cookie (`name=value`) if it set one.
async fn exchange(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let response = tokio::time::timeout(GUARD, client.request(request))
        .await
        .expect("guard")
        .expect("response");
    let status = response.status();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body = tokio::time::timeout(GUARD, response.into_body().collect())
        .await
        .expect("guard")
        .expect("body")
        .to_bytes();
    (status, cookie, String::from_utf8_lossy(&body).into_owned())
}

fn person(ip: &str, page: bool) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("host", HOST.to_owned()),
        ("user-agent", FIREFOX.to_owned()),
        ("accept-language", "en-GB,en;q=0.8".to_owned()),
        ("accept-encoding", "gzip, deflate, br".to_owned()),
        ("x-forwarded-for", ip.to_owned()),
    ];
    if page {
        headers.push((
            "accept",
            "text/html,application/xhtml+xml,*/*;q=0.8".to_owned(),
        ));
    } else {
        headers.push(("accept", "image/avif,image/webp,*/*".to_owned()));
        headers.push(("referer", format!("http://{HOST}/")));
    }
    headers
}

fn crawler(ip: &str, ua: &str) -> Vec<(&'static str, String)> {
    vec![
        ("host", HOST.to_owned()),
        ("user-agent", ua.to_owned()),
        ("accept", "*/*".to_owned()),
        ("accept-encoding", "gzip".to_owned()),
        ("x-forwarded-for", ip.to_owned()),
    ]
}

/// img2dataset as it comes: Host, User-Agent, identity encoding, Connection: close.
fn img2dataset(ip: &str) -> Vec<(&'static str, String)> {
    vec![
        ("host", HOST.to_owned()),
        ("user-agent", IMG2DATASET.to_owned()),
        ("accept-encoding", "identity".to_owned()),
        ("x-forwarded-for", ip.to_owned()),
    ]
}

/// What the clients saw, request by request, in order.
#[derive(Default)]
struct Run {
    sent: Vec<(String, StatusCode)>,
    /// Refusals (403, 429) per client label.
    refused: BTreeMap<&'static str, u64>,
    refused_images: u64,
}

impl Run {
    async fn get(
        &mut self,
        addr: SocketAddr,
        who: &'static str,
        path: &str,
        headers: &[(&'static str, String)],
    ) -> StatusCode {
        self.get_with(addr, who, path, headers, &mut None).await
    }

    /// [`get`](Self::get) for a client that keeps the visitor cookie in `jar`.
    async fn get_with(
        &mut self,
        addr: SocketAddr,
        who: &'static str,
        path: &str,
        headers: &[(&'static str, String)],
        jar: &mut Option<String>,
    ) -> StatusCode {
        let mut headers: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Some(cookie) = jar.as_deref() {
            headers.push(("cookie", cookie));
        }
        let (status, set, _) = exchange(addr, path, &headers).await;
        if set.is_some() {
            *jar = set;
        }
        if matches!(
            status,
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        ) {
            *self.refused.entry(who).or_default() += 1;
            self.refused_images += u64::from(path.ends_with(".jpg"));
        }
        self.sent.push((path.to_owned(), status));
        status
    }
}

/// People and crawlers, one request at a time (so the log's order is the decision order).
async fn play(addr: SocketAddr) -> Run {
    let mut run = Run::default();
    for ip in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let page = run.get(addr, "person", "/", &person(ip, true)).await;
        assert_eq!(page, StatusCode::OK);
        for n in 1..=4 {
            let path = format!("/photos/{n}.jpg");
            let status = run.get(addr, "person", &path, &person(ip, false)).await;
            assert_eq!(status, StatusCode::OK, "a person's photo {path}");
        }
    }
    // A crowd on the pub's Wi-Fi: one address, each person with their own visitor cookie,
    // looking at photos at the same time.
    let mut jars = vec![None; 6];
    for round in 0..2 {
        // Everyone opens a page of their own, then everyone looks at its photos.
        for (k, jar) in jars.iter_mut().enumerate() {
            let page = format!("/?page={round}-{k}");
            let status = run
                .get_with(addr, "crowd", &page, &person("198.51.100.77", true), jar)
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        for (k, jar) in jars.iter_mut().enumerate() {
            let mut headers = person("198.51.100.77", false);
            for (name, value) in &mut headers {
                if *name == "referer" {
                    *value = format!("http://{HOST}/?page={round}-{k}");
                }
            }
            for n in 1..=6 {
                let path = format!("/photos/{n}.jpg?v={round}");
                let status = run.get_with(addr, "crowd", &path, &headers, jar).await;
                assert_eq!(status, StatusCode::OK, "a person on the Wi-Fi: {path}");
            }
        }
    }
    assert!(
        jars.iter().all(Option::is_some),
        "every person kept a cookie"
    );
    // GPTBot reads robots.txt (answered to everyone), then takes photos: refused.
    let robots = run
        .get(
            addr,
            "GPTBot",
            "/robots.txt",
            &crawler("203.0.113.9", GPTBOT),
        )
        .await;
    assert_eq!(robots, StatusCode::OK);
    for n in 1..=3 {
        let path = format!("/photos/{n}.jpg");
        let status = run
            .get(addr, "GPTBot", &path, &crawler("203.0.113.9", GPTBOT))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for path in ["/", "/gallery"] {
        let status = run
            .get(addr, "ClaudeBot", path, &crawler("203.0.113.10", CLAUDEBOT))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // img2dataset pulling a URL list: its header shape alone gives it away.
    for n in 1..=8 {
        let path = format!("/photos/{n}.jpg");
        run.get(addr, "img2dataset", &path, &img2dataset("192.0.2.50"))
            .await;
    }
    // A script with a browser's headers taking photos it never saw on a page: a few, then 429.
    for n in 1..=24 {
        let path = format!("/photos/{}.jpg", (n - 1) % 8 + 1);
        let mut headers = person("100.64.1.5", false);
        headers.retain(|(name, _)| *name != "referer");
        run.get(addr, "copycat", &path, &headers).await;
    }
    run
}

fn number(page: &str, figure: &str) -> Vec<u64> {
    let marker = format!("data-figure=\"{figure}\"><b>");
    page.match_indices(&marker)
        .map(|(at, _)| {
            let rest = &page[at + marker.len()..];
            rest[..rest.find('<').unwrap()].parse().unwrap()
        })
        .collect()
}

/// `<tr><td>NAME</td><td class="n">HOUR</td><td class="n">DAY</td></tr>`
fn row(name: &str, hour: u64, day: u64) -> String {
    format!("<tr><td>{name}</td><td class=\"n\">{hour}</td><td class=\"n\">{day}</td></tr>")
}

/// Reads the log until it holds `lines` lines (the writer is a thread of its own).
fn read_log(path: &Path, lines: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + GUARD;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines || Instant::now() > deadline {
            return text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `lenscap replay --verdicts` on `log`.
fn replay(config: &Path, log: &Path) -> Vec<serde_json::Value> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .args(["replay", "--verdicts", "--config"])
        .arg(config)
        .arg(log)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn config(log: &Path) -> String {
    format!(
        r#"
[client]
trusted_proxies = ["127.0.0.1/32"]

[server]
access_log = "{}"
"#,
        log.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_was_stopped_and_the_log_replays_the_same() {
    let dir = scratch("run");
    let log = dir.join("access.jsonl");
    let server = start(&dir, &config(&log)).await.unwrap();
    let addr = server.local_addr();
    let admin = server.admin_addr().unwrap();
    let run = play(addr).await;
    let img2dataset = run.refused.get("img2dataset").copied().unwrap_or(0);
    let copycat = run.refused.get("copycat").copied().unwrap_or(0);
    assert!(img2dataset > 0, "img2dataset was never refused");
    assert!(copycat > 0, "the copycat script was never refused");
    assert!(copycat < 24, "the copycat was refused from its first photo");
    let limited = run
        .sent
        .iter()
        .filter(|(_, s)| *s == StatusCode::TOO_MANY_REQUESTS)
        .count() as u64;
    assert!(limited > 0, "nothing was rate-limited");
    let script_refused = img2dataset + copycat;

    // The dashboard, as a person opens it.
    let (status, page) = send(admin, "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Enforcing"), "{page}");
    assert!(page.contains("<svg"), "charts are inline SVG");
    assert!(!page.contains("<script"), "no JavaScript");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );
    let stopped = 5 + script_refused;
    assert_eq!(number(&page, "stopped"), [stopped, stopped], "hour and day");
    assert_eq!(
        number(&page, "images-refused"),
        [run.refused_images, run.refused_images]
    );
    assert_eq!(run.refused_images, 3 + script_refused);
    assert!(page.contains(&row("GPTBot", 3, 3)), "{page}");
    assert!(page.contains(&row("ClaudeBot", 2, 2)), "{page}");
    assert!(
        page.contains(&row(
            "browser-looking script",
            script_refused,
            script_refused
        )),
        "{page}"
    );
    assert!(page.contains(&row("AI training crawlers", 5, 5)), "{page}");
    assert!(
        page.contains(&row(
            "browser-looking scripts",
            script_refused,
            script_refused
        )),
        "{page}"
    );
    // Addresses shortened: GPTBot and ClaudeBot share 203.0.113.0/24.
    assert!(page.contains(&row("203.0.113.0/24", 5, 5)), "{page}");
    assert!(
        page.contains(&row("192.0.2.0/24", img2dataset, img2dataset)),
        "{page}"
    );
    assert!(
        page.contains(&row("100.64.1.0/24", copycat, copycat)),
        "{page}"
    );
    assert!(
        !page.contains("203.0.113.9"),
        "a full address on the dashboard"
    );
    assert!(page.contains("a known crawler"), "reasons in plain words");

    // One site's page has the same figures here (the server has one site).
    let (_, one) = send(admin, "/?site=default", &[]).await;
    assert!(one.contains("site default"), "{one}");
    assert_eq!(number(&one, "stopped"), [stopped, stopped]);

    // The same figures as JSON.
    let (status, json) = send(admin, "/api/summary", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let summary: serde_json::Value = serde_json::from_str(&json).unwrap();
    let day = &summary["all"]["day"];
    assert_eq!(day["stopped"], stopped);
    assert_eq!(
        day["stopped_by_agent"][0]["name"],
        if script_refused > 3 {
            "browser-looking script"
        } else {
            "GPTBot"
        }
    );
    assert_eq!(summary["sites"][0]["mode"], "enforce");
    // Documents are not browsing: 3 people × 5 requests, plus the script's requests that
    // were served without suspicion.
    let people = day["people"].as_u64().unwrap();
    assert!(people >= 15 + 84, "{summary}");
    assert_eq!(
        people + day["crawlers"].as_u64().unwrap(),
        run.sent.len() as u64 - 1,
        "every request but robots.txt is a person's or a crawler's"
    );

    // The access log: one line per request, in order, with what the clients saw.
    let lines = read_log(&log, run.sent.len());
    assert_eq!(lines.len(), run.sent.len());
    for (line, (path, status)) in lines.iter().zip(&run.sent) {
        assert_eq!(line["path"], path.as_str());
        assert_eq!(line["status"], status.as_u16(), "{line}");
        assert_eq!(line["site"], "default");
        assert_eq!(line["ip"], "127.0.0.1");
    }
    assert_eq!(lines[0]["client"], "198.51.100.1");
    assert_eq!(lines[0]["headers"]["user-agent"], FIREFOX);
    assert!(lines[0]["headers"].get("cookie").is_none());
    let refused_in_log = lines
        .iter()
        .filter(|l| matches!(l["outcome"].as_str(), Some("blocked" | "limited")))
        .count() as u64;
    assert_eq!(refused_in_log, stopped);

    // Replay on the log gives the same action and outcome for every line.
    assert!(lines.iter().any(|l| l["visitor"].is_string()));
    let replayed = replay(&dir.join("lenscap.toml"), &log);
    assert_eq!(replayed.len(), lines.len());
    for (n, (live, again)) in lines.iter().zip(&replayed).enumerate() {
        assert_eq!(
            (&live["action"], &live["outcome"], &live["category"]),
            (&again["action"], &again["outcome"], &again["category"]),
            "line {}: live {live} replayed {again}",
            n + 1
        );
    }

    // Without the visitor ids, replay takes the crowd for one client and refuses some of it:
    // the ids are what keep its people apart.
    let anonymous = dir.join("anonymous.jsonl");
    let stripped: String = lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l.as_object_mut().unwrap().remove("visitor");
            l.as_object_mut().unwrap().remove("set_visitor");
            format!("{l}\n")
        })
        .collect();
    std::fs::write(&anonymous, stripped).unwrap();
    let without = replay(&dir.join("lenscap.toml"), &anonymous);
    assert!(
        lines
            .iter()
            .zip(&without)
            .any(|(live, again)| live["outcome"] != again["outcome"]),
        "the crowd replays the same without its visitor ids: the test does not exercise them"
    );

    // The metrics: what was done, one meaning each.
    let (_, metrics) = send(admin, "/metrics", &[]).await;
    assert!(
        metrics.contains(&format!(
            "lenscap_blocks_total{{site=\"default\"}} {}",
            stopped - limited
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "lenscap_rate_limited_total{{site=\"default\"}} {limited}"
    )));
    assert!(metrics.contains("lenscap_responses_total{site=\"default\",status=\"2xx\"}"));
    if cfg!(target_os = "linux") {
        assert!(metrics.contains("\nprocess_open_fds "), "{metrics}");
        assert!(metrics.contains("\nprocess_resident_memory_bytes "));
        assert!(metrics.contains("\nprocess_cpu_seconds_total "));
        assert!(metrics.contains("\nprocess_start_time_seconds "));
    }
    assert!(
        metrics.contains("lenscap_request_duration_seconds_bucket{le=\"838.8608\""),
        "{metrics}"
    );

    server.shutdown().await;
}

#[tokio::test]
async fn the_log_is_reopened_for_logrotate() {
    let dir = scratch("reopen");
    let log = dir.join("access.jsonl");
    let server = start(&dir, &config(&log)).await.unwrap();
    let addr = server.local_addr();
    send(addr, "/", &[("host", HOST)]).await;
    assert_eq!(read_log(&log, 1).len(), 1);
    let rotated = dir.join("access.jsonl.1");
    std::fs::rename(&log, &rotated).unwrap();
    server.reopen_access_log();
    send(addr, "/photos/1.jpg", &[("host", HOST)]).await;
    let fresh = read_log(&log, 1);
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0]["path"], "/photos/1.jpg");
    assert_eq!(
        read_log(&rotated, 1).len(),
        1,
        "the rotated file keeps its line"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_admin_listener_asks_for_its_credentials() {
    let dir = scratch("auth");
    let server = start(
        &dir,
        "[server]\nadmin_token = \"s3cret\"\nadmin_user = \"owner\"\nadmin_password = \"pint\"\n",
    )
    .await
    .unwrap();
    let admin = server.admin_addr().unwrap();
    for path in ["/", "/api/summary", "/metrics"] {
        assert_eq!(
            send(admin, path, &[]).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            send(admin, path, &[("authorization", "Bearer wrong")])
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(admin, path, &[("authorization", "Bearer s3cret")])
                .await
                .0,
            StatusCode::OK
        );
        // owner:pint
        assert_eq!(
            send(admin, path, &[("authorization", "Basic b3duZXI6cGludA==")])
                .await
                .0,
            StatusCode::OK
        );
    }
    // Health checks stay open for load balancers.
    assert_eq!(send(admin, "/healthz", &[]).await.0, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn an_admin_listener_off_the_loopback_needs_credentials_to_start() {
    let dir = scratch("exposed");
    let path = dir.join("lenscap.toml");
    std::fs::write(&path, "[server]\nadmin = \"0.0.0.0:9090\"\n").unwrap();
    let error = Server::bind(ServeOptions {
        config: Some(path),
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            root: Some(dir.join("root")),
            ..Overrides::default()
        },
    })
    .await
    .expect_err("an exposed admin listener without credentials");
    let message = error.to_string();
    assert!(message.contains("server.admin"), "{message}");
    assert!(message.contains("admin_token"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}
