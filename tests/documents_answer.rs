//! What a client sees when it asks Lenscap for one of its documents.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use lenscap::documents::{Disallow, DocumentError, Documents, ReservationConfig, RobotsAgent};

fn docs(cfg: &ReservationConfig) -> Documents {
    let agents = [RobotsAgent::new("GPTBot", Disallow::Everything)];
    Documents::build(cfg, &agents, &["/.trap/".to_owned()], None).expect("documents build")
}

fn get(docs: &Documents, path: &str) -> http::Response<bytes::Bytes> {
    docs.answer(&Method::GET, path, &HeaderMap::new())
        .unwrap_or_else(|| panic!("{path} is answered"))
}

#[test]
fn content_types_and_common_headers() {
    let docs = docs(&ReservationConfig::default());
    for (path, content_type) in [
        ("/robots.txt", "text/plain; charset=utf-8"),
        ("/ai.txt", "text/plain; charset=utf-8"),
        ("/.well-known/tdmrep.json", "application/json"),
        ("/ai-policy", "text/html; charset=utf-8"),
    ] {
        let res = get(&docs, path);
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let h = res.headers();
        assert_eq!(h[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=3600", "{path}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(
            h[header::CONTENT_LENGTH],
            res.body().len().to_string().as_str(),
            "{path}"
        );
        let etag = h[header::ETAG].to_str().unwrap();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "strong ETag: {etag}"
        );
        assert!(!res.body().is_empty());
    }
}

#[test]
fn other_paths_are_not_answered() {
    let docs = docs(&ReservationConfig::default());
    for path in [
        "/",
        "/robots.txt/",
        "/ROBOTS.TXT",
        "/robots.txt.bak",
        "/ai-policy/",
        "/.well-known/",
        "/.trap/",
    ] {
        assert!(
            docs.answer(&Method::GET, path, &HeaderMap::new()).is_none(),
            "{path}"
        );
    }
}

#[test]
fn tdmrep_is_an_array_with_a_numeric_reservation() {
    let cfg = ReservationConfig {
        policy_url: Some("https://redlion.example/licensing".into()),
        ..Default::default()
    };
    let res = get(&docs(&cfg), "/.well-known/tdmrep.json");
    let json: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    let rules = json.as_array().expect("a JSON array");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["location"], "/*");
    assert!(
        rules[0]["tdm-reservation"].is_u64(),
        "a number, not a string"
    );
    assert_eq!(rules[0]["tdm-reservation"], 1);
    assert_eq!(rules[0]["tdm-policy"], "https://redlion.example/licensing");
}

#[test]
fn ai_txt_disallows_media() {
    let cfg = ReservationConfig {
        site_name: Some("The Red Lion".into()),
        contact: Some("landlord@redlion.example".into()),
        ..Default::default()
    };
    let res = get(&docs(&cfg), "/ai.txt");
    let txt = std::str::from_utf8(res.body()).unwrap();
    assert!(txt.starts_with("# ai.txt for The Red Lion\n"));
    assert!(txt.contains("# Contact: landlord@redlion.example\n"));
    assert!(txt.contains("\nUser-Agent: *\n"));
    for ext in ["jpg", "JPG", "jpeg", "png", "webp", "avif", "gif"] {
        assert!(txt.contains(&format!("\nDisallow: *.{ext}\n")), "{ext}");
    }
}

#[test]
fn etag_and_if_none_match() {
    let docs = docs(&ReservationConfig::default());
    let etag = get(&docs, "/robots.txt").headers()[header::ETAG].clone();

    for value in [
        etag.to_str().unwrap().to_owned(),
        format!("W/{}", etag.to_str().unwrap()),
        "\"nope\", *".into(),
    ] {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&value).unwrap(),
        );
        let res = docs.answer(&Method::GET, "/robots.txt", &h).unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{value}");
        assert!(res.body().is_empty());
        assert_eq!(res.headers()[header::ETAG], etag);
        assert_eq!(res.headers()[header::CACHE_CONTROL], "public, max-age=3600");
    }

    let mut h = HeaderMap::new();
    h.insert(
        header::IF_NONE_MATCH,
        HeaderValue::from_static("\"0000000000000000\""),
    );
    assert_eq!(
        docs.answer(&Method::GET, "/robots.txt", &h)
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // The ETag follows the bytes: same config, same tag; another config, another tag.
    let again = self::docs(&ReservationConfig::default());
    assert_eq!(get(&again, "/robots.txt").headers()[header::ETAG], etag);
    let other = self::docs(&ReservationConfig {
        reserve_search: true,
        ..Default::default()
    });
    assert_ne!(get(&other, "/robots.txt").headers()[header::ETAG], etag);
}

