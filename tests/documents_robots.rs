//! The generated robots.txt, read by two real parsers: texting_robots and Google's (robotstxt).

use lenscap::documents::{Disallow, DocumentError, Documents, ReservationConfig, RobotsAgent};
use proptest::prelude::*;

const EVERYTHING: [&str; 4] = ["GPTBot", "ClaudeBot", "CCBot", "Bytespider"];
const IMAGES: [&str; 3] = ["PerplexityBot", "OAI-SearchBot", "Claude-SearchBot"];
const TRAPS: [&str; 2] = ["/.well-known/lenscap/", "/gallery/originals-all/"];

const SITE: &str = "\u{feff}# robots.txt for The Red Lion\r\n\
User-agent: *\r\n\
Disallow: /admin/\r\n\
Disallow: /cgi-bin/\r\n\
Allow: /admin/public/\r\n\
\r\n\
User-agent: GPTBot\r\n\
Disallow: /private/\r\n\
Allow: /press/\r\n\
\r\n\
User-agent: Googlebot\r\n\
User-agent: Bingbot\r\n\
Disallow: /drafts/\r\n\
\r\n\
user-agent: perplexitybot # lower case on purpose\r\n\
Disallow: /menu/\r\n\
\r\n\
Sitemap: https://redlion.example/sitemap.xml\r\n";

fn agents() -> Vec<RobotsAgent> {
    let mut agents: Vec<_> = EVERYTHING
        .iter()
        .map(|t| RobotsAgent::new(*t, Disallow::Everything))
        .collect();
    agents.extend(
        IMAGES
            .iter()
            .map(|t| RobotsAgent::new(*t, Disallow::Images)),
    );
    agents.push(RobotsAgent::new("AI2Bot", Disallow::Everything));
    agents
}

fn traps() -> Vec<String> {
    TRAPS.iter().map(|t| t.to_string()).collect()
}

fn robots(cfg: &ReservationConfig, site: Option<&str>) -> String {
    let docs = Documents::build(cfg, &agents(), &traps(), site).expect("documents build");
    String::from_utf8(
        docs.body("/robots.txt")
            .expect("robots.txt served")
            .to_vec(),
    )
    .unwrap()
}

/// Asks both parsers; they must agree, and agree with `expected`.
#[track_caller]
fn check(robots: &str, agent: &str, path: &str, expected: bool) {
    let texting = texting_robots::Robot::new(agent, robots.as_bytes())
        .expect("texting_robots parses it")
        .allowed(path);
    let url = format!("https://redlion.example{path}");
    let google =
        robotstxt::DefaultMatcher::default().one_agent_allowed_by_robots(robots, agent, &url);
    assert_eq!(
        texting, expected,
        "texting_robots: {agent} {path}\n{robots}"
    );
    assert_eq!(
        google, expected,
        "robotstxt (Google): {agent} {path}\n{robots}"
    );
}

/// How many `User-agent` lines name `agent` (case-insensitive), i.e. how many groups it is in.
fn groups_naming(robots: &str, agent: &str) -> usize {
    robots
        .lines()
        .filter_map(|l| l.strip_prefix("User-agent: "))
        .filter(|a| a.eq_ignore_ascii_case(agent))
        .count()
}

/// The lines of the group that names `agent`.
fn group_of<'a>(robots: &'a str, agent: &str) -> Vec<&'a str> {
    let mut lines = robots
        .lines()
        .skip_while(|l| !l.eq_ignore_ascii_case(&format!("User-agent: {agent}")));
    let mut group = Vec::new();
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        group.push(line);
    }
    group
}

#[test]
fn everything_agents_are_kept_out() {
    let txt = robots(&ReservationConfig::default(), None);
    for agent in EVERYTHING {
        for path in ["/", "/photos/a.jpg", "/photos/", "/index.html", TRAPS[0]] {
            check(&txt, agent, path, false);
        }
        // Agent names match case-insensitively.
        check(&txt, &agent.to_ascii_lowercase(), "/photos/a.jpg", false);
    }
}

