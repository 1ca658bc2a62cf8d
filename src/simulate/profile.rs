//! Profiles: who the simulator plays, with the header sets, pacing, concurrency and address
//! plan of each.
//!
//! A profile is a session model. `human` and `pub-wifi` browse: a page, then its images the way
//! a browser picks them, a pause, a link. The crawlers crawl breadth-first and take every image
//! they find. `dataset-builder` works from a list of image URLs. Header sets are those the real
//! clients send (see "What real clients look like" in the design notes); browsers add fetch
//! metadata and client hints only on secure origins, as real ones do.
//!
//! ```
//! use lenscap::simulate::{ProfileKind, Role};
//!
//! let kind: ProfileKind = "fake-googlebot".parse().unwrap();
//! assert_eq!(kind.role(), Role::Scraper);
//! assert_eq!(ProfileKind::PubWifi.role(), Role::Human);
//! assert!("googlebot".parse::<ProfileKind>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Every profile the simulator can play.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileKind {
    /// A person with a current browser: a page, its images, a pause, a link.
    Human,
    /// A crowd of people behind one address (a venue's Wi-Fi, a carrier NAT).
    PubWifi,
    /// A self-identifying AI crawler that reads robots.txt and obeys it.
    AiCrawlerPolite,
    /// The same identities, ignoring robots.txt.
    AiCrawlerRude,
    /// wget, curl, aria2, HTTrack: every image, as fast as the connection allows.
    BulkDownloader,
    /// img2dataset: a list of image URLs, many threads, urllib-style headers.
    DatasetBuilder,
    /// A full current Chrome header set, a plausible Referer, rotating addresses.
    Stealth,
    /// Googlebot's User-Agent from outside Google's ranges.
    FakeGooglebot,
    /// Googlebot from inside Google's published ranges (needs a target that trusts the
    /// simulator's forwarded addresses).
    SearchEngine,
    /// ChatGPT Agent signing every request (Web Bot Auth) with a key the simulator makes and
    /// serves in a key directory on loopback (`key_directory`).
    SignedAgent,
    /// GPTBot signing every request and offering to pay for it (`crawler-max-price: USD 1.00`,
    /// signed): a site that licenses (`ai-training = "license"`) and lists its directory
    /// serves it.
    PayingCrawler,
    /// A script with Chrome's headers, a cookie jar and correct Referers: each page, then the
    /// images that page shows, no pauses.
    PageThenImages,
    /// Headless Chromium with a Chrome User-Agent walking every page as fast as it renders:
    /// the page, its stylesheets, its images.
    HeadlessFast,
    /// The same walker with a second between pages.
    HeadlessPaced,
    /// The page-then-images script on a secure origin (`X-Forwarded-Proto: https`), sending a
    /// browser's `Sec-Fetch-*` headers it made up.
    ForgedFetchMetadata,
    /// The page-then-images script behind a trusted proxy, each request from another /24
    /// (`X-Forwarded-For`).
    RotatingSubnets,
    /// People without cookies on one address who use the way-through page as a person would:
    /// wait out its refresh or press its button, then carry the pass in the URL.
    CookielessCrowd,
    /// A guest opening photo links one after another.
    DirectLinkOpener,
    /// People on a mobile carrier's NAT: their address changes inside a /24.
    CarrierNat,
}

/// Whether a profile should get through (humans, welcome crawlers) or be stopped (scrapers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// People: hindering one is a false positive.
    Human,
    /// A crawler the site wants (a verified search engine): stopping it is a false positive.
    Welcome,
    /// A client the site wants kept off its images.
    Scraper,
}

impl Role {
    /// `human`, `welcome` or `scraper`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Human => "human",
            Role::Welcome => "welcome",
            Role::Scraper => "scraper",
        }
    }
}

