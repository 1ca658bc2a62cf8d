//! The licensing answer: the terms a `license` action answers with (`402 Payment Required`,
//! a `Link` to the licence, `crawler-price` when a price is set), and the price a crawler
//! offers (`crawler-exact-price` or `crawler-max-price`, as Cloudflare's pay-per-crawl names
//! them).
//!
//! ```
//! use lenscap::documents::Price;
//!
//! let price: Price = "USD 0.01".parse().unwrap();
//! assert_eq!(price.to_string(), "USD 0.01");
//! assert!("USD 0.02".parse::<Price>().unwrap() > price);
//! assert!("0.01 dollars".parse::<Price>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::config::ReservationConfig;

/// The header a `402` names the price in.
pub const CRAWLER_PRICE: &str = "crawler-price";
/// The header a crawler accepts exactly the price with.
pub const CRAWLER_EXACT_PRICE: &str = "crawler-exact-price";
/// The header a crawler names the most it pays with.
pub const CRAWLER_MAX_PRICE: &str = "crawler-max-price";
/// The header a licensed response says what was charged in.
pub const CRAWLER_CHARGED: &str = "crawler-charged";

/// Decimal places a price may have.
const MAX_DECIMALS: u32 = 6;

/// A price per request: an ISO 4217 currency code and an amount (`USD 0.01`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price {
    currency: [u8; 3],
    /// The amount in millionths.
    micros: u64,
}

/// Why a price cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{0:?} is not a price like \"USD 0.01\" (a 3-letter currency code, a space, an amount with at most 6 decimals)"
)]
pub struct PriceError(String);

impl FromStr for Price {
    type Err = PriceError;

    fn from_str(text: &str) -> Result<Price, PriceError> {
        let bad = || PriceError(text.to_owned());
        let (code, amount) = text.trim().split_once(' ').ok_or_else(bad)?;
        let currency: [u8; 3] = code.as_bytes().try_into().map_err(|_| bad())?;
        if !currency.iter().all(u8::is_ascii_uppercase) {
            return Err(bad());
        }
        let (whole, fraction) = amount.trim().split_once('.').unwrap_or((amount.trim(), ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return Err(bad());
        }
        if fraction.len() > MAX_DECIMALS as usize {
            return Err(bad());
        }
        let scale = 10u64.pow(MAX_DECIMALS - fraction.len() as u32);
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let fraction: u64 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| bad())?
        };
        let micros = whole
            .checked_mul(10u64.pow(MAX_DECIMALS))
            .and_then(|w| w.checked_add(fraction * scale))
            .ok_or_else(bad)?;
        Ok(Price { currency, micros })
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = std::str::from_utf8(&self.currency).unwrap_or("???");
        let unit = 10u64.pow(MAX_DECIMALS);
        let mut fraction = format!("{:06}", self.micros % unit);
        while fraction.len() > 2 && fraction.ends_with('0') {
            fraction.pop();
        }
        write!(f, "{code} {}.{fraction}", self.micros / unit)
    }
}

impl Price {
    fn same_currency(&self, other: &Price) -> bool {
        self.currency == other.currency
    }
}

/// `[licensing]`: the price of a licensed request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LicensingConfig {
    /// Per request, e.g. `"USD 0.01"`; absent: the 402 carries the terms only.
    pub(crate) price: Option<serde_spanned::Spanned<String>>,
}

/// What a crawler says it pays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// `crawler-exact-price`: this price, no other.
    Exact(Price),
    /// `crawler-max-price`: up to this price.
    Max(Price),
}

impl Offer {
    /// The offer in a request's headers; `Err` names the header that cannot be read, or
    /// both headers sent at once.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<Offer>, String> {
        let read = |name: &str| -> Result<Option<Price>, String> {
            match headers.get(name) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .map_err(|_| format!("{name} is not ASCII"))?
                    .parse()
                    .map(Some)
                    .map_err(|e: PriceError| format!("{name}: {e}")),
            }
        };
        match (read(CRAWLER_EXACT_PRICE)?, read(CRAWLER_MAX_PRICE)?) {
            (Some(_), Some(_)) => Err(format!(
                "{CRAWLER_EXACT_PRICE} and {CRAWLER_MAX_PRICE} were both sent: send one"
            )),
            (Some(exact), None) => Ok(Some(Offer::Exact(exact))),
            (None, Some(max)) => Ok(Some(Offer::Max(max))),
            (None, None) => Ok(None),
        }
    }

    /// Whether the offer pays `price`.
    pub(crate) fn accepts(&self, price: &Price) -> bool {
        match self {
            Offer::Exact(offer) => offer == price,
            Offer::Max(offer) => offer.same_currency(price) && offer >= price,
        }
    }

    /// The header the offer came in (which a signature must cover).
    pub(crate) fn header(&self) -> &'static str {
        match self {
            Offer::Exact(_) => CRAWLER_EXACT_PRICE,
            Offer::Max(_) => CRAWLER_MAX_PRICE,
        }
    }
}

