//! `lenscap replay` gives the same report whatever is done to make it faster: a fixed log of
//! people, crawlers, scripts, a scraper rotating User-Agents, Lenscap's own access-log fields
//! (visitor cookies, fingerprints, content types), JSON escapes, header arrays and unreadable
//! lines is replayed, and every verdict line, the JSON summary and the text summary must
//! equal the reports `main` gave for the same log at `1ef9687` (before issue 17's replay
//! work), kept in `tests/data/replay/`. Blessed again since on purpose: when a cookie
//! visitor's navigation refused for pace began to restart its wait (`Rate::hold_back`), two
//! verdicts of two fast clients went from allowed to limited (lines 921 and 3647), and the
//! summaries' counts with them.
//!
//! The log is made here from `tests/data/` with a fixed seed. The expected reports were
//! written by `LENSCAP_BLESS_REPLAY=/path/to/main/lenscap cargo test --test replay_report`,
//! which runs the named binary instead of this build's and rewrites them (and says so by
//! failing); after a change that is meant to alter verdicts, bless with this build's binary
//! and review the diff before committing it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const BROWSERS: &str = include_str!("data/browsers.txt");
const GENERATED_BROWSERS: &str = include_str!("data/browsers-generated.txt");
const CRAWLERS: &str = include_str!("data/crawlers.txt");

/// Lines in the jsonl log.
const LINES: usize = 6_000;