impl ProfileKind {
    /// Every profile, in report order.
    pub const ALL: [ProfileKind; 19] = [
        ProfileKind::Human,
        ProfileKind::PubWifi,
        ProfileKind::AiCrawlerPolite,
        ProfileKind::AiCrawlerRude,
        ProfileKind::BulkDownloader,
        ProfileKind::DatasetBuilder,
        ProfileKind::Stealth,
        ProfileKind::FakeGooglebot,
        ProfileKind::SearchEngine,
        ProfileKind::SignedAgent,
        ProfileKind::PayingCrawler,
        ProfileKind::PageThenImages,
        ProfileKind::HeadlessFast,
        ProfileKind::HeadlessPaced,
        ProfileKind::ForgedFetchMetadata,
        ProfileKind::RotatingSubnets,
        ProfileKind::CookielessCrowd,
        ProfileKind::DirectLinkOpener,
        ProfileKind::CarrierNat,
    ];

    /// The name used on the command line, in scenarios and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Human => "human",
            ProfileKind::PubWifi => "pub-wifi",
            ProfileKind::AiCrawlerPolite => "ai-crawler-polite",
            ProfileKind::AiCrawlerRude => "ai-crawler-rude",
            ProfileKind::BulkDownloader => "bulk-downloader",
            ProfileKind::DatasetBuilder => "dataset-builder",
            ProfileKind::Stealth => "stealth",
            ProfileKind::FakeGooglebot => "fake-googlebot",
            ProfileKind::SearchEngine => "search-engine",
            ProfileKind::SignedAgent => "signed-agent",
            ProfileKind::PayingCrawler => "paying-crawler",
            ProfileKind::PageThenImages => "page-then-images",
            ProfileKind::HeadlessFast => "headless-fast",
            ProfileKind::HeadlessPaced => "headless-paced",
            ProfileKind::ForgedFetchMetadata => "forged-fetch-metadata",
            ProfileKind::RotatingSubnets => "rotating-subnets",
            ProfileKind::CookielessCrowd => "cookieless-crowd",
            ProfileKind::DirectLinkOpener => "direct-link-opener",
            ProfileKind::CarrierNat => "carrier-nat",
        }
    }

    /// Whether it should get through or be stopped.
    pub fn role(self) -> Role {
        match self {
            ProfileKind::Human
            | ProfileKind::PubWifi
            | ProfileKind::CookielessCrowd
            | ProfileKind::DirectLinkOpener
            | ProfileKind::CarrierNat => Role::Human,
            ProfileKind::SearchEngine => Role::Welcome,
            // Kept off images unless the site licenses and verifies it: scored as a scraper.
            _ => Role::Scraper,
        }
    }

    /// Whether it fetches the stylesheets a page links, as a renderer does: the headless
    /// walkers, and the people (every browser fetches a page's stylesheets, Lenscap's render
    /// proof among them).
    pub(crate) fn renders(self) -> bool {
        matches!(
            self,
            ProfileKind::HeadlessFast
                | ProfileKind::HeadlessPaced
                | ProfileKind::Human
                | ProfileKind::PubWifi
                | ProfileKind::CookielessCrowd
                | ProfileKind::DirectLinkOpener
                | ProfileKind::CarrierNat
        )
    }

    /// Whether it sends `X-Forwarded-Proto: https` of its own (the site looks secure to the
    /// layer, so a browser's `Sec-Fetch-*` are expected, and forged).
    pub(crate) fn claims_secure(self) -> bool {
        self == ProfileKind::ForgedFetchMetadata
    }

    /// Whether its address changes only between page views (a carrier NAT), not with every
    /// request.
    pub(crate) fn moves_per_page(self) -> bool {
        self == ProfileKind::CarrierNat
    }

    /// Whether it signs its requests (Web Bot Auth).
    pub fn signs(self) -> bool {
        matches!(self, ProfileKind::SignedAgent | ProfileKind::PayingCrawler)
    }

    /// The price header it sends (and signs), when it offers to pay.
    pub(crate) fn price_offer(self) -> Option<(&'static str, &'static str)> {
        match self {
            ProfileKind::PayingCrawler => Some(("crawler-max-price", "USD 1.00")),
            _ => None,
        }
    }

    /// Whether its sessions keep the cookies a site sets, as browsers (and scripts using a
    /// session object) do.
    pub fn keeps_cookies(self) -> bool {
        matches!(
            self,
            ProfileKind::Human
                | ProfileKind::PubWifi
                | ProfileKind::DirectLinkOpener
                | ProfileKind::CarrierNat
                | ProfileKind::Stealth
                | ProfileKind::PageThenImages
                | ProfileKind::HeadlessFast
                | ProfileKind::HeadlessPaced
                | ProfileKind::ForgedFetchMetadata
                | ProfileKind::RotatingSubnets
        )
    }

    /// The identities its sessions take in turn.
    pub(crate) fn identities(self) -> &'static [Identity] {
        match self {
            ProfileKind::Human => &[CHROME, FIREFOX, SAFARI],
            ProfileKind::PubWifi => &[CHROME_ANDROID, SAFARI_IPHONE, CHROME, SAFARI, FIREFOX],
            ProfileKind::AiCrawlerPolite | ProfileKind::AiCrawlerRude => {
                &[GPTBOT, CCBOT, CLAUDEBOT]
            }
            ProfileKind::BulkDownloader => &[WGET, CURL, ARIA2, HTTRACK],
            ProfileKind::DatasetBuilder => &[IMG2DATASET],
            ProfileKind::Stealth => &[CHROME],
            ProfileKind::FakeGooglebot | ProfileKind::SearchEngine => &[GOOGLEBOT],
            ProfileKind::SignedAgent => &[CHATGPT_AGENT],
            ProfileKind::PayingCrawler => &[GPTBOT],
            ProfileKind::PageThenImages
            | ProfileKind::HeadlessFast
            | ProfileKind::HeadlessPaced
            | ProfileKind::ForgedFetchMetadata
            | ProfileKind::RotatingSubnets => &[CHROME],
            ProfileKind::CookielessCrowd => {
                &[FIREFOX, SAFARI_IPHONE, CHROME, CHROME_ANDROID, SAFARI]
            }
            ProfileKind::DirectLinkOpener => &[SAFARI, CHROME, FIREFOX],
            ProfileKind::CarrierNat => &[CHROME_ANDROID, SAFARI_IPHONE],
        }
    }

    /// The session model and its default settings.
    pub fn defaults(self) -> ProfileSettings {
        let base = ProfileSettings {
            kind: self,
            sessions: 1,
            concurrency: 4,
            pages: 50,
            think: (Duration::ZERO, Duration::ZERO),
            delay: Duration::ZERO,
            max_requests: 0,
            rotate: Rotation::PerSession,
            addresses: 1,
            user_agent: None,
            headers: Vec::new(),
            obey_robots: false,
            fetch_robots: false,
            honor_noai: false,
            repeat: false,
            give_up_after: 50,
            max_images: None,
            max_share: None,
            share_min_pages: 0,
            expect_stopped: false,
            key_directory: None,
            keeps_cookies: self.keeps_cookies(),
        };
        match self {
            ProfileKind::Human | ProfileKind::PubWifi => ProfileSettings {
                sessions: if self == ProfileKind::PubWifi { 8 } else { 1 },
                concurrency: 6,
                pages: 4,
                think: (Duration::from_secs(2), Duration::from_secs(8)),
                rotate: if self == ProfileKind::PubWifi {
                    Rotation::Shared
                } else {
                    Rotation::PerSession
                },
                give_up_after: 0,
                ..base
            },
            ProfileKind::CookielessCrowd | ProfileKind::CarrierNat => ProfileSettings {
                sessions: if self == ProfileKind::CookielessCrowd {
                    6
                } else {
                    2
                },
                concurrency: 6,
                pages: 4,
                think: (Duration::from_secs(2), Duration::from_secs(8)),
                rotate: if self == ProfileKind::CookielessCrowd {
                    Rotation::Shared
                } else {
                    Rotation::Subnet
                },
                addresses: 254,
                give_up_after: 0,
                ..base
            },
            ProfileKind::DirectLinkOpener => ProfileSettings {
                concurrency: 1,
                pages: 30,
                think: (Duration::from_millis(250), Duration::from_secs(1)),
                give_up_after: 0,
                ..base
            },
            ProfileKind::PageThenImages
            | ProfileKind::HeadlessFast
            | ProfileKind::ForgedFetchMetadata
            | ProfileKind::RotatingSubnets => ProfileSettings {
                concurrency: 6,
                pages: 1_000,
                rotate: if self == ProfileKind::RotatingSubnets {
                    Rotation::Subnets
                } else {
                    Rotation::PerSession
                },
                addresses: 65_536,
                ..base
            },
            ProfileKind::HeadlessPaced => ProfileSettings {
                concurrency: 6,
                pages: 1_000,
                think: (Duration::from_secs(1), Duration::from_secs(1)),
                ..base
            },
            ProfileKind::AiCrawlerPolite => ProfileSettings {
                concurrency: 1,
                delay: Duration::from_millis(250),
                obey_robots: true,
                fetch_robots: true,
                give_up_after: 3,
                ..base
            },
            ProfileKind::AiCrawlerRude => base,
            ProfileKind::BulkDownloader => ProfileSettings {
                fetch_robots: true,
                ..base
            },
            ProfileKind::DatasetBuilder => ProfileSettings {
                concurrency: 16,
                honor_noai: true,
                give_up_after: 0,
                ..base
            },
            ProfileKind::Stealth => ProfileSettings {
                concurrency: 2,
                delay: Duration::from_millis(300),
                rotate: Rotation::Subnet,
                addresses: 256,
                ..base
            },
            ProfileKind::FakeGooglebot => ProfileSettings {
                concurrency: 2,
                delay: Duration::from_millis(100),
                give_up_after: 10,
                expect_stopped: true,
                ..base
            },
            // Honest crawlers: paced, robots.txt read and obeyed.
            ProfileKind::SearchEngine | ProfileKind::SignedAgent | ProfileKind::PayingCrawler => {
                ProfileSettings {
                    concurrency: 2,
                    delay: Duration::from_millis(100),
                    obey_robots: true,
                    fetch_robots: true,
                    give_up_after: 10,
                    ..base
                }
            }
        }
    }

    pub(crate) fn strategy(self) -> Strategy {
        match self {
            ProfileKind::Human
            | ProfileKind::PubWifi
            | ProfileKind::CookielessCrowd
            | ProfileKind::CarrierNat => Strategy::Browse,
            ProfileKind::DirectLinkOpener => Strategy::OpenLinks,
            ProfileKind::DatasetBuilder => Strategy::List,
            _ => Strategy::Crawl,
        }
    }

    pub(crate) fn image_choice(self) -> ImageChoice {
        match self {
            ProfileKind::Human
            | ProfileKind::PubWifi
            | ProfileKind::CookielessCrowd
            | ProfileKind::DirectLinkOpener
            | ProfileKind::CarrierNat
            | ProfileKind::PageThenImages
            | ProfileKind::HeadlessFast
            | ProfileKind::HeadlessPaced
            | ProfileKind::ForgedFetchMetadata
            | ProfileKind::RotatingSubnets => ImageChoice::Browser,
            ProfileKind::BulkDownloader => ImageChoice::All,
            _ => ImageChoice::Largest,
        }
    }
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile name that is not one of [`ProfileKind::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown profile {0:?} (expected one of: {list})", list = ProfileKind::ALL.map(|k| k.as_str()).join(", "))]
pub struct UnknownProfile(pub String);

impl FromStr for ProfileKind {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProfileKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// How a profile's sessions get their client addresses (sent as `X-Forwarded-For`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// One address per session.
    PerSession,
    /// One address for every session of the profile (a crowd behind one NAT).
    Shared,
    /// A new address for each request, within the session's /24.
    Subnet,
    /// A new address for each request, across `addresses` addresses in 10.0.0.0/8.
    Wide,
    /// A new address for each request, each in another /24 (up to `addresses` /24s of
    /// 10.0.0.0/8): a proxy pool spread over networks.
    Subnets,
}

impl Rotation {
    /// The name used in scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            Rotation::PerSession => "session",
            Rotation::Shared => "shared",
            Rotation::Subnet => "subnet",
            Rotation::Wide => "wide",
            Rotation::Subnets => "subnets",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Rotation> {
        [
            Rotation::PerSession,
            Rotation::Shared,
            Rotation::Subnet,
            Rotation::Wide,
            Rotation::Subnets,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A profile's settings: its defaults with a scenario's overrides applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileSettings {
    /// The profile.
    pub kind: ProfileKind,
    /// Sessions run side by side (people in the crowd, crawler instances).
    pub sessions: u32,
    /// Requests in flight at once within one session.
    pub concurrency: usize,
    /// Pages one session visits at most.
    pub pages: usize,
    /// Pause between two pages of a browsing session (uniform in the range).
    pub think: (Duration, Duration),
    /// Pause between two requests of a session.
    pub delay: Duration,
    /// Requests one session sends at most (0: no limit beyond the run's).
    pub max_requests: u64,
    /// How addresses are assigned.
    pub rotate: Rotation,
    /// Distinct addresses a rotating session cycles through.
    pub addresses: u32,
    /// Replaces the profile's User-Agent.
    pub user_agent: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Reads robots.txt and skips what it disallows.
    pub obey_robots: bool,
    /// Fetches robots.txt first (HTTrack does, without obeying it in this profile).
    pub fetch_robots: bool,
    /// Discards images answered with `X-Robots-Tag` noai/noimageai/noindex/noimageindex.
    pub honor_noai: bool,
    /// Goes over the images again and again until the run's bounds stop it (load).
    pub repeat: bool,
    /// Ends a session after this many refusals in a row (0: never gives up).
    pub give_up_after: u32,
    /// Threshold: images this profile may obtain at most.
    pub max_images: Option<u64>,
    /// Threshold: the share of the images available (0 to 1) this profile may obtain at most,
    /// so one threshold fits any gallery (the issue's 60 of 300 is `0.2`). It replaces the
    /// scenario's `max_scraper_images` for this profile.
    pub max_share: Option<f64>,
    /// `max_share` (and, for this profile, `max_scraper_images`) is checked only when the
    /// survey found at least this many pages: on a gallery of a few pages a browser-perfect
    /// client takes everything within a person's share, which no threshold written as a
    /// share of a larger gallery can tell from a person. 0: always checked.
    pub share_min_pages: u64,
    /// Threshold: every session of this profile must be stopped.
    pub expect_stopped: bool,
    /// Signing profiles: where the simulator serves their key directory (a loopback address;
    /// `Signature-Agent` is then `http://` it). None: a free loopback port, named in the report.
    pub key_directory: Option<std::net::SocketAddr>,
    /// Keeps the cookies the site sets (the profile's own habit unless told otherwise).
    pub keeps_cookies: bool,
}

