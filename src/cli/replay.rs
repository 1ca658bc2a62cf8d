//! `lenscap replay`: run logged requests through the classifier.
//!
//! `--format jsonl` reads one JSON object per line —
//! `{"ip": "…", "method": "GET", "path": "/…", "scheme": "https", "headers": {"user-agent": "…"}, "t": 12.5}`,
//! every field optional but `path`, header names case-insensitive — and writes one JSON verdict
//! per line, in input order. A line that cannot be read gets `{"line": N, "error": "…"}` in its
//! place, so outputs stay aligned with inputs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use serde::{Deserialize, Serialize};

use crate::layer::classify_parts;
use crate::policy::Policy;
use crate::verdict::Verdict;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Policy file (default: the embedded policy).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Log file, or `-` for standard input.
    input: PathBuf,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(borrow, default)]
    scheme: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    headers: BTreeMap<Cow<'a, str>, HeaderField<'a>>,
    #[serde(default)]
    #[allow(dead_code)]
    t: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderField<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

#[derive(Serialize)]
struct Out<'a> {
    action: &'static str,
    score: u32,
    category: &'static str,
    agent: Option<&'a str>,
    reasons: Vec<&'static str>,
}

impl<'a> From<&'a Verdict> for Out<'a> {
    fn from(v: &'a Verdict) -> Self {
        Out {
            action: v.action.as_str(),
            score: v.score,
            category: v.category.as_str(),
            agent: v.agent.as_deref(),
            reasons: v.reasons.names().collect(),
        }
    }
}

pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = super::load_policy(args.config.as_ref())?;
    let input: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("opening {}", args.input.display()))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let stdout = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    let Format::Jsonl = args.format;
    let bad = replay_jsonl(&policy, input, &mut out)?;
    out.flush()?;
    if bad > 0 {
        eprintln!("lenscap replay: {bad} line(s) could not be read (see their \"error\" objects)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Replays JSON lines from `input` to `out`; returns the number of unreadable lines.
fn replay_jsonl(
    policy: &Policy,
    mut input: impl BufRead,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut buf = String::new();
    let mut headers = HeaderMap::new();
    let mut number = 0usize;
    let mut bad = 0usize;
    loop {
        buf.clear();
        let read = input.read_line(&mut buf).context("reading input")?;
        if read == 0 {
            break;
        }
        number += 1;
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        match replay_line(policy, text, &mut headers) {
            Ok(verdict) => serde_json::to_writer(&mut *out, &Out::from(&verdict))?,
            Err(error) => {
                bad += 1;
                serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({ "line": number, "error": error }),
                )?;
            }
        }
        out.write_all(b"\n")?;
    }
    Ok(bad)
}

fn replay_line(policy: &Policy, text: &str, headers: &mut HeaderMap) -> Result<Verdict, String> {
    let line: Line<'_> =
        serde_json::from_str(text).map_err(|e| format!("not a request object: {e}"))?;
    headers.clear();
    for (name, field) in &line.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("bad header name {name:?}"))?;
        let mut add = |value: &str| -> Result<(), String> {
            let value =
                HeaderValue::from_str(value).map_err(|_| format!("bad value for header {name}"))?;
            headers.append(name.clone(), value);
            Ok(())
        };
        match field {
            HeaderField::One(value) => add(value)?,
            HeaderField::Many(values) => values.iter().try_for_each(|v| add(v))?,
        }
    }
    let ip = match &line.ip {
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| format!("bad ip {ip:?}"))?),
        None => None,
    };
    let method = match &line.method {
        Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| format!("bad method {m:?}"))?,
        None => Method::GET,
    };
    let tls = match line.scheme.as_deref() {
        None | Some("http") => false,
        Some("https") => true,
        Some(other) => return Err(format!("bad scheme {other:?} (http or https)")),
    };
    let path = line.path.split('?').next().unwrap_or("/");
    let (_, verdict) = classify_parts(policy, ip, &method, path, Version::HTTP_11, headers, tls);
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(input: &str) -> (Vec<serde_json::Value>, usize) {
        let policy = Policy::embedded().unwrap();
        let mut out = Vec::new();
        let bad = replay_jsonl(&policy, input.as_bytes(), &mut out).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, bad)
    }

    #[test]
    fn one_verdict_per_line_in_order_with_errors_in_place() {
        let input = concat!(
            r#"{"ip":"203.0.113.1","path":"/a.jpg","headers":{"User-Agent":"Wget/1.21.3","accept":"*/*"}}"#,
            "\n",
            "not json\n",
            r#"{"path":"/","scheme":"https","headers":{"user-agent":["Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0"],"accept":"text/html","accept-language":"en","accept-encoding":"gzip"},"t":1.5}"#,
            "\n",
            r#"{"path":"/","scheme":"gopher"}"#,
            "\n",
        );
        let (lines, bad) = replay(input);
        assert_eq!(bad, 2);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["action"], "block");
        assert_eq!(lines[0]["agent"], "Wget");
        assert_eq!(lines[1]["line"], 2);
        assert_eq!(lines[2]["action"], "allow");
        assert_eq!(lines[2]["category"], "browser");
        assert!(lines[3]["error"].as_str().unwrap().contains("gopher"));
    }
}
