//! Web Bot Auth through the real layer: a correctly signed request from a listed directory is
//! a verified agent; every bad signature is refused with its own reason; a User-Agent naming
//! an agent known to sign, unsigned, is a spoofer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use lenscap::signals::web_bot_auth::{Signer, Signing};
use lenscap::{LenscapLayer, PeerAddr, Policy, Verdict};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const DIRECTORY: &str = "https://agent.example";
const AGENT_UA: &str =
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ChatGPT Agent)";
const HOST: &str = "gallery.example";

/// The inner service echoes the verdict: action, agent and reasons.
async fn echo(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = match request.extensions().get::<Verdict>() {
        Some(v) => format!(
            "{}|{}|{}",
            v.action,
            v.agent.as_deref().unwrap_or("-"),
            v.reasons
        ),
        None => "none".into(),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Verification on, `https://agent.example` vouching for ChatGPT Agent, agents allowed.
fn policy(mode: &str, extra: &str) -> Policy {
    Policy::from_toml_str(
        &format!(
            "mode = \"{mode}\"\n[actions]\nai-agent = \"allow\"\n[web_bot_auth]\nenabled = true\n\
             directories = {{ \"{DIRECTORY}\" = \"ChatGPT Agent\" }}\n{extra}"
        ),
        None,
    )
    .unwrap()
}

/// A policy holding `signer`'s key for the listed directory.
fn policy_trusting(mode: &str, signer: &Signer) -> Policy {
    let policy = policy(mode, "");
    policy
        .agent_keys()
        .set(DIRECTORY, vec![signer.key().clone()]);
    policy
}

fn signing(nonce: &str) -> Signing<'_> {
    let now = now();
    Signing {
        authority: HOST,
        created: now - 5,
        expires: now + 300,
        nonce: Some(nonce),
        covered: &[],
    }
}

fn request(headers: &[(&str, String)]) -> Request<()> {
    let mut builder = Request::get("/photos/1.jpg")
        .header("host", HOST)
        .header("user-agent", AGENT_UA)
        .header("accept", "*/*");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let mut request = builder.body(()).unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr("203.0.113.40:5000".parse::<SocketAddr>().unwrap()));
    request
}

fn signed(signer: &Signer, signing: &Signing<'_>) -> Request<()> {
    request(&signer.sign(signing).unwrap())
}

async fn send(policy: &Policy, request: Request<()>) -> (StatusCode, String) {
    let service = ServiceBuilder::new()
        .layer(LenscapLayer::new(policy.clone()))
        .service(service_fn(echo));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Refused under enforcement, and (report-only) carrying `reason` and `spoofed-agent`.
async fn assert_refused_with(signer: &Signer, make: impl Fn() -> Request<()>, reason: &str) {
    let enforcing = policy_trusting("enforce", signer);
    let (status, _) = send(&enforcing, make()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reason}");
    let reporting = policy_trusting("report-only", signer);
    let (status, body) = send(&reporting, make()).await;
    assert_eq!(status, StatusCode::OK);
    let reasons: Vec<&str> = body.rsplit('|').next().unwrap().split(',').collect();
    assert!(reasons.contains(&reason), "{reason} not in {body}");
    assert!(reasons.contains(&"spoofed-agent"), "{body}");
    assert!(!reasons.contains(&"verified-agent"), "{body}");
}

#[tokio::test]
async fn a_signed_request_from_a_listed_directory_is_a_verified_agent() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let policy = policy_trusting("enforce", &signer);
    let (status, body) = send(&policy, signed(&signer, &signing("n-1"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("allow|ChatGPT Agent|"), "{body}");
    assert!(
        body.ends_with("known-agent,verified-agent,signed-agent"),
        "{body}"
    );
}

#[tokio::test]
async fn a_signature_makes_the_directorys_agent_whatever_the_user_agent_says() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let policy = policy_trusting("enforce", &signer);
    let mut request = signed(&signer, &signing("n-ua"));
    request
        .headers_mut()
        .insert("user-agent", "python-requests/2.32".parse().unwrap());
    let (status, body) = send(&policy, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("allow|ChatGPT Agent|"), "{body}");
}

#[tokio::test]
async fn an_agent_known_to_sign_without_a_signature_is_a_spoofer() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    assert_refused_with(&signer, || request(&[]), "unsigned-agent").await;
}