pub(crate) enum Strategy {
    Browse,
    /// Pages as a person reaches them, then the photo links on them opened one by one.
    OpenLinks,
    Crawl,
    List,
}

#[derive(Clone, Copy)]
pub(crate) enum ImageChoice {
    Browser,
    Largest,
    All,
}

// === identities ===

/// A client's header set. Browsers add fetch metadata (and Chromium its client hints) on
/// secure origins only.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) user_agent: &'static str,
    /// The token a robots.txt group names it by (and img2dataset's X-Robots-Tag bot name).
    pub(crate) robots_token: &'static str,
    pub(crate) document: &'static [(&'static str, &'static str)],
    pub(crate) image: &'static [(&'static str, &'static str)],
    /// Sends `Sec-Fetch-*` on secure origins.
    pub(crate) fetch_metadata: bool,
    /// Chromium's `sec-ch-ua*`, sent on secure origins.
    pub(crate) client_hints: &'static [(&'static str, &'static str)],
}

const CHROME_DOCUMENT_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
const CHROME_IMAGE_ACCEPT: &str =
    "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

const CHROME: Identity = Identity {
    user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    robots_token: "Chrome",
    document: &[
        ("upgrade-insecure-requests", "1"),
        ("accept", CHROME_DOCUMENT_ACCEPT),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en-US;q=0.9,en;q=0.8"),
    ],
    image: &[
        ("accept", CHROME_IMAGE_ACCEPT),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en-US;q=0.9,en;q=0.8"),
    ],
    fetch_metadata: true,
    client_hints: &[
        (
            "sec-ch-ua",
            "\"Chromium\";v=\"142\", \"Google Chrome\";v=\"142\", \"Not_A Brand\";v=\"99\"",
        ),
        ("sec-ch-ua-mobile", "?0"),
        ("sec-ch-ua-platform", "\"Windows\""),
    ],
};

