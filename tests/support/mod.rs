//! Helpers for tests that drive the real `lenscap` server with real clients: the gallery they
//! browse, the server with its access log, the programs they run (Python, Chromium through
//! chromedriver), and the table of results.
//!
//! ```ignore
//! let gallery = support::gallery::shared();
//! let site = support::site::Site::start("alone", gallery, support::site::Origin::Plain).await;
//! let driver = support::webdriver::ChromeDriver::start().await;
//! // … browse `site.url(support::PUBLIC_HOST)` …
//! let log = site.finish().await;
//! ```

#![allow(dead_code)]

pub mod gallery;
pub mod programs;
pub mod site;
pub mod table;
pub mod webdriver;

/// The public name the clients use for the gallery (mapped to loopback in Chromium; sent as
/// the Host by the scripts).
pub const PUBLIC_HOST: &str = "gallery.test";

/// Chrome's User-Agent on Linux, at the major version of Debian's Chromium.
pub const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

/// A fresh scratch folder for one scenario (named after it), under the system's temporary
/// folder.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = std::env::temp_dir().join(format!(
        "lenscap-real-clients-{}/{slug}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|error| panic!("cannot create the scratch folder {dir:?}: {error}"));
    dir
}