#[test]
fn images_agents_read_pages_but_not_photos() {
    let txt = robots(&ReservationConfig::default(), None);
    for agent in IMAGES {
        for path in [
            "/",
            "/menu",
            "/photos/",
            "/photos/a.jpg.html",
            "/about.html",
        ] {
            check(&txt, agent, path, true);
        }
        for path in [
            "/photos/a.jpg",
            "/x/IMG_1.JPEG",
            "/x/IMG_1.jpeg",
            "/photos/a.webp?w=300",
            "/p/b.png",
            "/p/c.AVIF",
            "/p/d.gif",
            "/p/e.heic",
        ] {
            check(&txt, agent, path, false);
        }
        for trap in TRAPS {
            check(&txt, agent, &format!("{trap}x"), false);
        }
    }
}

#[test]
fn everyone_else_is_allowed_except_traps() {
    let txt = robots(&ReservationConfig::default(), None);
    for agent in ["Googlebot", "SomeNewBot", "*"] {
        check(&txt, agent, "/", true);
        check(&txt, agent, "/photos/a.jpg", true);
        for trap in TRAPS {
            check(&txt, agent, trap, false);
            check(&txt, agent, &format!("{trap}deeper/page.html"), false);
        }
    }
}

#[test]
fn agents_sharing_a_scope_share_a_group() {
    let txt = robots(&ReservationConfig::default(), None);
    let group = group_of(&txt, "GPTBot");
    for agent in ["GPTBot", "ClaudeBot", "CCBot", "Bytespider", "AI2Bot"] {
        assert!(
            group.contains(&format!("User-agent: {agent}").as_str()),
            "{agent} in {group:?}"
        );
    }
    assert!(group.contains(&"Disallow: /"));
    assert!(group.contains(&"Content-Usage: train-ai=n"));
    assert!(group.contains(&"Content-Signal: search=yes, ai-train=no"));
    let star = group_of(&txt, "*");
    assert!(star.contains(&"Content-Signal: search=yes, ai-train=no"));
    assert!(star.contains(&"Content-Usage: train-ai=n"));
    assert_eq!(
        txt.matches("User-agent: ").count(),
        9,
        "8 agents and *:\n{txt}"
    );
}

#[test]
fn crawl_delay_goes_to_star_and_images_groups() {
    let cfg = ReservationConfig {
        crawl_delay: Some(5),
        ..Default::default()
    };
    let txt = robots(&cfg, None);
    assert!(group_of(&txt, "*").contains(&"Crawl-delay: 5"));
    assert!(group_of(&txt, "PerplexityBot").contains(&"Crawl-delay: 5"));
    assert!(
        !group_of(&txt, "GPTBot")
            .iter()
            .any(|l| l.starts_with("Crawl-delay"))
    );
}

#[test]
fn site_rules_survive_the_merge() {
    let txt = robots(&ReservationConfig::default(), Some(SITE));

    // `*`: the site's rules, plus the traps.
    check(&txt, "SomeNewBot", "/", true);
    check(&txt, "SomeNewBot", "/admin/users", false);
    check(&txt, "SomeNewBot", "/admin/public/logo.png", true);
    check(&txt, "SomeNewBot", "/cgi-bin/x", false);
    check(&txt, "SomeNewBot", TRAPS[1], false);

    // GPTBot: Lenscap's Disallow: / and the site's own rules, in one group.
    check(&txt, "GPTBot", "/", false);
    check(&txt, "GPTBot", "/photos/a.jpg", false);
    check(&txt, "GPTBot", "/private/x", false);
    check(&txt, "GPTBot", "/press/release.html", true); // the site's explicit choice
    let gpt = group_of(&txt, "GPTBot");
    assert_eq!(
        gpt.iter().filter(|l| l.starts_with("User-agent")).count(),
        1,
        "{gpt:?}"
    );
    assert!(gpt.contains(&"Disallow: /private/") && gpt.contains(&"Disallow: /"));

    // Googlebot and Bingbot keep their group (and never read `*`), with traps added.
    for agent in ["Googlebot", "Bingbot"] {
        check(&txt, agent, "/", true);
        check(&txt, agent, "/drafts/x", false);
        check(&txt, agent, "/admin/users", true);
        check(&txt, agent, TRAPS[0], false);
    }

    // PerplexityBot: images closed by Lenscap, /menu/ closed by the site.
    check(&txt, "PerplexityBot", "/", true);
    check(&txt, "PerplexityBot", "/menu/today", false);
    check(&txt, "PerplexityBot", "/photos/a.jpg", false);

    // OAI-SearchBot used to follow `*`: it keeps `*`'s disallows, not its allows.
    check(&txt, "OAI-SearchBot", "/", true);
    check(&txt, "OAI-SearchBot", "/admin/users", false);
    check(&txt, "OAI-SearchBot", "/admin/public/a.jpg", false);
    check(&txt, "OAI-SearchBot", "/photos/a.jpg", false);

    // Everything else Lenscap closes stays closed.
    for agent in ["ClaudeBot", "CCBot"] {
        check(&txt, agent, "/", false);
        check(&txt, agent, "/press/release.html", false);
    }

    assert!(
        txt.ends_with("\nSitemap: https://redlion.example/sitemap.xml\n"),
        "{txt}"
    );
    assert!(txt.contains("# robots.txt for The Red Lion"));
    assert!(!txt.contains('\r') && !txt.contains('\u{feff}'));
}