const CHROME_ANDROID: Identity = Identity {
    user_agent: "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36",
    client_hints: &[
        (
            "sec-ch-ua",
            "\"Chromium\";v=\"142\", \"Google Chrome\";v=\"142\", \"Not_A Brand\";v=\"99\"",
        ),
        ("sec-ch-ua-mobile", "?1"),
        ("sec-ch-ua-platform", "\"Android\""),
    ],
    ..CHROME
};

const FIREFOX: Identity = Identity {
    user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
    robots_token: "Firefox",
    document: &[
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("upgrade-insecure-requests", "1"),
        ("priority", "u=0, i"),
    ],
    image: &[
        (
            "accept",
            "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("priority", "u=5, i"),
    ],
    fetch_metadata: true,
    client_hints: &[],
};

const SAFARI: Identity = Identity {
    user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.0 Safari/605.1.15",
    robots_token: "Safari",
    document: &[
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("priority", "u=0, i"),
    ],
    image: &[
        (
            "accept",
            "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
        ),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("priority", "u=5, i"),
    ],
    fetch_metadata: true,
    client_hints: &[],
};

const SAFARI_IPHONE: Identity = Identity {
    user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.0 Mobile/15E148 Safari/604.1",
    ..SAFARI
};

const AI_ACCEPT: &[(&str, &str)] = &[
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ),
    ("accept-encoding", "gzip, deflate, br"),
];

