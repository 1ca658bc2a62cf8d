//! A reload tells the truth: the real binary, its file edited, then SIGHUP. Policy changes
//! apply and say nothing more; a changed setting that only a restart applies is named in
//! the reload's log line.

mod common;

use common::{Killed, free_port};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds every wait: a hang is a failure.
const DEADLINE: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let dir = common::scratch("reload", name);
    std::fs::create_dir_all(dir.join("gallery")).unwrap();
    std::fs::write(dir.join("gallery/index.html"), "<h1>The Crown</h1>\n").unwrap();
    dir
}

fn config(port: u16, mode: &str, response_timeout: &str, extra: &str) -> String {
    format!(
        "mode = {mode:?}\n\n[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"off\"\nroot = \"gallery\"\nwatch = false\nreload_settle_time = \"10ms\"\n{extra}\n[proxy]\nresponse_timeout = {response_timeout:?}\n"
    )
}

/// The front page as a browser asks for it, through the shared test client.
fn front_page(port: u16) -> common::Answer {
    let page = [
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "text/html,*/*;q=0.8"),
        ("accept-language", "en"),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(common::get(([127, 0, 0, 1], port).into(), "/", &page))
}

/// The JSON log lines of finished reloads (`lenscap::reload`, "policy reloaded…").
fn reloads(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("policy reloaded"))
        })
        .collect()
}

fn hangup_and_wait(child: &Child, log: &Path, count: usize) -> serde_json::Value {
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        let seen = reloads(log);
        if seen.len() >= count {
            return seen[count - 1].clone();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "reload {count} never finished: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reload_names_the_changed_settings_that_need_a_restart() {
    let dir = scratch("settings");
    let port = free_port();
    let file = dir.join("lenscap.toml");
    std::fs::write(&file, config(port, "enforce", "60s", "")).unwrap();
    let log = dir.join("lenscap.log");
    let out = std::fs::File::create(&log).unwrap();
    // One worker: the single-threaded runtime (what a one-core machine runs) takes SIGHUP
    // reloads and serves after them like the multi-threaded one the other tests start.
    let child = Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .env("TOKIO_WORKER_THREADS", "1")
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let server = Killed(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < DEADLINE, "lenscap did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A policy change applies: nothing is said to need a restart.
    std::fs::write(&file, config(port, "report-only", "60s", "")).unwrap();
    let first = hangup_and_wait(&server.0, &log, 1);
    assert_eq!(first["message"], "policy reloaded", "{first}");
    assert!(first.get("needs_restart").is_none(), "{first}");

    // A proxy timeout and a server timeout do not: both are named, nothing else is.
    std::fs::write(
        &file,
        config(port, "report-only", "5s", "grace_period = \"3s\"\n"),
    )
    .unwrap();
    let second = hangup_and_wait(&server.0, &log, 2);
    let page = front_page(port);
    assert_eq!(
        page.status, 200,
        "the gallery is not served after two reloads"
    );
    assert!(
        String::from_utf8_lossy(&page.body).contains("The Crown"),
        "the gallery is not served after two reloads"
    );
    assert_eq!(
        second["needs_restart"], "proxy.response_timeout, server.grace_period",
        "{second}"
    );
    assert!(
        second["message"]
            .as_str()
            .unwrap()
            .contains("apply only after a restart: proxy.response_timeout, server.grace_period"),
        "{second}"
    );
}
