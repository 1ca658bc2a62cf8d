//! The catalog against real user agents: every browser in `tests/data/browsers.txt` and
//! `tests/data/browsers-generated.txt` classifies as a browser and is allowed; every catalog
//! token is found inside a realistic User-Agent and gives its agent's category; at least 99% of
//! a public list of crawler User-Agents (`tests/data/crawlers.txt`) is recognised by name (the
//! catalog) or by self-identification (`config/crawler-patterns.toml`).

use std::net::SocketAddr;
use std::process::Command;

use http::{HeaderValue, Request};
use lenscap::catalog::Category;
use lenscap::{Action, PeerAddr, Policy, Reason};

const BROWSERS: &str = include_str!("data/browsers.txt");
/// Made by `tests/data/make_browsers.py` from the version ranges, platforms and devices
/// browsers ship.
const GENERATED_BROWSERS: &str = include_str!("data/browsers-generated.txt");
const CRAWLERS: &str = include_str!("data/crawlers.txt");

fn lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn browsers() -> Vec<&'static str> {
    lines(BROWSERS).chain(lines(GENERATED_BROWSERS)).collect()
}

/// What a browser sends with an image request on a plain-HTTP page.
fn browser_request(ua: &str) -> Request<()> {
    let mut request = Request::get("/photos/terrace-01.jpg")
        .header("user-agent", HeaderValue::from_str(ua).unwrap())
        .header("accept", "image/avif,image/webp,*/*")
        .header("accept-language", "en-GB,en;q=0.9")
        .header("accept-encoding", "gzip, deflate, br")
        .header("referer", "http://pub.example/gallery/")
        .body(())
        .unwrap();
    request.extensions_mut().insert(PeerAddr(
        "198.51.100.20:50000".parse::<SocketAddr>().unwrap(),
    ));
    request
}

fn realistic(token: &str) -> String {
    format!("Mozilla/5.0 (compatible; {token}/1.0; +https://example.com/bot)")
}

#[test]
fn corpus_is_big_enough() {
    let all = browsers();
    assert!(
        all.len() >= 10_000,
        "only {} browser user agents",
        all.len()
    );
    let crawlers = lines(CRAWLERS).count();
    assert!(crawlers >= 2_000, "only {crawlers} crawler user agents");
}

#[test]
fn a_public_crawler_list_is_recognised_by_name_or_self_identification() {
    let policy = Policy::embedded().unwrap();
    let crawlers: Vec<&str> = lines(CRAWLERS).collect();
    let mut by_name = 0;
    let mut missed = Vec::new();
    for ua in &crawlers {
        let (_, verdict) = policy.verdict_for(&browser_request(ua));
        if verdict.agent.is_some() {
            by_name += 1;
        } else if !verdict.reasons.contains(Reason::BotLikeUserAgent) {
            missed.push(*ua);
        }
    }
    let recognised = crawlers.len() - missed.len();
    eprintln!(
        "{recognised} of {} crawler user agents recognised ({by_name} by the catalog); missed:\n{}",
        crawlers.len(),
        missed.join("\n")
    );
    assert!(
        recognised * 100 >= crawlers.len() * 99,
        "only {recognised} of {} recognised",
        crawlers.len()
    );
}

#[test]
fn no_browser_matches_a_catalog_token() {
    let policy = Policy::embedded().unwrap();
    let catalog = policy.catalog();
    let hits: Vec<String> = browsers()
        .into_iter()
        .filter_map(|ua| {
            catalog
                .classify(ua.as_bytes())
                .map(|a| format!("{} <- {ua}", a.name()))
        })
        .collect();
    assert!(hits.is_empty(), "false positives:\n{}", hits.join("\n"));
}

#[test]
fn every_browser_is_allowed_as_a_browser() {
    let policy = Policy::embedded().unwrap();
    for ua in browsers() {
        let (_, verdict) = policy.verdict_for(&browser_request(ua));
        assert_eq!(verdict.category, Category::Browser, "{ua}: {verdict:?}");
        assert_eq!(verdict.action, Action::Allow, "{ua}: {verdict:?}");
    }
}

#[test]
fn every_catalog_token_is_found_in_a_realistic_user_agent() {
    let policy = Policy::embedded().unwrap();
    let catalog = policy.catalog();
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/crawlers.toml"))
            .unwrap();
    let entries = lenscap::catalog::parse_entries("crawlers.toml", &text).unwrap();
    assert_eq!(
        entries.len(),
        catalog.len(),
        "duplicate names in crawlers.toml"
    );
    for entry in &entries {
        for token in &entry.tokens {
            let ua = realistic(token);
            let found = catalog
                .classify(ua.as_bytes())
                .unwrap_or_else(|| panic!("{token:?} not found in {ua}"));
            assert_eq!(
                found.category(),
                entry.category,
                "{token:?} of {} classified as {}",
                entry.name,
                found.name()
            );
            let (_, verdict) = policy.verdict_for(&browser_request(&ua));
            assert_eq!(verdict.category, entry.category, "{ua}");
        }
    }
}

#[test]
fn catalog_covers_the_ai_robots_txt_list_and_the_tools_people_run() {
    let policy = Policy::embedded().unwrap();
    let catalog = policy.catalog();
    for name in [
        "GPTBot",
        "ChatGPT-User",
        "OAI-SearchBot",
        "ClaudeBot",
        "CCBot",
        "Bytespider",
        "PerplexityBot",
        "Google-Extended",
        "Applebot-Extended",
        "meta-externalagent",
        "img2dataset",
        "Amazonbot",
        "Diffbot",
    ] {
        assert!(catalog.get(name).is_some(), "{name} missing");
    }
    for ua in [
        "Wget/1.21.3",
        "curl/8.5.0",
        "Mozilla/4.5 (compatible; HTTrack 3.0x; Windows 98)",
        "aria2/1.36.0",
        "Scrapy/2.11.0 (+https://scrapy.org)",
        "python-requests/2.32.3",
        "Python-urllib/3.11",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "Java/17.0.2",
        "libwww-perl/6.72",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "axios/1.7.2",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/142.0.0.0 Safari/537.36",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    ] {
        assert!(
            catalog.classify(ua.as_bytes()).is_some(),
            "{ua} not recognised"
        );
    }
}

/// `lenscap explain` itself, for a sample of agents and browsers.
#[test]
fn explain_binary_reports_categories() {
    let policy = Policy::embedded().unwrap();
    let run = |ua: &str| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_lenscap"))
            .args(["explain", "--json", "--path", "/photos/a.jpg", "--ua", ua])
            .args([
                "-H",
                "Accept: */*",
                "-H",
                "Accept-Language: en",
                "-H",
                "Accept-Encoding: gzip",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let agents = policy.catalog().agents();
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/crawlers.toml"))
            .unwrap();
    let entries = lenscap::catalog::parse_entries("crawlers.toml", &text).unwrap();
    for agent in agents.iter().step_by((agents.len() / 12).max(1)) {
        let entry = entries.iter().find(|e| e.name == agent.name()).unwrap();
        let verdict = run(&realistic(&entry.tokens[0]));
        assert_eq!(
            verdict["category"],
            agent.category().as_str(),
            "{}",
            agent.name()
        );
    }
    let all = browsers();
    for ua in all.iter().step_by(all.len() / 12) {
        let verdict = run(ua);
        assert_eq!(verdict["action"], "allow", "{ua}");
        assert_eq!(verdict["category"], "browser", "{ua}");
    }
}