const GPTBOT: Identity = Identity {
    user_agent: "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    robots_token: "GPTBot",
    document: AI_ACCEPT,
    image: AI_ACCEPT,
    fetch_metadata: false,
    client_hints: &[],
};

const CHATGPT_AGENT: Identity = Identity {
    user_agent: "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT Agent",
    // No robots.txt token of its own (the catalog's `robots = []`): only `*` applies to it.
    robots_token: "ChatGPT-Agent",
    ..GPTBOT
};

const CCBOT: Identity = Identity {
    user_agent: "CCBot/2.0 (https://commoncrawl.org/faq/)",
    robots_token: "CCBot",
    document: &[
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "br,gzip"),
    ],
    image: &[
        ("accept", "*/*"),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "br,gzip"),
    ],
    fetch_metadata: false,
    client_hints: &[],
};

const CLAUDEBOT: Identity = Identity {
    user_agent: "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
    robots_token: "ClaudeBot",
    document: &[("accept", "*/*"), ("accept-encoding", "gzip, deflate, br")],
    image: &[("accept", "*/*"), ("accept-encoding", "gzip, deflate, br")],
    fetch_metadata: false,
    client_hints: &[],
};

const WGET: Identity = Identity {
    user_agent: "Wget/1.21.3",
    robots_token: "wget",
    document: &[
        ("accept", "*/*"),
        ("accept-encoding", "identity"),
        ("connection", "Keep-Alive"),
    ],
    image: &[
        ("accept", "*/*"),
        ("accept-encoding", "identity"),
        ("connection", "Keep-Alive"),
    ],
    fetch_metadata: false,
    client_hints: &[],
};