#[test]
fn head_has_the_headers_and_no_body() {
    let docs = docs(&ReservationConfig::default());
    for path in docs.paths().map(str::to_owned).collect::<Vec<_>>() {
        let full = get(&docs, &path);
        let head = docs
            .answer(&Method::HEAD, &path, &HeaderMap::new())
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert!(head.body().is_empty());
        assert_eq!(head.headers(), full.headers(), "{path}");
        assert_eq!(
            head.headers()[header::CONTENT_LENGTH],
            full.body().len().to_string().as_str()
        );
    }
}

#[test]
fn other_methods_get_405_with_allow() {
    let docs = docs(&ReservationConfig::default());
    for method in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
    ] {
        let res = docs
            .answer(&method, "/robots.txt", &HeaderMap::new())
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(res.headers()[header::ALLOW], "GET, HEAD");
        assert!(res.headers().get(header::ETAG).is_none());
    }
}

#[test]
fn policy_page_escapes_hostile_config() {
    // URLs with '<', '>' or '"' are refused by validation; escaping covers the rest.
    let cfg = ReservationConfig {
        site_name: Some("<img src=x onerror=alert(1)> & \"Friends\"".into()),
        contact: Some("https://redlion.example/contact?a=1&b='2'".into()),
        policy_url: Some("https://redlion.example/terms?x=1&y=2".into()),
        policy_note: Some("<script>steal()</script>".into()),
        policy_path: "/no-ai".into(),
        ..Default::default()
    };
    let docs = docs(&cfg);
    assert!(
        docs.answer(&Method::GET, "/ai-policy", &HeaderMap::new())
            .is_none()
    );
    let res = get(&docs, "/no-ai");
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let page = std::str::from_utf8(res.body()).unwrap();
    assert!(
        !page.contains("<img") && !page.contains("<script") && !page.contains("'2'"),
        "{page}"
    );
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;Friends&quot;"));
    assert!(page.contains("href=\"https://redlion.example/contact?a=1&amp;b=&#39;2&#39;\""));
    assert!(page.contains("content=\"https://redlion.example/terms?x=1&amp;y=2\""));
    assert!(page.contains("&lt;script&gt;steal()&lt;/script&gt;"));
}

#[test]
fn policy_page_says_what_why_how_and_who() {
    let cfg = ReservationConfig {
        site_name: Some("The Red Lion".into()),
        contact: Some("landlord@redlion.example".into()),
        ..Default::default()
    };
    let page = String::from_utf8(get(&docs(&cfg), "/ai-policy").body().to_vec()).unwrap();
    for needle in [
        "AI training",
        "Face search",
        "Datasets",
        "Why",
        "/robots.txt",
        "/.well-known/tdmrep.json",
        "X-Robots-Tag",
        "plus:DataMining",
        "mailto:landlord@redlion.example",
        "The Red Lion",
        "<style>",
    ] {
        assert!(page.contains(needle), "missing {needle}");
    }
    assert!(!page.contains("<script"));
}

#[test]
fn an_empty_reservation_table_is_a_complete_policy() {
    #[derive(Debug, serde::Deserialize)]
    struct File {
        reservation: ReservationConfig,
    }
    let file: File = toml::from_str("[reservation]\n").unwrap();
    assert_eq!(file.reservation, ReservationConfig::default());
    assert!(Documents::build(&file.reservation, &[], &[], None).is_ok());

    let err = toml::from_str::<File>("[reservation]\nreserve_trainig = false\n").unwrap_err();
    assert!(err.to_string().contains("reserve_trainig"), "{err}");
}

#[test]
fn invalid_config_is_reported_by_key() {
    let cfg = ReservationConfig {
        policy_url: Some("ftp://x".into()),
        ..Default::default()
    };
    let err = Documents::build(&cfg, &[], &[], None).unwrap_err();
    assert!(matches!(&err, DocumentError::Config(errors) if errors[0].key() == "policy_url"));
    assert!(
        err.to_string().starts_with("reservation.policy_url: "),
        "{err}"
    );
}
