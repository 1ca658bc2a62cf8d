//! The served robots.txt against the whole catalog, read by two real parsers: texting_robots
//! and `robotstxt` (the port of Google's parser).

use http::{HeaderMap, Method};
use lenscap::Policy;
use lenscap::verdict::Action;

fn robots_txt(policy: &Policy) -> String {
    let response = policy
        .documents()
        .answer(&Method::GET, "/robots.txt", &HeaderMap::new())
        .expect("robots.txt is served by default");
    String::from_utf8(response.into_body().to_vec()).unwrap()
}

fn google_allows(text: &str, agent: &str, path: &str) -> bool {
    let mut matcher = robotstxt::DefaultMatcher::default();
    matcher.one_agent_allowed_by_robots(text, agent, &format!("https://pub.example{path}"))
}

#[test]
fn every_agent_kept_off_images_is_disallowed_from_images_by_both_parsers() {
    let policy = Policy::embedded().unwrap();
    let text = robots_txt(&policy);
    assert!(
        text.len() < 500 * 1024,
        "robots.txt is {} bytes",
        text.len()
    );
    let mut checked = 0;
    for agent in policy.catalog().agents() {
        let action = policy.category_action(agent.category());
        for token in agent.robots_tokens() {
            let robot = texting_robots::Robot::new(token, text.as_bytes()).unwrap();
            let google = google_allows(&text, token, "/photos/IMG_0001.jpg");
            if action.images == Action::Block {
                assert!(
                    !robot.allowed("/photos/IMG_0001.jpg"),
                    "texting_robots lets {token} fetch images"
                );
                assert!(
                    !robot.allowed("/photos/IMG_0001.JPG"),
                    "texting_robots lets {token} fetch JPG"
                );
                assert!(!google, "Google's parser lets {token} fetch images");
                checked += 1;
            }
            if action.pages == Action::Block {
                assert!(!robot.allowed("/"), "{token} may read pages");
                assert!(
                    !google_allows(&text, token, "/"),
                    "{token} may read pages (Google's parser)"
                );
            } else {
                assert!(robot.allowed("/"), "{token} should read pages");
            }
        }
    }
    assert!(checked > 150, "only {checked} agents checked");
    // Search engines stay welcome.
    assert!(google_allows(&text, "Googlebot", "/photos/IMG_0001.jpg"));
    assert!(
        texting_robots::Robot::new("Bingbot", text.as_bytes())
            .unwrap()
            .allowed("/photos/IMG_0001.jpg")
    );
}

/// Agents that robots.txt cannot reach: names with digits, dots or spaces are not RFC 9309
/// product tokens, and Google's parser reads only the leading letters of a User-agent line
/// (`img2dataset` as `img`). They are caught by enforcement instead; this test lists them.
#[test]
fn agents_robots_txt_cannot_name_are_enforced_instead() {
    let policy = Policy::embedded().unwrap();
    let unreachable: Vec<&str> = policy
        .catalog()
        .agents()
        .iter()
        .filter(|a| a.robots_tokens().is_empty())
        .map(|a| a.name())
        .collect();
    for name in ["AI2Bot", "img2dataset"] {
        assert!(
            unreachable.contains(&name),
            "{name} should be listed as unreachable"
        );
    }
    for name in &unreachable {
        let agent = policy.catalog().get(name).unwrap();
        // Each of them is still classified and, for the AI categories, kept off images.
        if agent.category().is_ai() {
            assert_eq!(
                policy.category_action(agent.category()).images,
                Action::Block,
                "{name}"
            );
        }
    }
    // Google's parser really cannot match such a group: it lets AI2Bot in despite it.
    let text = "User-agent: AI2Bot\nDisallow: /\n";
    assert!(google_allows(text, "AI2Bot", "/photos/a.jpg"));
}