#[tokio::test]
async fn an_expired_signature_is_refused() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let now = now();
    let make = || {
        signed(
            &signer,
            &Signing {
                created: now - 900,
                expires: now - 600,
                ..signing("n-old")
            },
        )
    };
    assert_refused_with(&signer, make, "signature-expired").await;
    let future = || {
        signed(
            &signer,
            &Signing {
                created: now + 900,
                expires: now + 1200,
                ..signing("n-future")
            },
        )
    };
    assert_refused_with(&signer, future, "signature-expired").await;
}

#[tokio::test]
async fn a_signature_within_the_clock_skew_is_accepted() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let policy = policy_trusting("enforce", &signer);
    let now = now();
    let slightly_late = Signing {
        created: now - 120,
        expires: now - 30,
        ..signing("n-skew")
    };
    let (status, body) = send(&policy, signed(&signer, &slightly_late)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_key_the_directory_does_not_hold_is_refused() {
    let listed = Signer::generate(Some(DIRECTORY)).unwrap();
    let other = Signer::generate(Some(DIRECTORY)).unwrap();
    assert_refused_with(
        &listed,
        || signed(&other, &signing("n-wrong")),
        "signature-unknown-key",
    )
    .await;
}

#[tokio::test]
async fn a_signature_over_another_request_does_not_verify() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let make = || {
        signed(
            &signer,
            &Signing {
                authority: "another-site.example",
                ..signing("n-elsewhere")
            },
        )
    };
    assert_refused_with(&signer, make, "signature-invalid").await;
}

#[tokio::test]
async fn a_replayed_signature_is_refused() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let policy = policy_trusting("enforce", &signer);
    let headers = signer.sign(&signing("n-once")).unwrap();
    // `explain` reads the verdict without using the nonce up.
    assert!(policy.signature_of(&request(&headers)).unwrap().is_ok());
    let (first, _) = send(&policy, request(&headers)).await;
    assert_eq!(first, StatusCode::OK);
    let (second, _) = send(&policy, request(&headers)).await;
    assert_eq!(second, StatusCode::FORBIDDEN);
    // `explain` still shows the signature itself as valid: replay is the layer's check.
    assert!(policy.signature_of(&request(&headers)).unwrap().is_ok());

    // The same in report-only, where the reason shows.
    let reporting = policy_trusting("report-only", &signer);
    let headers = signer.sign(&signing("n-twice")).unwrap();
    send(&reporting, request(&headers)).await;
    let (_, body) = send(&reporting, request(&headers)).await;
    assert!(body.contains("signature-replayed"), "{body}");
    assert!(body.contains("spoofed-agent"), "{body}");
}

