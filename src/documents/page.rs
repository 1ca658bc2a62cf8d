//! The policy page: what the site reserves, why, and how crawlers are told, in plain words.

use std::fmt::Write as _;

use super::config::{ReservationConfig, contact_link};

/// Escapes text for HTML content and quoted attribute values.
///
/// Differs from the XMP escaper of the stamp on purpose: `'` becomes `&#39;` (understood by
/// every HTML parser, unlike `&apos;` in old ones), and carriage returns are left alone (HTML
/// treats them as white space).
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1d1d1f;--bg:#fbfaf7;--muted:#5b5b60;--accent:#8a3b12;--rule:#e4e0d8}\
@media (prefers-color-scheme:dark){:root{--fg:#ecebe8;--bg:#17171a;--muted:#a5a5ab;--accent:#f0a36f;--rule:#2e2e33}}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--fg);font:1.0625rem/1.6 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
main{max-width:40rem;margin:0 auto;padding:3rem 1.25rem 4rem}\
h1{font-size:1.9rem;line-height:1.2;margin:0 0 1rem}\
h2{font-size:1.15rem;margin:2.25rem 0 .5rem;padding-top:1.25rem;border-top:1px solid var(--rule)}\
.lead{font-size:1.15rem}\
li{margin:.35rem 0}\
a{color:var(--accent)}\
code{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}\
footer{margin-top:3rem;font-size:.875rem;color:var(--muted)}";

/// Renders the page. Every config value goes through [`escape_html`].
pub(crate) fn render(cfg: &ReservationConfig) -> String {
    let site = cfg.site_name.as_deref().map(escape_html);
    let site_or = |fallback: &'static str| site.clone().unwrap_or_else(|| fallback.to_owned());
    let mut h = String::with_capacity(8 * 1024);

    h.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    if cfg.reserve_training {
        h.push_str("<meta name=\"robots\" content=\"noai, noimageai\">\n");
        h.push_str("<meta name=\"tdm-reservation\" content=\"1\">\n");
        if let Some(url) = &cfg.policy_url {
            let _ = writeln!(
                h,
                "<meta name=\"tdm-policy\" content=\"{}\">",
                escape_html(url)
            );
        }
    }
    let _ = writeln!(
        h,
        "<title>AI and data-mining policy — {}</title>",
        site_or("this site")
    );
    let _ = writeln!(h, "<style>{STYLE}</style>\n</head>\n<body>\n<main>");

    let headline = if cfg.reserve_training {
        "The photos here are not for AI"
    } else {
        "How this site handles crawlers"
    };
    let _ = writeln!(h, "<h1>{headline}</h1>");
    let whose = site
        .as_ref()
        .map_or_else(|| "on this site".to_owned(), |name| format!("of {name}"));
    let _ = writeln!(
        h,
        "<p class=\"lead\">The photos {whose} show real people: guests, staff, friends on a night out. \
         They came for a drink, a meal or a party, not to become training data or a searchable face.</p>"
    );

    h.push_str("<h2>What is reserved</h2>\n");
    if cfg.reserve_training {
        h.push_str(
            "<p>Without written permission, nobody may use the photos, or anything else on this site, for:</p>\n<ul>\n\
             <li><strong>AI training</strong>: training, fine-tuning or testing machine-learning models, \
             generative or not.</li>\n\
             <li><strong>Face search</strong>: detecting, measuring or matching the faces in these photos, \
             or adding them to any face-recognition or people-search service.</li>\n\
             <li><strong>Datasets</strong>: copying the photos, or lists of their addresses, into scraped \
             archives, image collections or training sets.</li>\n",
        );
        if cfg.reserve_search {
            h.push_str("<li><strong>Search indexing</strong>: adding pages or photos to search engines.</li>\n");
        }
        h.push_str("</ul>\n");
        if !cfg.reserve_search {
            h.push_str("<p>Ordinary search engines may still list the pages, so that people can find us.</p>\n");
        }
        h.push_str(
            "<p>This is an express reservation of rights against text and data mining, as provided by \
             Article 4(3) of EU Directive 2019/790, made in machine-readable form as described below.</p>\n",
        );
    } else {
        h.push_str("<p>This site states no reservation against AI training. Pages and photos may be read by crawlers \
                    that respect the limits below.</p>\n");
    }

    if cfg.reserve_training {
        h.push_str(
            "<h2>Why</h2>\n<p>Nobody in these pictures was asked whether their face could be collected. \
             Once a photo is in a dataset or a face-search index it is copied, kept and matched indefinitely, \
             far from the evening it was taken, and it cannot be called back. \
             So the photos stay here, for the people who were there and their friends.</p>\n",
        );
    }

    h.push_str("<h2>How crawlers are told</h2>\n<ul>\n");
    if cfg.robots_txt {
        h.push_str(
            "<li><a href=\"/robots.txt\"><code>/robots.txt</code></a> keeps AI training crawlers out of the \
             whole site and AI search and assistant agents away from the images",
        );
        if cfg.content_usage || cfg.content_signal {
            h.push_str(
                ", and states the site's preferences in <code>Content-Usage</code> (IETF) and \
                        <code>Content-Signal</code> lines",
            );
        }
        h.push_str(".</li>\n");
    }
    if cfg.reserve_training {
        if cfg.ai_txt {
            h.push_str("<li><a href=\"/ai.txt\"><code>/ai.txt</code></a> (Spawning) disallows images and other media.</li>\n");
        }
        if cfg.tdmrep {
            h.push_str(
                "<li><a href=\"/.well-known/tdmrep.json\"><code>/.well-known/tdmrep.json</code></a> (W3C TDMRep) \
                 reserves text and data mining for the whole site.</li>\n",
            );
        }
        h.push_str(
            "<li>HTTP headers on the photos: <code>X-Robots-Tag: noai, noimageai</code>, \
             <code>tdm-reservation: 1</code> and <code>Content-Usage: train-ai=n</code>.</li>\n",
        );
        if cfg.html_meta {
            h.push_str(
                "<li>Every page carries <code>&lt;meta name=\"robots\" content=\"noai, noimageai\"&gt;</code> \
                 and <code>&lt;meta name=\"tdm-reservation\" content=\"1\"&gt;</code>.</li>\n",
            );
        }
        h.push_str(
            "<li>Photos can carry the reservation inside the file too, as IPTC Data Mining metadata \
             (<code>plus:DataMining</code>), so it travels with every copy.</li>\n",
        );
    }
    h.push_str("</ul>\n<p>Crawlers that ignore these signals, or collect photos in bulk, are slowed down or blocked.</p>\n");

    if let Some(url) = &cfg.policy_url {
        let url = escape_html(url);
        let _ = writeln!(
            h,
            "<p>The full terms for using this site's content: <a href=\"{url}\">{url}</a>.</p>"
        );
    }
    if let Some(note) = &cfg.policy_note {
        for para in note.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
            let _ = writeln!(h, "<p>{}</p>", escape_html(para).replace('\n', "<br>\n"));
        }
    }

    h.push_str("<h2>Contact</h2>\n");
    match cfg.contact.as_deref().and_then(contact_link) {
        Some(link) => {
            let _ = writeln!(
                h,
                "<p>To ask for permission, or to have a photo of you taken down, contact {} at \
                 <a href=\"{}\">{}</a>.</p>",
                site_or("the site"),
                escape_html(&link.href()),
                escape_html(&link.to_string()),
            );
        }
        None => {
            let _ = writeln!(
                h,
                "<p>To ask for permission, or to have a photo of you taken down, contact {} directly.</p>",
                site_or("the people who run this site"),
            );
        }
    }

    h.push_str("<footer>Served by Lenscap.</footer>\n</main>\n</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn hostile_values_are_escaped() {
        let cfg = ReservationConfig {
            site_name: Some("<script>alert(1)</script>".into()),
            policy_note: Some("Ask \"us\" <b>now</b>".into()),
            contact: Some("https://example.com/?a=1&b=\"2\"".into()),
            ..Default::default()
        };
        let page = render(&cfg);
        assert!(!page.contains("<script>") && !page.contains("<b>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("Ask &quot;us&quot; &lt;b&gt;now&lt;/b&gt;"));
    }

    #[test]
    fn email_contact_is_a_mailto_link() {
        let cfg = ReservationConfig {
            contact: Some("bar@example.com".into()),
            ..Default::default()
        };
        assert!(render(&cfg).contains("<a href=\"mailto:bar@example.com\">bar@example.com</a>"));
    }

    #[test]
    fn no_script() {
        let page = render(&ReservationConfig::default());
        assert!(!page.contains("<script") && !page.contains("javascript:"));
        assert!(page.starts_with("<!doctype html>"));
    }
}

/// `target` (a path or relative reference, maybe with a query and a fragment) with the query
/// pair `name=value` set: pairs of the same name it had are dropped, the new one goes last,
/// before the fragment.
pub(crate) fn with_query_pair(target: &str, pair: &str) -> String {
    let name = pair.split('=').next().unwrap_or(pair);
    let (before_fragment, fragment) = target.split_at(target.find('#').unwrap_or(target.len()));
    let (path, query) = before_fragment
        .split_once('?')
        .unwrap_or((before_fragment, ""));
    let mut out = String::with_capacity(target.len() + pair.len() + 2);
    out.push_str(path);
    let mut sep = '?';
    for kept in query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(name))
    {
        out.push(sep);
        out.push_str(kept);
        sep = '&';
    }
    out.push(sep);
    out.push_str(pair);
    out.push_str(fragment);
    out
}

#[cfg(test)]
mod query_pair_tests {
    use super::with_query_pair;

    #[test]
    fn the_pair_replaces_its_namesakes_and_keeps_the_fragment() {
        assert_eq!(with_query_pair("/a", "k=1"), "/a?k=1");
        assert_eq!(with_query_pair("/a?x=2#top", "k=1"), "/a?x=2&k=1#top");
        assert_eq!(with_query_pair("/a?k=0&x=2&k", "k=1"), "/a?x=2&k=1");
        assert_eq!(with_query_pair("?page=2", "k=1"), "?page=2&k=1");
    }
}