/// The licence terms, rendered once: the `402` body and headers, and the price.
#[derive(Clone, Debug)]
pub struct LicenseTerms {
    /// The price per request, when one is set.
    pub price: Option<Price>,
    /// `<url>; rel="license"`, when a licence URL is set.
    pub(crate) link: Option<HeaderValue>,
    /// The `crawler-price` value, when a price is set.
    pub(crate) price_header: Option<HeaderValue>,
    /// The plain-words body of the `402`.
    pub(crate) body: Bytes,
}

impl LicenseTerms {
    /// The terms `[reservation]` and the price describe.
    pub(crate) fn build(reservation: &ReservationConfig, price: Option<Price>) -> LicenseTerms {
        let link = reservation
            .license_url
            .as_deref()
            .and_then(|url| HeaderValue::try_from(format!("<{url}>; rel=\"license\"")).ok());
        let price_header = price
            .as_ref()
            .and_then(|p| HeaderValue::try_from(p.to_string()).ok());
        LicenseTerms {
            body: Bytes::from(body(reservation, price.as_ref())),
            price,
            link,
            price_header,
        }
    }

    /// The `402` body, in plain words.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

fn body(reservation: &ReservationConfig, price: Option<&Price>) -> String {
    let site = reservation.site_name.as_deref().unwrap_or("This site");
    let mut out = format!(
        "Payment required.\n\n{site} licenses its content to AI crawlers instead of giving it away.\n"
    );
    if let Some(url) = &reservation.license_url {
        out.push_str(&format!("The licence terms: {url}\n"));
    }
    match price {
        Some(price) => out.push_str(&format!(
            "The price is {price} per request. A verified crawler (a Web Bot Auth signature \
             that covers the header, or a request from its operator's published addresses) \
             accepts it by sending `{CRAWLER_EXACT_PRICE}: {price}` or a `{CRAWLER_MAX_PRICE}` \
             at least as high; it is then served, with a `{CRAWLER_CHARGED}` header.\n"
        )),
        None => out.push_str("No price per request is offered here: ask for a licence.\n"),
    }
    if let Some(contact) = &reservation.contact {
        out.push_str(&format!("Contact: {contact}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(text: &str) -> Price {
        text.parse().unwrap()
    }

    #[test]
    fn prices_parse_compare_and_print() {
        assert_eq!(price("USD 0.01").to_string(), "USD 0.01");
        assert_eq!(price("EUR 1").to_string(), "EUR 1.00");
        assert_eq!(price("USD 0.000125").to_string(), "USD 0.000125");
        assert_eq!(price("USD 0.010"), price("USD 0.01"));
        for bad in [
            "usd 0.01",
            "USD",
            "USD -1",
            "USD 0.0000001",
            "US 1",
            "USD 1.2.3",
            "",
        ] {
            assert!(bad.parse::<Price>().is_err(), "{bad}");
        }
        assert!(
            "USD 99999999999999999999"
                .parse::<Price>()
                .unwrap_err()
                .to_string()
                .contains("USD 0.01")
        );
    }

    #[test]
    fn offers_accept_the_price_they_name() {
        let p = price("USD 0.01");
        assert!(Offer::Exact(price("USD 0.01")).accepts(&p));
        assert!(!Offer::Exact(price("USD 0.02")).accepts(&p));
        assert!(Offer::Max(price("USD 0.05")).accepts(&p));
        assert!(!Offer::Max(price("USD 0.005")).accepts(&p));
        assert!(!Offer::Max(price("EUR 5")).accepts(&p));
        let mut headers = HeaderMap::new();
        headers.insert(CRAWLER_MAX_PRICE, HeaderValue::from_static("USD 0.05"));
        assert_eq!(
            Offer::from_headers(&headers),
            Ok(Some(Offer::Max(price("USD 0.05"))))
        );
        headers.insert(CRAWLER_EXACT_PRICE, HeaderValue::from_static("USD 0.01"));
        assert!(Offer::from_headers(&headers).unwrap_err().contains("both"));
        headers.remove(CRAWLER_MAX_PRICE);
        headers.insert(CRAWLER_EXACT_PRICE, HeaderValue::from_static("a penny"));
        assert!(
            Offer::from_headers(&headers)
                .unwrap_err()
                .starts_with(CRAWLER_EXACT_PRICE)
        );
    }

    #[test]
    fn terms_name_licence_price_and_contact() {
        let reservation = ReservationConfig {
            license_url: Some("https://pub.example/license.xml".into()),
            contact: Some("owner@pub.example".into()),
            ..ReservationConfig::default()
        };
        let terms = LicenseTerms::build(&reservation, Some(price("USD 0.01")));
        assert_eq!(
            terms.link.as_ref().unwrap(),
            "<https://pub.example/license.xml>; rel=\"license\""
        );
        assert_eq!(terms.price_header.as_ref().unwrap(), "USD 0.01");
        let body = std::str::from_utf8(terms.body()).unwrap();
        assert!(body.contains("https://pub.example/license.xml"), "{body}");
        assert!(body.contains("crawler-exact-price: USD 0.01"), "{body}");
        assert!(body.contains("Contact: owner@pub.example"), "{body}");
        let free = LicenseTerms::build(&reservation, None);
        assert!(free.price_header.is_none());
    }
}
