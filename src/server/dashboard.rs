//! The dashboard at the admin listener's `/`: one HTML page for a venue owner, drawn by the
//! server from the bounded aggregates ([`Summary`]) — inline CSS and SVG, no JavaScript, no
//! external assets, one column on a phone. `?site=NAME` shows one site; the default is every
//! site together. The page refreshes itself every minute (a `<meta>` refresh).

use std::fmt::Write as _;

use crate::documents::escape_html;
use crate::metrics::{Named, Period, SiteSummary, Summary};

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1d1d1f;--bg:#fbfaf7;--muted:#5b5b60;--rule:#e4e0d8;--people:#2f7d4f;--crawl:#c28a12;--stop:#b3261e}\
@media (prefers-color-scheme:dark){:root{--fg:#ecebe8;--bg:#17171a;--muted:#a5a5ab;--rule:#2e2e33;--people:#5cc488;--crawl:#e8b64a;--stop:#ff7a70}}\
*{box-sizing:border-box}body{margin:0;font:16px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);background:var(--bg)}\
main{max-width:68rem;margin:0 auto;padding:1rem}h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.6rem 0 .5rem}\
.muted{color:var(--muted)}.badge{display:inline-block;padding:.1rem .5rem;border-radius:.8rem;font-size:.85rem;border:1px solid var(--rule)}\
.enforce{background:var(--people);color:#fff}.report{background:var(--crawl);color:#000}\
nav a{margin-right:.8rem}nav a[aria-current]{font-weight:700;text-decoration:none}\
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(9.5rem,1fr));gap:.6rem}\
.card{border:1px solid var(--rule);border-radius:.5rem;padding:.6rem .8rem}.card b{display:block;font-size:1.6rem}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:1rem}\
table{border-collapse:collapse;width:100%;font-size:.92rem}th,td{text-align:left;padding:.3rem .4rem;border-bottom:1px solid var(--rule);vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.wrap{overflow-x:auto}\
svg{width:100%;height:auto;display:block}svg text{fill:var(--muted);font-size:11px}\
.p{fill:var(--people)}.c{fill:var(--crawl)}.s{fill:var(--stop)}.key span{margin-right:1rem}.key i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-.1rem}\
.key .p{background:var(--people)}.key .c{background:var(--crawl)}.key .s{background:var(--stop)}svg.h text{font-size:13px}";

/// The page for `summary`; `query` may name a site (`site=NAME`).
pub(super) fn html(summary: &Summary, query: Option<&str>) -> String {
    let wanted = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("site="));
    let shown = wanted
        .and_then(|name| summary.sites.iter().find(|s| s.site == name))
        .unwrap_or(&summary.all);
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    out.push_str("<meta http-equiv=\"refresh\" content=\"60\">");
    out.push_str("<title>Lenscap: what was stopped</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body><main>\n");
    heading(&mut out, summary, shown);
    if summary.sites.len() > 1 {
        out.push_str("<nav aria-label=\"sites\">");
        link(
            &mut out,
            "all sites",
            "/",
            shown.site == "all" && wanted.is_none(),
        );
        for site in &summary.sites {
            let href = format!("/?site={}", escape_html(&site.site));
            link(&mut out, &site.site, &href, std::ptr::eq(site, shown));
        }
        out.push_str("</nav>\n");
    }
    for (title, period) in [("The last hour", &shown.hour), ("The last day", &shown.day)] {
        let _ = writeln!(out, "<h2>{title}</h2>");
        cards(&mut out, period);
    }
    out.push_str("<h2>Requests over the last day, hour by hour</h2>\n");
    key(&mut out);
    bars(&mut out, &shown.day, 3600);
    out.push_str("<h2>The last hour, five minutes at a time</h2>\n");
    bars(&mut out, &shown.hour, 300);
    out.push_str("<div class=\"grid\"><section><h2>Stopped, by kind of client</h2>\n");
    out.push_str("<p class=\"muted\">Over the last day.</p>");
    hbars(&mut out, &shown.day.stopped_by_category, category_words);
    counts(
        &mut out,
        "kind",
        &shown.day.stopped_by_category,
        &shown.hour.stopped_by_category,
        category_words,
    );
    out.push_str("</section><section><h2>Stopped, by agent</h2>\n");
    out.push_str("<p class=\"muted\">Named crawlers, or what an unnamed client looked like.</p>");
    counts(
        &mut out,
        "agent",
        &shown.day.stopped_by_agent,
        &shown.hour.stopped_by_agent,
        |name| name.to_owned(),
    );
    out.push_str("</section><section><h2>Clients stopped most</h2>\n");
    out.push_str("<p class=\"muted\">Addresses shortened to their network unless the configuration asks for full ones.</p>");
    counts(
        &mut out,
        "client",
        &shown.day.top_clients,
        &shown.hour.top_clients,
        |name| name.to_owned(),
    );
    out.push_str("</section></div>\n");
    recent(&mut out, shown);
    out.push_str("<p class=\"muted\">Figures since the server started, kept in memory; JSON at <a href=\"/api/summary\">/api/summary</a>, Prometheus at <a href=\"/metrics\">/metrics</a>.</p>\n");
    out.push_str("</main></body></html>\n");
    out
}

