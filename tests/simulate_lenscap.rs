//! `simulate` against the real Lenscap server serving the demo gallery (issue 6's CI test).
//!
//! Ignored until the server lands (branch `server`): this spawns the `lenscap` binary with
//! `serve --listen 127.0.0.1:PORT --config POLICY`, the command line the server issue specifies.
//! The policy trusts 127.0.0.1 as a proxy, so each simulated session is identified by the
//! address the simulator forwards (without that, every session would share one client address
//! and the crawlers' limits would fall on the humans too). After the merge: check the flag
//! names against `lenscap serve --help`, drop the `#[ignore]`, and keep the durations short.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `lenscap serve` child on a free loopback port, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

impl Server {
    fn start() -> Server {
        let dir = std::env::temp_dir().join(format!("lenscap-sim-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy = dir.join("policy.toml");
        std::fs::write(
            &policy,
            "[client]\ntrusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]\n",
        )
        .unwrap();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lenscap"))
            .args(["serve", "--listen", &addr.to_string(), "--config"])
            .arg(&policy)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "lenscap serve did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            addr,
            _dir: TempDir(dir),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn profile<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile"] == name)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
}

#[test]
#[ignore = "needs lenscap serve (server branch)"]
fn the_default_scenario_against_the_demo_gallery() {
    let server = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .args([
            "simulate",
            "--target",
            &format!("http://{}/", server.addr),
            "--scenario",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/scenarios/default.toml"),
            "--duration",
            "10s",
            "--json",
        ])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));

    for name in ["human", "pub-wifi"] {
        let p = profile(&json, name);
        assert!(p["images_requested"].as_u64().unwrap() > 0, "{p}");
        assert_eq!(p["images_obtained"], p["images_requested"], "{p}");
        assert_eq!(p["throttled"], 0, "{p}");
        assert_eq!(p["blocked"], 0, "{p}");
        assert!(p["first_stop_at"].is_null(), "{p}");
    }
    for name in [
        "ai-crawler-rude",
        "bulk-downloader",
        "dataset-builder",
        "stealth",
        "fake-googlebot",
    ] {
        let p = profile(&json, name);
        assert!(p["images_obtained"].as_u64().unwrap() <= 20, "{p}");
    }
    assert_eq!(profile(&json, "ai-crawler-polite")["images_obtained"], 0);
    assert!(!profile(&json, "fake-googlebot")["first_stop_at"].is_null());
    // The scenario's own thresholds say the same: exit 0.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
