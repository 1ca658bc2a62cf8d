//! Headless Chromium driven through chromedriver with plain W3C WebDriver calls: one driver
//! per test, one session (one Chromium with its own profile) per person or walker.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::programs::{Group, free_port, require};

/// The W3C name of an element reference in a response.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver on a loopback port; it and every Chromium it started die with the last
/// handle (clones share one driver).
#[derive(Clone)]
pub struct ChromeDriver {
    inner: Arc<Driver>,
}

struct Driver {
    process: Mutex<Group>,
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    chromium: PathBuf,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it says it is ready.
    pub async fn start(dir: &std::path::Path) -> ChromeDriver {
        let chromium = require("chromium", "chromium");
        let program = require("chromedriver", "chromium-driver");
        let port = free_port();
        let process = Group::spawn(
            &program,
            &[format!("--port={port}")],
            &dir.join("chromedriver.log"),
        );
        let driver = ChromeDriver {
            inner: Arc::new(Driver {
                process: Mutex::new(process),
                base: format!("http://127.0.0.1:{port}"),
                http: Client::builder(TokioExecutor::new()).build_http(),
                chromium,
            }),
        };
        driver.wait_ready().await;
        driver
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            {
                let mut process = self.inner.process.lock().expect("the driver's process");
                if let Some(status) = process.exited() {
                    panic!("{} exited at start ({status})", process.name());
                }
            }
            if let Ok(answer) = self.call(Method::GET, "/status", None).await
                && answer["ready"] == json!(true)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not become ready within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One WebDriver command; the `value` of its answer, or the driver's error message.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.inner.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .expect("a WebDriver request");
        let answer =
            tokio::time::timeout(Duration::from_secs(90), self.inner.http.request(request))
                .await
                .map_err(|_| format!("{method} {path}: no answer from chromedriver in 90 s"))?
                .map_err(|error| format!("{method} {path}: {error}"))?;
        let status = answer.status();
        let body = answer
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("{method} {path}: {error}"))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&body)
            .map_err(|error| format!("{method} {path}: an answer that is not JSON: {error}"))?;
        let value = value.get("value").cloned().unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!("{method} {path}: {status}: {}", value["message"]))
        }
    }

    /// Opens a new Chromium: headless, with its own profile under `profile`, `user_agent`,
    /// cookies blocked when `cookies` is false, `hosts` mapped to loopback.
    pub async fn session(&self, profile: &std::path::Path, options: Browser) -> Session {
        std::fs::create_dir_all(profile).expect("a browser profile folder");
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            format!("--user-agent={}", options.user_agent),
            format!("--host-resolver-rules=MAP {} 127.0.0.1", super::PUBLIC_HOST),
            "--window-size=1024,768".to_owned(),
            "--disable-extensions".to_owned(),
            "--mute-audio".to_owned(),
        ];
        args.extend(options.extra_args);
        let mut prefs = json!({});
        if !options.cookies {
            prefs["profile.default_content_setting_values.cookies"] = json!(2);
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": self.inner.chromium.display().to_string(),
                "args": args,
                "prefs": prefs,
            },
        }}});
        let created = self
            .call(Method::POST, "/session", Some(capabilities))
            .await
            .unwrap_or_else(|error| panic!("Chromium does not start: {error}"));
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a new session without an id: {created}"))
            .to_owned();
        let session = Session {
            driver: self.clone(),
            id,
        };
        session
            .command(
                Method::POST,
                "timeouts",
                json!({"pageLoad": 60_000, "script": 30_000}),
            )
            .await;
        session
    }
}

/// How a Chromium is started.
pub struct Browser {
    pub user_agent: String,
    pub cookies: bool,
    pub extra_args: Vec<String>,
}

impl Default for Browser {
    fn default() -> Browser {
        Browser {
            user_agent: super::CHROME_UA.to_owned(),
            cookies: true,
            extra_args: Vec::new(),
        }
    }
}

/// One Chromium.
pub struct Session {
    driver: ChromeDriver,
    id: String,
}

impl Session {
    /// A command on this session; fails the test with the driver's message.
    async fn command(&self, method: Method, path: &str, body: Value) -> Value {
        let path = format!("/session/{}/{path}", self.id);
        let body = (method != Method::DELETE && method != Method::GET).then_some(body);
        self.driver
            .call(method, &path, body)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Navigates to `url` as if typed, and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.command(Method::POST, "url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub async fn run(&self, script: &str) -> Value {
        self.command(
            Method::POST,
            "execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Clicks the first element matching `css`; false when there is none.
    pub async fn click(&self, css: &str) -> bool {
        let path = format!("/session/{}/element", self.id);
        let found = self
            .driver
            .call(
                Method::POST,
                &path,
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let Ok(element) = found else {
            return false;
        };
        let Some(id) = element[ELEMENT].as_str() else {
            return false;
        };
        self.command(Method::POST, &format!("element/{id}/click"), json!({}))
            .await;
        true
    }

    /// Goes back one page in the history.
    pub async fn back(&self) {
        self.command(Method::POST, "back", json!({})).await;
    }

    /// Closes this Chromium.
    pub async fn quit(self) {
        let path = format!("/session/{}", self.id);
        let _ = self.driver.call(Method::DELETE, &path, None).await;
    }
}
