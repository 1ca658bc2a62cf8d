//! Transport fingerprints with real clients on loopback: the real binary terminates TLS with
//! a test certificate and writes its access log; curl (OpenSSL, nghttp2), Python's `urllib`
//! (OpenSSL) and headless Chromium connect to it. A Chrome User-Agent over curl's or Python's
//! connection must carry `transport-mismatch`; Chromium itself must not, over HTTP/1.1 or
//! HTTP/2, and its fingerprints must read as Chromium's. (The scripts may be refused outright:
//! the mismatch joins their other signals.)

mod common;

use common::{Killed, free_port};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bounds every wait: a hang is a failure.
const DEADLINE: Duration = Duration::from_secs(60);

const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// Fails, naming the program, when a client this test needs is not installed.
fn program(name: &str) -> &str {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} is not installed: scripts/test.sh installs it (Debian package {name})"
    );
    name
}

fn scratch(name: &str) -> PathBuf {
    let dir = common::scratch("transport", name);
    std::fs::create_dir_all(dir.join("gallery")).unwrap();
    std::fs::write(
        dir.join("gallery/index.html"),
        "<!doctype html><title>The Crown</title><h1>The Crown</h1>\n",
    )
    .unwrap();
    dir
}

/// The binary serving `gallery/` over TLS with an access log, killed when dropped.
struct Lenscap {
    _child: Killed,
    port: u16,
    dir: PathBuf,
}