#[test]
fn no_agent_is_in_two_groups() {
    let site = "User-agent: GPTBot\nUser-agent: FooBot\nDisallow: /a/\n\n\
                User-agent: gptbot\nDisallow: /b/\n\n\
                User-agent: FooBot\nDisallow: /c/\n\n\
                User-agent: *\nDisallow: /d/\n\nUser-agent: *\nDisallow: /e/\n";
    let txt = robots(&ReservationConfig::default(), Some(site));
    for agent in EVERYTHING
        .iter()
        .chain(&IMAGES)
        .chain(&["FooBot", "*", "AI2Bot"])
    {
        assert_eq!(groups_naming(&txt, agent), 1, "{agent}:\n{txt}");
    }
    // GPTBot's rules from both site groups, FooBot's from both of its.
    check(&txt, "FooBot", "/a/", false);
    check(&txt, "FooBot", "/c/", false);
    check(&txt, "FooBot", "/b/", true);
    let gpt = group_of(&txt, "GPTBot");
    assert!(
        gpt.contains(&"Disallow: /a/") && gpt.contains(&"Disallow: /b/"),
        "{gpt:?}"
    );
    // ClaudeBot shares no group with GPTBot now that GPTBot has rules of its own.
    assert!(!gpt.contains(&"User-agent: ClaudeBot"));
    for path in ["/d/", "/e/"] {
        check(&txt, "SomeNewBot", path, false);
    }
}

#[test]
fn an_empty_disallow_does_not_reopen_the_site() {
    let site = "User-agent: GPTBot\nDisallow:\n\nUser-agent: FooBot\nDisallow:\n\nUser-agent: *\nDisallow:\n";
    let txt = robots(&ReservationConfig::default(), Some(site));
    check(&txt, "GPTBot", "/", false);
    check(&txt, "OAI-SearchBot", "/photos/a.jpg", false);
    check(&txt, "FooBot", "/", true);
    check(&txt, "FooBot", TRAPS[0], false);
}

#[test]
fn site_declarations_give_way_to_ours() {
    let site = "User-agent: *\nContent-Signal: search=yes, ai-train=yes\nContent-Usage: train-ai=y\n\
                Content-Usage: /blog/ train-ai=y\nCrawl-delay: 10\nDisallow:\n";
    let cfg = ReservationConfig {
        crawl_delay: Some(3),
        ..Default::default()
    };
    let txt = robots(&cfg, Some(site));
    let star = group_of(&txt, "*");
    assert!(
        !txt.contains("ai-train=yes") && !txt.contains("Content-Usage: train-ai=y\n"),
        "{txt}"
    );
    assert!(star.contains(&"Content-Usage: /blog/ train-ai=y"));
    assert!(
        star.contains(&"Crawl-delay: 10"),
        "the slower delay wins: {star:?}"
    );
    assert_eq!(
        star.iter().filter(|l| l.starts_with("Crawl-delay")).count(),
        1
    );
}

#[test]
fn rules_outside_groups_stay_harmless() {
    let site =
        "Disallow: /everything-for-nobody/\nHost: redlion.example\nUser-agent: *\nDisallow: /x/\n";
    let txt = robots(&ReservationConfig::default(), Some(site));
    assert!(txt.contains("# ignored, outside any group: Disallow: /everything-for-nobody/"));
    assert!(txt.contains("\nHost: redlion.example\n"));
    check(&txt, "SomeNewBot", "/everything-for-nobody/", true);
    check(&txt, "SomeNewBot", "/x/", false);
}