const CURL: Identity = Identity {
    user_agent: "curl/8.5.0",
    robots_token: "curl",
    document: &[("accept", "*/*")],
    image: &[("accept", "*/*")],
    fetch_metadata: false,
    client_hints: &[],
};

const ARIA2: Identity = Identity {
    user_agent: "aria2/1.36.0",
    robots_token: "aria2",
    document: &[
        ("accept", "*/*"),
        ("want-digest", "SHA-512;q=1, SHA-256;q=1, SHA;q=0.1"),
    ],
    image: &[
        ("accept", "*/*"),
        ("want-digest", "SHA-512;q=1, SHA-256;q=1, SHA;q=0.1"),
    ],
    fetch_metadata: false,
    client_hints: &[],
};

const HTTRACK_HEADERS: &[(&str, &str)] = &[
    (
        "accept",
        "text/html,image/png,image/jpeg,image/pjpeg,image/x-xbitmap,image/svg+xml,image/gif;q=0.9,*/*;q=0.1",
    ),
    ("accept-language", "en, *"),
    ("accept-encoding", "gzip, identity;q=0.9"),
];

const HTTRACK: Identity = Identity {
    user_agent: "Mozilla/4.5 (compatible; HTTrack 3.0x; Windows 98)",
    robots_token: "HTTrack",
    document: HTTRACK_HEADERS,
    image: HTTRACK_HEADERS,
    fetch_metadata: false,
    client_hints: &[],
};