impl Lenscap {
    fn start(dir: &Path) -> Lenscap {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("lenscap.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"off\"\nroot = \"gallery\"\n\
                 tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\naccess_log = \"access.jsonl\"\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("lenscap.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lenscap"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(dir.join("lenscap.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < DEADLINE, "lenscap did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Lenscap {
            _child: Killed(child),
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// The access log line of the request for `path`, waiting for it to be written.
    fn line_for(&self, path: &str) -> Value {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(self.dir.join("access.jsonl")).unwrap_or_default();
            if let Some(line) = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["path"] == path)
            {
                return line;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "no access log line for {path}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs a client to completion within the deadline (killed otherwise); panics with its output
/// when it fails.
fn run(command: &mut Command) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} did not start: {e}"));
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "{command:?} failed ({status}):\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reasons(line: &Value) -> Vec<&str> {
    line["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn curl_as_chrome(server: &Lenscap, path: &str, version: &str) {
    run(Command::new(program("curl"))
        .args(["--silent", "--show-error", "--fail", "--insecure", version])
        .args(["--user-agent", CHROME_UA])
        .args(["-H", "Accept: text/html,application/xhtml+xml,*/*;q=0.8"])
        .args(["-H", "Accept-Language: en-GB,en;q=0.9"])
        .args(["-H", "Accept-Encoding: gzip, deflate, br"])
        .args(["-o", "/dev/null"])
        .arg(server.url(path)));
}

#[test]
fn curl_with_a_chrome_user_agent_is_a_transport_mismatch() {
    let server = Lenscap::start(&scratch("curl"));
    curl_as_chrome(&server, "/?client=curl-h1", "--http1.1");
    let line = server.line_for("/?client=curl-h1");
    assert!(
        reasons(&line).contains(&"transport-mismatch"),
        "curl (OpenSSL) with Chrome's User-Agent: {line}"
    );
    let traits = line["tls_traits"].as_str().unwrap_or_default();
    assert!(
        !traits.contains("grease") && traits.contains("encrypt-then-mac"),
        "OpenSSL's traits: {line}"
    );
    assert!(
        line["ja4"].as_str().is_some_and(|j| j.starts_with("t13d")),
        "{line}"
    );
    assert!(line["h2"].is_null(), "no HTTP/2 over HTTP/1.1: {line}");

    curl_as_chrome(&server, "/?client=curl-h2", "--http2");
    let line = server.line_for("/?client=curl-h2");
    assert_eq!(line["version"], "HTTP/2", "{line}");
    assert!(reasons(&line).contains(&"transport-mismatch"), "{line}");
    let h2 = line["h2"].as_str().unwrap_or_default();
    assert!(
        h2.ends_with("|m,p,s,a"),
        "curl's pseudo-header order: {line}"
    );
}

#[test]
fn curl_as_itself_is_no_transport_mismatch() {
    let server = Lenscap::start(&scratch("curl-plain"));
    run(Command::new(program("curl"))
        .args(["--silent", "--insecure", "-o", "/dev/null"])
        .arg(server.url("/?client=curl-own")));
    let line = server.line_for("/?client=curl-own");
    assert!(line["ja4"].is_string(), "{line}");
    assert!(
        !reasons(&line).contains(&"transport-mismatch"),
        "curl naming itself claims no browser: {line}"
    );
}

#[test]
fn python_urllib_with_a_chrome_user_agent_is_a_transport_mismatch() {
    let server = Lenscap::start(&scratch("python"));
    let script = format!(
        "import ssl, urllib.request\n\
         import urllib.error\n\
         context = ssl.create_default_context()\n\
         context.check_hostname = False\n\
         context.verify_mode = ssl.CERT_NONE\n\
         request = urllib.request.Request({url:?}, headers={{'User-Agent': {ua:?}, \
         'Accept': 'text/html,*/*;q=0.8', 'Accept-Language': 'en-GB,en;q=0.9', \
         'Accept-Encoding': 'gzip, deflate, br'}})\n\
         try:\n    urllib.request.urlopen(request, context=context).read()\n\
         except urllib.error.HTTPError as refused:\n    print(refused.code)\n",
        url = server.url("/?client=python"),
        ua = CHROME_UA,
    );
    run(Command::new(program("python3")).args(["-c", &script]));
    let line = server.line_for("/?client=python");
    assert!(
        reasons(&line).contains(&"transport-mismatch"),
        "Python's OpenSSL with Chrome's User-Agent: {line}"
    );
    assert!(
        !line["tls_traits"]
            .as_str()
            .unwrap_or_default()
            .contains("grease"),
        "{line}"
    );
}

fn chromium(server: &Lenscap, path: &str, extra: &[&str]) {
    let profile = server.dir.join(format!("chromium-profile-{}", extra.len()));
    run(Command::new(program("chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--ignore-certificate-errors",
            &format!("--user-agent={CHROME_UA}"),
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
        ])
        .args(extra)
        .arg(server.url(path)));
}

#[test]
fn headless_chromium_is_no_transport_mismatch() {
    let server = Lenscap::start(&scratch("chromium"));
    chromium(&server, "/?client=chromium-h2", &[]);
    let line = server.line_for("/?client=chromium-h2");
    assert_eq!(line["version"], "HTTP/2", "{line}");
    assert!(
        !reasons(&line).contains(&"transport-mismatch"),
        "Chromium flagged: {line}"
    );
    let traits = line["tls_traits"].as_str().unwrap_or_default();
    assert!(
        traits.contains("grease") && traits.contains("alps"),
        "Chromium's traits: {line}"
    );
    let h2 = line["h2"].as_str().unwrap_or_default();
    assert!(
        h2.ends_with("|m,a,s,p"),
        "Chromium's pseudo-header order: {line}"
    );

    chromium(&server, "/?client=chromium-h1", &["--disable-http2"]);
    let line = server.line_for("/?client=chromium-h1");
    assert_eq!(line["version"], "HTTP/1.1", "{line}");
    assert!(
        !reasons(&line).contains(&"transport-mismatch"),
        "Chromium over HTTP/1.1 flagged: {line}"
    );
    // Without h2 Chromium sends no ALPS; GREASE and certificate compression remain.
    let traits = line["tls_traits"].as_str().unwrap_or_default();
    assert!(
        traits.contains("grease") && traits.contains("compress-certificate"),
        "{line}"
    );
}

/// curl's JA4 and traits as the access log writes them (see the curl test above).
const CURL_JA4: &str = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6";

fn lenscap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn explain_takes_the_fingerprints_and_names_the_provider() {
    let chrome_over_curl = [
        "explain",
        "--json",
        "--ua",
        CHROME_UA,
        "--ip",
        "3.1.2.3",
        "--ja4",
        CURL_JA4,
        "--tls-traits",
        "encrypt-then-mac",
        "--h2",
        "3:100;4:10485760;2:0|1048510465|0|m,p,s,a",
    ];
    let output = lenscap(&chrome_over_curl);
    assert!(output.status.success(), "{output:?}");
    let verdict: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        reasons(&verdict).contains(&"transport-mismatch"),
        "{verdict}"
    );
    assert!(reasons(&verdict).contains(&"datacenter"), "{verdict}");
    assert_eq!(verdict["datacenter"], "aws", "{verdict}");
    assert_eq!(verdict["tls_stack"], "openssl", "{verdict}");
    assert_eq!(verdict["h2_stack"], "curl", "{verdict}");

    let output = lenscap(&["explain", "--ua", CHROME_UA, "--ja4", "t13d"]);
    assert!(!output.status.success(), "{output:?}");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("t13d") && error.contains("--ja4"), "{error}");
}

#[test]
fn replay_reads_the_fingerprints_of_access_log_lines() {
    let dir = scratch("replay");
    let line = |ja4: &str, traits: &str| {
        serde_json::json!({
            "ip": "198.51.100.7", "path": "/", "scheme": "https",
            "headers": {"user-agent": CHROME_UA, "accept": "text/html", "accept-language": "en",
                        "accept-encoding": "gzip", "sec-ch-ua": "\"Chromium\";v=\"142\""},
            "ja4": ja4, "tls_traits": traits,
        })
        .to_string()
    };
    std::fs::write(
        dir.join("access.jsonl"),
        format!(
            "{}\n{}\n",
            line(CURL_JA4, "encrypt-then-mac"),
            line(
                "t13d1516h2_8daaf6152771_e5627efa2ab1",
                "grease,alps,compress-certificate"
            )
        ),
    )
    .unwrap();
    let output = lenscap(&[
        "replay",
        "--verdicts",
        dir.join("access.jsonl").to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let verdicts: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    assert!(
        reasons(&verdicts[0]).contains(&"transport-mismatch"),
        "{:?}",
        verdicts[0]
    );
    assert!(
        !reasons(&verdicts[1]).contains(&"transport-mismatch"),
        "{:?}",
        verdicts[1]
    );
}