/// Google's parser reads a product token only up to its first character outside letters, `-`
/// and `_`: `AI2Bot` becomes `AI`, so no robots.txt group can reach it. Enforcement must.
#[test]
fn google_parser_cannot_match_a_token_with_a_digit() {
    let txt = robots(&ReservationConfig::default(), None);
    assert!(
        group_of(&txt, "AI2Bot").contains(&"Disallow: /"),
        "Lenscap still names it"
    );
    let google = |agent: &str, path: &str| {
        robotstxt::DefaultMatcher::default().one_agent_allowed_by_robots(
            &txt,
            agent,
            &format!("https://e.example{path}"),
        )
    };
    assert!(
        google("AI2Bot", "/"),
        "Google's parser lets AI2Bot in despite its group"
    );
    assert!(google("AI2Bot", "/photos/a.jpg"));
    assert!(
        !google("GPTBot", "/"),
        "while a letters-only token is matched"
    );
}

#[test]
fn too_large_a_site_file_is_refused() {
    let mut site = String::from("User-agent: *\n");
    while site.len() < 501 * 1024 {
        site.push_str(&format!("Disallow: /a/rather/long/path/{}/\n", site.len()));
    }
    match Documents::build(
        &ReservationConfig::default(),
        &agents(),
        &traps(),
        Some(&site),
    ) {
        Err(DocumentError::RobotsTooLarge { size, limit }) => {
            assert!(size > limit && limit == 500 * 1024)
        }
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("a robots.txt over 500 KiB was built"),
    }
    // Just under the limit builds, even though Images agents inherit the `*` disallows.
    site.truncate(site.len() / 3);
    let site = &site[..=site.rfind('\n').unwrap()];
    assert!(
        Documents::build(
            &ReservationConfig::default(),
            &agents(),
            &traps(),
            Some(site)
        )
        .is_ok()
    );
}

#[test]
fn nothing_reserved_still_disallows_traps() {
    let cfg = ReservationConfig {
        reserve_training: false,
        content_signal: false,
        ..Default::default()
    };
    let docs = Documents::build(&cfg, &[], &traps(), None).unwrap();
    let txt = std::str::from_utf8(docs.body("/robots.txt").unwrap()).unwrap();
    check(txt, "SomeNewBot", "/", true);
    check(txt, "SomeNewBot", TRAPS[0], false);
    assert!(!txt.contains("Content-"), "{txt}");
}

fn site_line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "GPTBot",
            "gptbot",
            "FooBot",
            "*",
            "PerplexityBot",
            "Googlebot"
        ])
        .prop_map(|a| format!("User-agent: {a}")),
        prop::sample::select(vec!["/", "/a/", "/b", "/*.jpg$", "", "/admin/"])
            .prop_map(|p| format!("Disallow: {p}")),
        prop::sample::select(vec!["/", "/a/", "/press/"]).prop_map(|p| format!("Allow: {p}")),
        Just("# a comment".to_owned()),
        Just(String::new()),
        Just("Crawl-delay: 2".to_owned()),
        Just("Sitemap: https://e.example/s.xml".to_owned()),
        Just("Clean-param: ref /".to_owned()),
        Just("garbage without colon".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the site wrote: one group per agent, Lenscap's scopes hold, traps stay closed.
    #[test]
    fn merge_invariants(lines in prop::collection::vec(site_line(), 0..24), crlf in any::<bool>()) {
        let site = lines.join(if crlf { "\r\n" } else { "\n" });
        let txt = robots(&ReservationConfig::default(), Some(&site));
        for agent in ["GPTBot", "ClaudeBot", "PerplexityBot", "OAI-SearchBot", "FooBot", "Googlebot", "*"] {
            prop_assert!(groups_naming(&txt, agent) <= 1, "{} twice:\n{}", agent, txt);
        }
        prop_assert_eq!(groups_naming(&txt, "*"), 1);
        // Site Allow lines may open paths for an agent they name, but never the photos of
        // an Images agent the site does not name, nor the traps for anyone.
        check(&txt, "ClaudeBot", "/", false);
        check(&txt, "OAI-SearchBot", "/photos/a.jpg", false);
        for agent in ["GPTBot", "FooBot", "Googlebot", "SomeNewBot", "PerplexityBot"] {
            check(&txt, agent, "/.well-known/lenscap/x", false);
        }
    }
}
