//! What the benches share: limits that keep a person's requests on the allow path, the
//! visitor cookie a page view was given, and why a request the bench expected to be served
//! was refused.

use http::{HeaderMap, StatusCode, header};

/// `[limits]` generous enough that a person's requests stay on the allow path however often a
/// bench repeats them: no pace and no budget is met (the bursts refill within the 24 days a
/// policy allows); everything else is the embedded default policy.
///
/// `address_photos`: repeat views of one photo are charged to the address too (at the
/// smallest share, 28 of them: 11,200 views). `images`: the layer and record benches answer
/// their page view with the photo itself (`image/jpeg`), so the layer counts that client's
/// page-looking requests as images from then on (`/photo?id=17` harvesting) and charges each
/// round's page view to `images`; once it is refused, the client is sent the way through and
/// its photos are refused (`way-through`).
pub const GENEROUS_LIMITS: &str = r#"
[limits]
credit_per_page = 60000
max_credit = 60000
subnet_vouched_images = { rate = "100/s", burst = 200000000 }
# The page views that top the credit up must not run into the long-horizon budgets.
pages = { rate = "100/s", burst = 200000000 }
page_pace = { rate = "100/s", burst = 200000000 }
anonymous_page_pace = { rate = "100/s", burst = 200000000 }
images = { rate = "100/s", burst = 200000000 }
subnet_pages = { rate = "100/s", burst = 200000000 }
# Nor into the address's budgets, which every client on the address shares.
address_pages = { rate = "100/s", burst = 200000000 }
address_photos = { rate = "100/s", burst = 200000000 }
"#;

/// The `name=value` pair of the visitor cookie a response sets (its attributes cut off), to
/// send back as a `Cookie` line.
pub fn visitor_cookie(headers: &HeaderMap) -> String {
    let line = headers
        .get(header::SET_COOKIE)
        .expect("the first page view is given a visitor cookie");
    let line = line.to_str().expect("a visitor cookie is visible ASCII");
    let pair = line.split(';').next().unwrap_or(line);
    pair.to_owned()
}

/// Why a request was not served, for a bench whose every request must be: the status and
/// the quota the layer names in `RateLimit-Policy` (`-` when it names none).
pub fn refusal(status: StatusCode, headers: &HeaderMap) -> String {
    let quota = headers
        .get("ratelimit-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    format!("{status}, quota {quota}")
}