fn user_agents(text: &'static str) -> Vec<&'static str> {
    text.lines()
        .map(|l| l.trim().trim_matches('\''))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// SplitMix64: a fixed, dependency-free sequence.
struct Seq(u64);

impl Seq {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn address(&mut self) -> String {
        format!(
            "{}.{}.{}.{}",
            1 + self.below(223),
            self.below(256),
            self.below(256),
            1 + self.below(254)
        )
    }
}

/// A JSON string literal, escaped the way a log writer might (`\/` and `\u` escapes too).
fn json(s: &str, seq: &mut Seq) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if seq.chance(3) => out.push_str("\\/"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Person {
    ip: String,
    ua: &'static str,
    secure: bool,
    /// Lenscap's access log: the visitor id of the cookie it was given, once given one.
    logged: bool,
    id: usize,
    visitor: Option<String>,
    page: Option<String>,
}

fn person_line(p: &mut Person, seq: &mut Seq) -> String {
    let page = p.page.is_none() || seq.chance(15);
    let path = if page {
        let path = format!("/gallery/{}", seq.below(12));
        p.page = Some(path.clone());
        path
    } else {
        format!("/photos/IMG_{:04}.jpg", seq.below(400))
    };
    let mut headers = vec![
        ("user-agent", json(p.ua, seq)),
        (
            "accept",
            json(
                if page {
                    "text/html,application/xhtml+xml,*/*;q=0.8"
                } else {
                    "image/avif,image/webp,*/*;q=0.8"
                },
                seq,
            ),
        ),
        ("Accept-Language", json("en-GB,en;q=0.9", seq)),
        ("accept-encoding", json("gzip, deflate, br", seq)),
    ];
    if !page {
        let referer = format!(
            "https://gallery.example{}",
            p.page.as_deref().unwrap_or("/")
        );
        headers.push(("referer", json(&referer, seq)));
    }
    if p.secure {
        let dest = if page { "document" } else { "image" };
        headers.push(("sec-fetch-dest", json(dest, seq)));
        headers.push(("sec-fetch-mode", "\"no-cors\"".into()));
    }
    let mut extra = String::new();
    if p.logged {
        match &p.visitor {
            Some(v) => {
                let _ = write!(extra, r#","visitor":"{v}""#);
            }
            None if page => {
                let v = format!("v{}", p.id);
                let _ = write!(extra, r#","set_visitor":"{v}""#);
                p.visitor = Some(v);
            }
            None => {}
        }
        if !page {
            extra.push_str(r#","content_type":"image/jpeg""#);
        }
    }
    object(&p.ip, &path, p.secure, &headers, &extra)
}

fn object(ip: &str, path: &str, secure: bool, headers: &[(&str, String)], extra: &str) -> String {
    let scheme = if secure { "https" } else { "http" };
    let fields: Vec<String> = headers
        .iter()
        .map(|(n, v)| format!("\"{n}\":{v}"))
        .collect();
    format!(
        r#"{{"ip":"{ip}","method":"GET","path":"{path}","scheme":"{scheme}","headers":{{{}}}{extra}"#,
        fields.join(",")
    )
}

/// Lines that exercise the parser's corners (each followed by `"t":…}` like the others).
fn oddity(n: usize, seq: &mut Seq) -> String {
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
    match n % 16 {
        0 => r#"{"path":"/robots.txt","headers":{"user-agent":"Wget/1.21.3"}"#.into(),
        1 => format!(
            r#"{{"ip":"203.0.113.9","path":"/gallery/1","version":"HTTP/2","scheme":"https","headers":{{"user-agent":"{chrome}","accept":"text/html","accept-language":"en","accept-encoding":"gzip","sec-ch-ua":"\"Chromium\";v=\"142\""}},"ja4":"t13d1516h2_8daaf6152771_e5627efa2ab1","tls_traits":"grease,alps","h2":"1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p""#
        ),
        2 => format!(
            r#"{{"ip":"203.0.113.10","path":"/photos/a.jpg","scheme":"https","headers":{{"user-agent":"{chrome}","accept":"*/*"}},"ja4":"t13d1715h2_5b57614c22b0_3d5424432f57","tls_traits":"record-size-limit""#
        ),
        3 => r#"{"ip":"2001:db8::7","method":"HEAD","path":"/photos/b.png?size=thumb","headers":{"User-Agent":"curl/8.5.0","ACCEPT":["*/*","image/png"],"accept":"image/webp"}"#.into(),
        4 => r#"{"ip":"66.249.66.1","path":"/photos/c.webp","headers":{"user-agent":"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)","accept":"*/*","accept-encoding":"gzip"}"#.into(),
        5 => r#"{"ip":"198.51.100.77","path":"/lenscap-trap/x","headers":{"user-agent":"Mozilla/5.0 (compatible; MyHarvester/0.3; +https://example.org/bot)"}"#.into(),
        6 => r#"{"ip":"198.51.100.78","method":"POST","path":"/contact.php","version":"HTTP/1.0","headers":{"user-agent":"Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; SLCC2)","connection":"close"}"#.into(),
        7 => r#"{"ip":"198.51.100.79","path":"/ai.txt","headers":{}"#.into(),
        8 => r#"{"ip":"198.51.100.80","path":"/p/\u00e9t\u00e9.jpg","headers":{"user-agent":"Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0 \u00c9dition","accept":"image/*"}"#.into(),
        9 => r#"{"ip":"not-an-address","path":"/""#.into(),
        10 => r#"{"ip":"198.51.100.81","path":"/","scheme":"gopher""#.into(),
        11 => r#"{"ip":"198.51.100.82","path":"/","headers":{"bad header":"x"}"#.into(),
        12 => r#"{"ip":"198.51.100.83","path":"/","method":"G E T""#.into(),
        13 => r#"{"ip":"198.51.100.84","path":"/","version":"HTTP/9""#.into(),
        14 => format!(
            r#"{{"ip":"198.51.100.85","path":"/gallery/{}","extra":{{"nested":[1,2,{{"a":null}}]}},"headers":{{"user-agent":"{chrome}","accept":"text/html","x-empty":[]}}"#,
            seq.below(5)
        ),
        _ => r#"{"ip":"198.51.100.86","path":"/","headers":{"user-agent":"x\u0001y"}"#.into(),
    }
}

/// The jsonl log: about 55% people, 15% crawlers, 12% scripts, 10% a scraper rotating
/// User-Agents, the rest parser corners and broken lines.
fn jsonl_log() -> String {
    let mut seq = Seq(17);
    let browsers: Vec<&str> = user_agents(BROWSERS)
        .into_iter()
        .chain(user_agents(GENERATED_BROWSERS))
        .collect();
    let crawlers = user_agents(CRAWLERS);
    let shared: Vec<String> = (0..6).map(|_| seq.address()).collect();
    let mut people: Vec<Person> = (0..120)
        .map(|id| {
            let popular = 1 + seq.below(browsers.len());
            Person {
                ip: if seq.chance(25) {
                    seq.pick(&shared).clone()
                } else {
                    seq.address()
                },
                // Popular User-Agents first: a few carry most of the people.
                ua: browsers[seq.below(popular)],
                secure: seq.chance(60),
                logged: seq.chance(30),
                id,
                visitor: None,
                page: None,
            }
        })
        .collect();
    let bots: Vec<(String, &str)> = (0..60)
        .map(|_| (seq.address(), *seq.pick(&crawlers)))
        .collect();
    let scripts = [
        "Wget/1.21.3",
        "curl/8.5.0",
        "python-requests/2.32.3",
        "Go-http-client/1.1",
        "Scrapy/2.11.0 (+https://scrapy.org)",
        "okhttp/4.12.0",
    ];
    let tools: Vec<(String, &str)> = (0..20)
        .map(|_| (seq.address(), *seq.pick(&scripts)))
        .collect();
    let mut log = String::new();
    let mut t = 1_780_000_000.0_f64;
    for n in 0..LINES {
        let pick = seq.below(100);
        let text = if pick < 55 {
            let i = seq.below(people.len());
            person_line(&mut people[i], &mut seq)
        } else if pick < 70 {
            let (ip, ua) = seq.pick(&bots);
            let path = format!("/photos/IMG_{:04}.jpg", seq.below(400));
            let ua = json(ua, &mut seq);
            object(ip, &path, false, &[("user-agent", ua)], "")
        } else if pick < 82 {
            let (ip, ua) = seq.pick(&tools);
            let path = format!("/photos/IMG_{:04}.jpg", seq.below(400));
            let headers = [
                ("user-agent", json(ua, &mut seq)),
                ("accept", "\"*/*\"".into()),
            ];
            object(ip, &path, false, &headers, "")
        } else if pick < 92 {
            let ip = format!("198.18.{}.{}", seq.below(4), 1 + seq.below(30));
            let path = format!("/photos/IMG_{:04}.jpg", seq.below(400));
            let ua = *seq.pick(&browsers);
            let ua = json(ua, &mut seq);
            let headers = [
                ("user-agent", ua),
                ("accept", "\"image/avif,image/webp,*/*;q=0.8\"".into()),
                ("accept-language", "\"en-US,en;q=0.5\"".into()),
                ("accept-encoding", "\"gzip, deflate, br\"".into()),
            ];
            object(&ip, &path, true, &headers, "")
        } else if pick < 99 {
            oddity(n, &mut seq)
        } else {
            log.push_str(if n % 2 == 0 { "not json\n" } else { "\n" });
            continue;
        };
        // Some lines carry no time (they take the last one's); the others advance it.
        if seq.chance(3) {
            let _ = writeln!(log, "{text}}}");
        } else {
            let _ = writeln!(log, "{text},\"t\":{t:.3}}}");
        }
        t += 0.004 + seq.below(40) as f64 / 1000.0;
    }
    log
}

/// A combined log of the same shape (people, crawlers, scripts), for the text summary.
fn combined_log() -> String {
    let mut seq = Seq(29);
    let browsers = user_agents(BROWSERS);
    let crawlers = user_agents(CRAWLERS);
    let clients: Vec<(String, &str)> = (0..40)
        .map(|i| {
            let ua = if seq.chance(70) {
                seq.pick(&browsers)
            } else {
                seq.pick(&crawlers)
            };
            (format!("192.0.2.{}", 1 + i), *ua)
        })
        .collect();
    let mut log = String::new();
    for n in 0..1_500usize {
        let (ip, mut ua) = seq.pick(&clients).clone();
        if seq.chance(10) {
            ua = *seq.pick(&browsers);
        }
        let ua = ua.replace('"', "\\\"");
        let path = if seq.chance(20) {
            format!("/gallery/{}", seq.below(8))
        } else {
            format!("/photos/IMG_{:04}.jpg", seq.below(300))
        };
        let s = n / 3;
        let _ = writeln!(
            log,
            r#"{ip} - - [05/Jun/2026:{:02}:{:02}:{:02} +0000] "GET {path} HTTP/1.1" 200 4096 "https://gallery.example/" "{ua}""#,
            20 + s / 3600,
            s / 60 % 60,
            s % 60
        );
    }
    log
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay")
}

fn run_replay(name: &str, log: &str, args: &[&str]) -> String {
    let file = std::env::temp_dir().join(format!(
        "lenscap-replay-report-{}-{name}.log",
        std::process::id()
    ));
    std::fs::write(&file, log).unwrap();
    let binary = std::env::var_os("LENSCAP_BLESS_REPLAY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_lenscap")),
        PathBuf::from,
    );
    let output = Command::new(&binary)
        .arg("replay")
        .args(args)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
    std::fs::remove_file(&file).ok();
    // Unreadable lines make the exit status 1; anything else is a failure.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "lenscap replay {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut report = String::from_utf8(output.stdout).expect("a UTF-8 report");
    report.push_str("--- stderr\n");
    report.push_str(&String::from_utf8(output.stderr).expect("UTF-8 errors"));
    report
}

fn read_expected(name: &str) -> String {
    let path = fixtures().join(format!("{name}.gz"));
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("opening the expected report {}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text
}

fn bless(name: &str, report: &str) {
    std::fs::create_dir_all(fixtures()).unwrap();
    let file = std::fs::File::create(fixtures().join(format!("{name}.gz"))).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    gz.write_all(report.as_bytes()).unwrap();
    gz.finish().unwrap();
}

/// Compares a report with its fixture line by line, naming the first line that differs.
fn check(name: &str, report: &str) {
    if std::env::var_os("LENSCAP_BLESS_REPLAY").is_some() {
        bless(name, report);
        return;
    }
    let expected = read_expected(name);
    let (got, want): (Vec<&str>, Vec<&str>) =
        (report.lines().collect(), expected.lines().collect());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{name}: line {} of the report differs", i + 1);
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: the report has {} lines, main's had {}",
        got.len(),
        want.len()
    );
}

/// Blessing never passes: the fixtures were rewritten, not compared.
fn fail_if_blessing() {
    assert!(
        std::env::var_os("LENSCAP_BLESS_REPLAY").is_none(),
        "wrote the expected reports in tests/data/replay/; unset LENSCAP_BLESS_REPLAY to compare"
    );
}

#[test]
fn the_log_covers_what_it_must() {
    let log = jsonl_log();
    let lines = log.lines().count();
    assert_eq!(lines, LINES);
    for needle in [
        "set_visitor",
        "\"visitor\"",
        "\"ja4\"",
        "\\u00e9",
        "\\/",
        "HEAD",
        "not json",
    ] {
        assert!(log.contains(needle), "the log has no {needle}");
    }
}

#[test]
fn every_verdict_is_what_main_gave() {
    let report = run_replay("verdicts", &jsonl_log(), &["--verdicts"]);
    assert!(
        report.lines().count() > LINES * 9 / 10,
        "{}",
        &report[..200]
    );
    check("verdicts.jsonl", &report);
    fail_if_blessing();
}

#[test]
fn the_json_summary_is_what_main_gave() {
    let report = run_replay("json", &jsonl_log(), &["--json", "--top", "200"]);
    check("summary.json", &report);
    fail_if_blessing();
}

#[test]
fn the_text_summaries_are_what_main_gave() {
    let report = run_replay("text", &jsonl_log(), &["--top", "40"]);
    check("summary.txt", &report);
    let report = run_replay("combined", &combined_log(), &["--format", "combined"]);
    check("combined.txt", &report);
    fail_if_blessing();
}
