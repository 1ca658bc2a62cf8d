//! The way-through page through the real server (`lenscap serve`, static mode, loopback): a
//! person out of page views gets the page, waits, and is sent back to their page with a pass
//! that the page's links carry on.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use lenscap::server::{Overrides, ServeOptions, Server};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

fn site() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lenscap-way-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("p")).unwrap();
    for n in 1..=6 {
        std::fs::write(
            root.join(format!("a{n}.html")),
            format!(
                "<!doctype html><html><head><title>Album {n}</title></head><body>\
                 <img src=\"/p/{n}.jpg\"><a href=\"/a{}.html\">next</a></body></html>",
                n + 1
            ),
        )
        .unwrap();
        std::fs::write(root.join("p").join(format!("{n}.jpg")), b"\xFF\xD8\xFF\xD9").unwrap();
    }
    std::fs::write(
        dir.join("lenscap.toml"),
        "[limits]\npages = { rate = \"2/day\", burst = 2 }\npass_wait = \"3s\"\n",
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_out_of_page_views_gets_through_the_real_server() {
    let dir = site();
    let server = Server::bind(ServeOptions {
        config: Some(dir.join("lenscap.toml")),
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some(None),
            root: Some(dir.join("root")),
            ..Overrides::default()
        },
    })
    .await
    .expect("server starts");
    let addr = server.local_addr();
    let mut jar: Vec<String> = Vec::new();
    let page_headers = |jar: &Vec<String>| {
        let mut h = vec![
            ("user-agent", CHROME.to_owned()),
            (
                "accept",
                "text/html,application/xhtml+xml,*/*;q=0.8".to_owned(),
            ),
            ("accept-language", "en-GB,en;q=0.9".to_owned()),
            ("accept-encoding", "gzip, deflate, br".to_owned()),
        ];
        if !jar.is_empty() {
            h.push(("cookie", jar.join("; ")));
        }
        h
    };
    let send = |path: String, jar: &Vec<String>| {
        let headers = page_headers(jar);
        async move {
            let borrowed: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            common::get(addr, &path, &borrowed).await
        }
    };
    let keep = |answer: &common::Answer, jar: &mut Vec<String>| {
        for set in answer.headers.get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            jar.retain(|c| !c.starts_with(&format!("{name}=")));
            jar.push(pair);
        }
    };

    // A newcomer's first page, then the two of the budget, then the way-through page.
    let mut way = None;
    for n in 1..=4 {
        let answer = send(format!("/a{n}.html"), &jar).await;
        keep(&answer, &mut jar);
        if answer.status != StatusCode::OK {
            way = Some(answer);
            break;
        }
    }
    let way = way.expect("the small budget runs out");
    assert_eq!(way.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(way.headers["cache-control"], "no-store");
    assert_eq!(way.headers["retry-after"], "3");
    let body = String::from_utf8_lossy(&way.body).into_owned();
    let at = body.find(";url=").expect("a refresh") + 5;
    let pass_url = body[at..at + body[at..].find('"').unwrap()].replace("&amp;", "&");

    // The wait is long enough that a loaded machine still sends this within it.
    let early = send(pass_url.clone(), &jar).await;
    assert_eq!(early.status, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let accepted = send(pass_url, &jar).await;
    assert_eq!(
        accepted.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        accepted.body
    );
    keep(&accepted, &mut jar);
    let location = accepted.headers["location"].to_str().unwrap().to_owned();
    assert!(location.contains("?lc-pass="), "{location}");
    let back = send(location, &jar).await;
    assert_eq!(back.status, StatusCode::OK);
    let page = String::from_utf8_lossy(&back.body);
    assert!(page.contains("next</a>"), "{page}");
    assert!(
        page.contains(".html?lc-pass="),
        "the next link carries the pass: {page}"
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