fn heading(out: &mut String, summary: &Summary, shown: &SiteSummary) {
    let name = if shown.site == "all" {
        "all sites".to_owned()
    } else {
        format!("site {}", shown.site)
    };
    let _ = write!(
        out,
        "<h1>What Lenscap stopped</h1><p class=\"muted\">{} · at {} UTC</p>\n<p>",
        escape_html(&name),
        clock(summary.generated_at, true)
    );
    match shown.mode.as_deref() {
        Some("enforce") => out.push_str(
            "<span class=\"badge enforce\">Enforcing</span> crawlers that break the policy are refused.",
        ),
        Some("report-only") => out.push_str(
            "<span class=\"badge report\">Report only</span> nothing is refused: the figures show what would have been stopped.",
        ),
        Some(other) => {
            let _ = write!(out, "<span class=\"badge\">{}</span> sites differ: open one to see its mode.", escape_html(other));
        }
        None => {}
    }
    match (summary.last_reload, summary.last_reload_ok) {
        (Some(t), Some(true)) => {
            let _ = write!(out, " Policy last reloaded at {} UTC.", clock(t, true));
        }
        (Some(t), _) => {
            let _ = write!(
                out,
                " The last reload, at {} UTC, <strong>failed</strong>: the previous policy is still in force.",
                clock(t, true)
            );
        }
        _ => {
            let _ = write!(
                out,
                " Policy unchanged since the start at {} UTC.",
                clock(summary.started_at, true)
            );
        }
    }
    out.push_str("</p>\n");
}

fn link(out: &mut String, text: &str, href: &str, current: bool) {
    let _ = write!(
        out,
        "<a href=\"{href}\"{}>{}</a>",
        if current {
            " aria-current=\"page\""
        } else {
            ""
        },
        escape_html(text)
    );
}

fn cards(out: &mut String, period: &Period) {
    out.push_str("<div class=\"cards\">");
    for (label, value, id) in [
        ("requests from people", period.people, "people"),
        ("requests from crawlers", period.crawlers, "crawlers"),
        ("images served", period.images_served, "images-served"),
        ("images refused", period.images_refused, "images-refused"),
        ("requests stopped", period.stopped, "stopped"),
        ("requests licensed (paid)", period.licensed, "licensed"),
    ] {
        let _ = write!(
            out,
            "<div class=\"card\" data-figure=\"{id}\"><b>{value}</b>{label}</div>"
        );
    }
    out.push_str("</div>\n");
}

fn key(out: &mut String) {
    out.push_str("<p class=\"key muted\"><span><i class=\"p\"></i>people</span><span><i class=\"c\"></i>crawlers let through</span><span><i class=\"s\"></i>stopped</span></p>\n");
}

/// One stacked bar per bucket: people, crawlers let through, stopped.
fn bars(out: &mut String, period: &Period, width: u64) {
    let (w, h, top, bottom) = (720.0, 180.0, 8.0, 22.0);
    let n = period.buckets.len().max(1) as f64;
    let most = period
        .buckets
        .iter()
        .map(|b| b.people + b.crawlers)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = w / n;
    let scale = (h - top - bottom) / most;
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"requests per {}\">",
        if width >= 3600 {
            "hour"
        } else {
            "five minutes"
        }
    );
    for (i, bucket) in period.buckets.iter().enumerate() {
        let x = i as f64 * slot + slot * 0.1;
        let bw = slot * 0.8;
        let let_through = bucket.crawlers.saturating_sub(bucket.stopped);
        let mut y = h - bottom;
        for (class, value) in [
            ("p", bucket.people),
            ("c", let_through),
            ("s", bucket.stopped),
        ] {
            if value == 0 {
                continue;
            }
            let bh = value as f64 * scale;
            y -= bh;
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\"><title>{} {value}</title></rect>",
                clock(bucket.start, false)
            );
        }
        let every = if width >= 3600 { 3 } else { 2 };
        if i % every == 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + bw / 2.0,
                h - 6.0,
                clock(bucket.start, false)
            );
        }
    }
    let _ = writeln!(
        out,
        "<text x=\"2\" y=\"{:.1}\">{}</text></svg>",
        top + 4.0,
        most as u64
    );
}