#[tokio::test]
async fn malformed_signature_headers_are_refused_and_named() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let good = signer.sign(&signing("n-m")).unwrap();
    let with = |name: &str, value: &str| -> Vec<(&'static str, String)> {
        good.iter()
            .map(|(n, v)| {
                (
                    *n,
                    if *n == name {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    let input = good.iter().find(|(n, _)| *n == "signature-input").unwrap();
    let cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("not a dictionary", with("signature-input", "((((")),
        (
            "no web-bot-auth tag",
            with("signature-input", &input.1.replace("web-bot-auth", "other")),
        ),
        ("signature not bytes", with("signature", "sig1=\"text\"")),
        ("signature without input", {
            good.iter()
                .filter(|(n, _)| *n != "signature-input")
                .cloned()
                .collect()
        }),
        (
            "no @authority",
            with("signature-input", &input.1.replace("\"@authority\" ", "")),
        ),
        (
            "signature-agent not covered",
            with(
                "signature-input",
                &input.1.replace(" \"signature-agent\"", ""),
            ),
        ),
        (
            "no expires",
            with(
                "signature-input",
                &input
                    .1
                    .split(';')
                    .filter(|p| !p.starts_with("expires="))
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
        ),
    ];
    for (case, headers) in cases {
        let policy = policy_trusting("report-only", &signer);
        let (_, body) = send(&policy, request(&headers)).await;
        assert!(body.contains("signature-malformed"), "{case}: {body}");
        assert!(body.contains("spoofed-agent"), "{case}: {body}");
        let policy = policy_trusting("enforce", &signer);
        let error = policy
            .signature_of(&request(&headers))
            .unwrap()
            .unwrap_err();
        assert!(
            error.to_string().starts_with("malformed signature: "),
            "{case}: {error}"
        );
        assert_eq!(
            send(&policy, request(&headers)).await.0,
            StatusCode::FORBIDDEN,
            "{case}"
        );
    }
}

#[tokio::test]
async fn an_unlisted_directory_is_refused_unless_unlisted_ones_are_allowed() {
    let stranger = Signer::generate(Some("https://stranger.example")).unwrap();
    let closed = policy("report-only", "");
    closed
        .agent_keys()
        .set("https://stranger.example", vec![stranger.key().clone()]);
    let (_, body) = send(&closed, signed(&stranger, &signing("n-u1"))).await;
    assert!(body.contains("signature-unlisted"), "{body}");
    assert!(body.contains("spoofed-agent"), "{body}");

    let open = policy("report-only", "allow_unlisted = true\n");
    open.agent_keys()
        .set("https://stranger.example", vec![stranger.key().clone()]);
    let mut request = signed(&stranger, &signing("n-u2"));
    request
        .headers_mut()
        .insert("user-agent", "StrangerBot/1.0".parse().unwrap());
    let (_, body) = send(&open, request).await;
    assert!(body.contains("signed-agent"), "{body}");
    assert!(!body.contains("verified-agent"), "{body}");
}

#[tokio::test]
async fn an_unlisted_directory_waits_to_be_fetched_off_the_request_path() {
    let stranger = Signer::generate(Some("https://stranger.example")).unwrap();
    let open = policy("report-only", "allow_unlisted = true\n");
    let (_, body) = send(&open, signed(&stranger, &signing("n-w"))).await;
    assert!(body.contains("signature-unknown-key"), "{body}");
    assert_eq!(
        open.agent_keys().take_wanted(),
        ["https://stranger.example"]
    );
    assert!(open.agent_keys().take_wanted().is_empty());
}

#[tokio::test]
async fn pinned_keys_need_no_directory_fetch() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let x = signer.key().to_jwk()["x"].as_str().unwrap().to_owned();
    let policy = policy(
        "enforce",
        &format!("pinned = {{ \"{DIRECTORY}\" = [\"{x}\"] }}\n"),
    );
    let (status, body) = send(&policy, signed(&signer, &signing("n-p"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("verified-agent"), "{body}");
}

#[test]
fn bad_config_names_the_key() {
    let err = |text: &str| Policy::from_toml_str(text, None).unwrap_err().to_string();
    let e = err(
        "[web_bot_auth]\nenabled = true\ndirectories = { \"https://a.example\" = \"NoSuchAgent\" }\n",
    );
    assert!(e.contains("line 3") && e.contains("NoSuchAgent"), "{e}");
    let e = err(
        "[web_bot_auth]\nenabled = true\ndirectories = { \"http://a.example\" = \"ChatGPT Agent\" }\n",
    );
    assert!(e.contains("plain http"), "{e}");
    let e = err(
        "[web_bot_auth]\nenabled = true\nallow_insecure_loopback = true\ndirectories = { \"http://a.example\" = \"ChatGPT Agent\" }\n",
    );
    assert!(e.contains("plain http"), "{e}");
    Policy::from_toml_str("[web_bot_auth]\nenabled = true\nallow_insecure_loopback = true\ndirectories = { \"http://127.0.0.1:9\" = \"ChatGPT Agent\" }\n", None).unwrap();
    let e =
        err("[web_bot_auth]\nenabled = true\npinned = { \"https://a.example\" = [\"AAAA\"] }\n");
    assert!(e.contains("pinned") && e.contains("32"), "{e}");
    let e = err("[web_bot_auth]\nclock_skew = \"soon\"\nenabled = true\n");
    assert!(e.contains("web_bot_auth.clock_skew"), "{e}");
}

#[tokio::test]
async fn verification_off_ignores_signatures_and_signing_claims() {
    let policy = Policy::from_toml_str("[actions]\nai-agent = \"allow\"\n", None).unwrap();
    let (status, body) = send(&policy, request(&[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.contains("unsigned-agent"), "{body}");
}

// === through the real server, the directory fetched from loopback ===

mod server {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use http::{Request, StatusCode};
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use lenscap::server::{Overrides, ServeOptions, Server};
    use lenscap::signals::web_bot_auth::{DIRECTORY_MEDIA_TYPE, DIRECTORY_PATH, Signer, Signing};

    use super::{AGENT_UA, now};

    const GUARD: Duration = Duration::from_secs(20);

    /// A signer whose `Signature-Agent` is a loopback directory serving its key, and the
    /// number of times the directory was fetched.
    async fn signer_with_directory() -> (Signer, String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let signer = Signer::generate(Some(&origin)).unwrap();
        let jwks = signer.directory();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().route(
            DIRECTORY_PATH,
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let jwks = jwks.clone();
                async move {
                    (
                        [
                            ("content-type", DIRECTORY_MEDIA_TYPE),
                            ("cache-control", "max-age=600"),
                        ],
                        jwks,
                    )
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (signer, origin, hits)
    }

    async fn get(addr: SocketAddr, headers: &[(&'static str, String)]) -> StatusCode {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut builder = Request::get(format!("http://{addr}/photos/a.jpg"))
            .header("user-agent", AGENT_UA)
            .header("accept", "image/*");
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder.body(Empty::new()).unwrap();
        let response = tokio::time::timeout(GUARD, client.request(request))
            .await
            .expect("guard")
            .expect("response");
        let status = response.status();
        let _ = response.into_body().collect().await;
        status
    }

    fn signed(signer: &Signer, authority: &str, nonce: &str) -> Vec<(&'static str, String)> {
        let now = now();
        signer
            .sign(&Signing {
                authority,
                created: now,
                expires: now + 60,
                nonce: Some(nonce),
                covered: &[],
            })
            .unwrap()
    }

    #[tokio::test]
    async fn the_server_fetches_the_directory_and_verifies_signed_agents() {
        let dir = std::env::temp_dir().join(format!("lenscap-wba-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/photos")).unwrap();
        std::fs::write(dir.join("root/photos/a.jpg"), b"\xFF\xD8\xFF\xE0jpeg").unwrap();
        let (signer, origin, hits) = signer_with_directory().await;
        let config = format!(
            "[server]\nroot = {:?}\n[limits]\nenabled = false\n[actions]\nai-agent = \"allow\"\n\
             [web_bot_auth]\nenabled = true\nallow_insecure_loopback = true\n\
             directories = {{ \"{origin}\" = \"ChatGPT Agent\" }}\n",
            dir.join("root")
        );
        let path = dir.join("lenscap.toml");
        std::fs::write(&path, config).unwrap();
        let server = Server::bind(ServeOptions {
            config: Some(path),
            overrides: Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                ..Overrides::default()
            },
        })
        .await
        .unwrap();
        let addr = server.local_addr();
        let authority = addr.to_string();

        // The fetch runs off the request path: poll until the keys are in.
        let deadline = Instant::now() + GUARD;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let status = get(addr, &signed(&signer, &authority, &format!("n-{attempt}"))).await;
            if status == StatusCode::OK {
                break;
            }
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(Instant::now() < deadline, "the directory was never fetched");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Verified again and again from the cached keys (max-age=600): fetched once.
        for n in 0..3 {
            let status = get(addr, &signed(&signer, &authority, &format!("again-{n}"))).await;
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // A replay, an unsigned claim and a stranger's key are refused.
        let once = signed(&signer, &authority, "replay-me");
        assert_eq!(get(addr, &once).await, StatusCode::OK);
        assert_eq!(get(addr, &once).await, StatusCode::FORBIDDEN);
        assert_eq!(get(addr, &[]).await, StatusCode::FORBIDDEN);
        let stranger = Signer::generate(Some(&origin)).unwrap();
        assert_eq!(
            get(addr, &signed(&stranger, &authority, "s-1")).await,
            StatusCode::FORBIDDEN
        );
        server.stop_handle().stop();
    }

    fn free_loopback_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn the_simulators_signed_and_paying_crawlers_are_verified_and_the_payer_served() {
        use lenscap::simulate::{ProfileKind, Scenario, Target};

        let (agent_port, payer_port) = (free_loopback_port(), free_loopback_port());
        let dir = std::env::temp_dir().join(format!("lenscap-wba-sim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lenscap.toml");
        std::fs::write(
            &path,
            format!(
                "[reservation]\nlicense_url = \"https://gallery.example/license.xml\"\n\
                 [licensing]\nprice = \"USD 0.01\"\n\
                 [actions]\nai-training = \"license\"\nai-agent = \"allow\"\n\
                 [web_bot_auth]\nenabled = true\nallow_insecure_loopback = true\n\
                 directories = {{ \"http://127.0.0.1:{agent_port}\" = \"ChatGPT Agent\", \
                 \"http://127.0.0.1:{payer_port}\" = \"GPTBot\" }}\n"
            ),
        )
        .unwrap();
        let server = Server::bind(ServeOptions {
            config: Some(path),
            overrides: Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                admin: Some(None),
                root: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gallery").into()),
                ..Overrides::default()
            },
        })
        .await
        .unwrap();
        let target = Target::resolve(&format!("http://{}/", server.local_addr()), false)
            .await
            .unwrap();
        let mut scenario = Scenario::builtin("default").unwrap().unwrap();
        // The bound spans the wait for the server's second directory fetch (its first, at
        // start, found the directories closed; the retry comes 5 s later) and the sessions
        // after it, which end on their own after five pages each.
        scenario.duration = Duration::from_secs(30);
        scenario.max_requests = 400;
        scenario.forward_addresses = false;
        scenario.profiles = [
            (ProfileKind::SignedAgent, agent_port),
            (ProfileKind::PayingCrawler, payer_port),
        ]
        .into_iter()
        .map(|(kind, port)| {
            let mut settings = kind.defaults();
            settings.key_directory = Some(SocketAddr::from(([127, 0, 0, 1], port)));
            // The server fetches the directory once it is up: early refusals must not end
            // the session.
            settings.give_up_after = 0;
            settings.pages = 5;
            settings
        })
        .collect();
        let report = lenscap::simulate::run(&target, &scenario, None).await;
        server.shutdown().await;
        assert!(report.notes.is_empty(), "{:?}", report.notes);
        for kind in [ProfileKind::SignedAgent, ProfileKind::PayingCrawler] {
            let profile = report.profiles.iter().find(|p| p.profile == kind).unwrap();
            assert!(profile.images_obtained > 0, "{kind}:\n{}", report.table());
        }
        // GPTBot is under "license": the photos it got were paid for.
        let payer = report
            .profiles
            .iter()
            .find(|p| p.profile == ProfileKind::PayingCrawler)
            .unwrap();
        assert!(payer.statuses.contains_key("200"), "{:?}", payer.statuses);
    }
}

#[test]
fn explain_shows_the_signature_verdict() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let x = signer.key().to_jwk()["x"].as_str().unwrap().to_owned();
    let dir = std::env::temp_dir().join(format!("lenscap-wba-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("policy.toml");
    std::fs::write(
        &config,
        format!(
            "[web_bot_auth]\nenabled = true\ndirectories = {{ \"{DIRECTORY}\" = \"ChatGPT Agent\" }}\n\
             pinned = {{ \"{DIRECTORY}\" = [\"{x}\"] }}\n"
        ),
    )
    .unwrap();
    let explain = |signing: &Signing<'_>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lenscap"));
        command
            .arg("explain")
            .arg("--config")
            .arg(&config)
            .args(["--ua", AGENT_UA, "--host", HOST, "--path", "/p/1.jpg"]);
        for (name, value) in signer.sign(signing).unwrap() {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        let output = command.output().expect("the lenscap binary runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let valid = explain(&signing("e-1"));
    assert!(
        valid.contains("signature: valid, vouched for by https://agent.example (covers @authority, signature-agent)"),
        "{valid}"
    );
    assert!(valid.contains("agent:    ChatGPT Agent"), "{valid}");
    let now = now();
    let expired = explain(&Signing {
        created: now - 900,
        expires: now - 600,
        ..signing("e-2")
    });
    assert!(
        expired.contains("signature: refused (signature-expired): signature expired at"),
        "{expired}"
    );
}
