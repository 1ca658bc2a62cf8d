//! `lenscap replay` tells the truth about a real log: thirty people browsing from one pub
//! Wi-Fi address without cookies are not reported as stopped, the scrapers in the same log
//! are, and the summary says it told visitors apart by guessing.

use std::fmt::Write as _;
use std::process::Command;

const ADDRESS: &str = "203.0.113.50";

/// Phones and laptops a pub crowd brings; several people share one.
fn browser(person: usize) -> String {
    match person % 6 {
        0 => "Mozilla/5.0 (iPhone; CPU iPhone OS 19_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/19.1 Mobile/15E148 Safari/604.1".to_owned(),
        1 => format!("Mozilla/5.0 (Linux; Android 16; Pixel {}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36", 7 + person % 4),
        2 => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36".to_owned(),
        3 => format!("Mozilla/5.0 (Linux; Android 15; SM-S92{}B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Mobile Safari/537.36", person % 10),
        4 => "Mozilla/5.0 (Macintosh; Intel Mac OS X 15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/19.0 Safari/605.1.15".to_owned(),
        _ => "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0".to_owned(),
    }
}

fn line(log: &mut String, vhost: bool, ip: &str, t: u32, path: &str, referer: &str, ua: &str) {
    if vhost {
        log.push_str("thecrown.example:443 ");
    }
    let _ = writeln!(
        log,
        r#"{ip} - - [05/Jun/2026:{:02}:{:02}:{:02} +0000] "GET {path} HTTP/1.1" 200 4096 "{referer}" "{ua}""#,
        20 + t / 3600,
        t / 60 % 60,
        t % 60
    );
}

/// Thirty people over an evening, each: the index, an album, its thumbnails, two photos;
/// and on the same address a script pulling every photo, and a crawler with its own name.
fn evening(vhost: bool) -> String {
    let site = "https://thecrown.example";
    let mut events: Vec<(u32, String, String, String)> = Vec::new();
    for person in 0..30usize {
        let ua = browser(person);
        let start = (person as u32) * 47;
        let album = if person % 2 == 0 {
            "/Quiz%20Night/"
        } else {
            "/Summer%20Terrace/"
        };
        events.push((start, "/".into(), "-".into(), ua.clone()));
        events.push((start + 9, album.into(), format!("{site}/"), ua.clone()));
        for n in 0..24 {
            events.push((
                start + 10,
                format!("{album}IMG_{:04}.jpg?size=thumb", n * 7 + person),
                format!("{site}{album}"),
                ua.clone(),
            ));
        }
        for n in 0..2 {
            events.push((
                start + 30 + n * 25,
                format!("{album}IMG_{:04}.jpg", n as usize * 7 + person),
                format!("{site}{album}"),
                ua.clone(),
            ));
        }
    }
    // img2dataset's default User-Agent.
    let firefox = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0";
    for n in 0..200u32 {
        events.push((
            600 + n / 4,
            format!("/Quiz%20Night/IMG_{n:04}.jpg"),
            "-".into(),
            firefox.into(),
        ));
    }
    for n in 0..60u32 {
        events.push((
            900 + n,
            format!("/Summer%20Terrace/IMG_{n:04}.jpg"),
            "-".into(),
            "python-requests/2.32.3".into(),
        ));
    }
    events.sort_by_key(|e| e.0);
    let mut log = String::new();
    for (t, path, referer, ua) in &events {
        line(&mut log, vhost, ADDRESS, *t, path, referer, ua);
    }
    log
}

fn replay(format: &str, log: &str) -> serde_json::Value {
    let file = std::env::temp_dir().join(format!(
        "lenscap-replay-crowd-{}-{format}.log",
        std::process::id()
    ));
    std::fs::write(&file, log).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .args(["replay", "--format", format, "--json", "--top", "100"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn check(summary: &serde_json::Value) {
    let clients = summary["top_clients"].as_array().unwrap();
    let mut people = 0;
    for client in clients {
        let ua = client["user_agent"].as_str().unwrap();
        let stopped = !client["stopped"].is_null();
        if ua.starts_with("python-requests") || ua.contains("Ubuntu") {
            assert!(stopped, "the scraper {ua} was not stopped: {client}");
        } else {
            people += 1;
            assert!(!stopped, "a person was reported stopped: {client}");
            assert_eq!(client["counts"]["limited"], 0, "{client}");
            assert_eq!(client["counts"]["blocked"], 0, "{client}");
        }
    }
    assert!(people >= 6, "{summary}");
    assert_eq!(summary["stopped_clients"], 2, "{summary}");
    assert_eq!(summary["addresses_split_by_user_agent"], 1, "{summary}");
}

#[test]
fn thirty_cookieless_people_on_one_address_are_not_stopped_and_the_scrapers_are() {
    check(&replay("combined", &evening(false)));
    check(&replay("vhost_combined", &evening(true)));
}

#[test]
fn the_summary_says_it_guessed() {
    let file =
        std::env::temp_dir().join(format!("lenscap-replay-guess-{}.log", std::process::id()));
    std::fs::write(&file, evening(false)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .args(["replay", "--format", "combined"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("2 of "), "{text}");
    assert!(
        text.contains("guessed: the log has no visitor cookies"),
        "{text}"
    );
}