/// img2dataset's defaults: urllib with a Firefox 72 User-Agent, no Accept, no Accept-Language.
const IMG2DATASET: Identity = Identity {
    user_agent: "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0",
    robots_token: "img2dataset",
    document: &[("accept-encoding", "identity"), ("connection", "close")],
    image: &[("accept-encoding", "identity"), ("connection", "close")],
    fetch_metadata: false,
    client_hints: &[],
};

const GOOGLEBOT_HEADERS: &[(&str, &str)] = &[
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-encoding", "gzip, deflate, br"),
    ("from", "googlebot(at)googlebot.com"),
];

const GOOGLEBOT: Identity = Identity {
    user_agent: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    robots_token: "Googlebot",
    document: GOOGLEBOT_HEADERS,
    image: GOOGLEBOT_HEADERS,
    fetch_metadata: false,
    client_hints: &[],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::{RequestView, header_shape};
    use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};

    fn shape(identity: &Identity, secure: bool, image: bool) -> crate::verdict::Reasons {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static(identity.user_agent));
        let set = if image {
            identity.image
        } else {
            identity.document
        };
        for (name, value) in set {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        if secure {
            for (name, value) in identity.client_hints {
                headers.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            if identity.fetch_metadata {
                headers.insert("sec-fetch-dest", HeaderValue::from_static("image"));
                headers.insert("sec-fetch-mode", HeaderValue::from_static("no-cors"));
            }
        }
        let view = RequestView {
            method: &Method::GET,
            path: "/p/1.jpg",
            version: Version::HTTP_11,
            headers: &headers,
            secure,
            image,
        };
        header_shape(&view, false)
    }

    #[test]
    fn browser_header_sets_raise_no_header_shape_signal() {
        for identity in [&CHROME, &CHROME_ANDROID, &FIREFOX, &SAFARI, &SAFARI_IPHONE] {
            for secure in [false, true] {
                for image in [false, true] {
                    let reasons = shape(identity, secure, image);
                    assert!(
                        reasons.is_empty(),
                        "{} secure={secure} image={image}: {reasons}",
                        identity.user_agent
                    );
                }
            }
        }
    }

    #[test]
    fn img2dataset_looks_like_img2dataset() {
        let reasons = shape(&IMG2DATASET, false, true);
        assert!(reasons.contains(crate::Reason::NoAccept));
        assert!(reasons.contains(crate::Reason::IdentityEncoding));
        assert!(reasons.contains(crate::Reason::OutdatedBrowser));
    }

    #[test]
    fn names_round_trip() {
        for kind in ProfileKind::ALL {
            assert_eq!(kind.as_str().parse::<ProfileKind>().unwrap(), kind);
            assert!(!kind.identities().is_empty());
            assert_eq!(kind.defaults().kind, kind);
        }
    }
}