/// A horizontal bar per name.
fn hbars(out: &mut String, list: &[Named], words: fn(&str) -> String) {
    if list.is_empty() {
        out.push_str("<p>Nothing stopped.</p>");
        return;
    }
    let most = list.iter().map(|n| n.count).max().unwrap_or(1).max(1) as f64;
    let row = 24.0;
    let h = row * list.len() as f64;
    let _ = write!(
        out,
        "<svg class=\"h\" viewBox=\"0 0 360 {h}\" role=\"img\" aria-label=\"stopped by kind of client\">"
    );
    for (i, named) in list.iter().enumerate() {
        let y = i as f64 * row;
        let bw = (named.count as f64 / most * 170.0).max(1.0);
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{:.1}\">{}</text><rect class=\"s\" x=\"150\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y + 16.0,
            escape_html(&words(&named.name)),
            y + 4.0,
            row - 8.0,
            150.0 + bw + 4.0,
            y + 16.0,
            named.count
        );
    }
    out.push_str("</svg>\n");
}

/// A table of names with their counts over the day and the hour.
fn counts(out: &mut String, what: &str, day: &[Named], hour: &[Named], words: fn(&str) -> String) {
    if day.is_empty() {
        out.push_str("<p>Nothing stopped.</p>\n");
        return;
    }
    let _ = write!(
        out,
        "<div class=\"wrap\"><table data-table=\"{what}\"><tr><th>{what}</th><th class=\"n\">last hour</th><th class=\"n\">last day</th></tr>"
    );
    for named in day {
        let in_hour = hour
            .iter()
            .find(|n| n.name == named.name)
            .map_or(0, |n| n.count);
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{in_hour}</td><td class=\"n\">{}</td></tr>",
            escape_html(&words(&named.name)),
            named.count
        );
    }
    out.push_str("</table></div>\n");
}

fn recent(out: &mut String, shown: &SiteSummary) {
    out.push_str("<h2>Latest verdicts</h2>\n");
    if shown.recent.is_empty() {
        out.push_str("<p>Every request so far was a plain allow.</p>\n");
        return;
    }
    out.push_str("<div class=\"wrap\"><table data-table=\"recent\"><tr><th>time</th><th>site</th><th>client</th><th>who</th><th>what happened</th><th>why</th><th>asked for</th></tr>");
    for v in &shown.recent {
        let happened = match v.outcome {
            "blocked" => "refused",
            "limited" => "refused: too fast",
            "throttled" => "slowed",
            _ => "allowed",
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{happened}</td><td>{}</td><td>{}</td></tr>",
            clock(v.unix, true),
            escape_html(&v.site),
            escape_html(&v.client),
            escape_html(&v.agent),
            escape_html(&v.why),
            escape_html(&v.path)
        );
    }
    out.push_str("</table></div>\n");
}

/// A category's name in plain words.
fn category_words(name: &str) -> String {
    match name {
        "ai-training" => "AI training crawlers",
        "ai-assistant" => "AI assistants",
        "ai-search" => "AI search",
        "ai-agent" => "AI agents",
        "search-engine" => "search engines",
        "seo" => "SEO tools",
        "archiver" => "web archives",
        "social-preview" => "link previews",
        "monitor" => "monitors",
        "feed-reader" => "feed readers",
        "bulk-downloader" => "bulk downloaders",
        "http-library" => "scripts (HTTP libraries)",
        "headless-browser" => "headless browsers",
        "scraper" => "scrapers",
        "browser" => "browser-looking scripts",
        "unknown" => "unidentified clients",
        other => other,
    }
    .to_owned()
}

/// `14:05` (or `2026-12-01 14:05:09` with `full`), UTC.
fn clock(unix: u64, full: bool) -> String {
    let secs = unix % 86_400;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if !full {
        return format!("{h:02}:{m:02}");
    }
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RecentVerdict;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(clock(0, true), "1970-01-01 00:00:00");
        assert_eq!(clock(1_764_590_645, true), "2025-12-01 12:04:05");
        assert_eq!(clock(951_782_400, true), "2000-02-29 00:00:00");
        assert_eq!(clock(1_764_590_645, false), "12:04");
    }

    #[test]
    fn hostile_paths_and_names_are_escaped() {
        let mut summary = Summary::default();
        summary.all.site = "all".into();
        summary.all.recent.push(RecentVerdict {
            path: "/<script>alert(1)</script>".into(),
            agent: "\"><img src=x>".into(),
            ..RecentVerdict::default()
        });
        let page = html(&summary, None);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;&gt;&lt;img src=x&gt;"));
        assert!(!page.contains("<script"), "no JavaScript at all");
    }
}
