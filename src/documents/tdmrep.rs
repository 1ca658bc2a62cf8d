//! `/.well-known/tdmrep.json`: the W3C TDMRep site-wide declaration.

use serde::Serialize;

use super::config::ReservationConfig;

/// One TDMRep rule; the file is an array of these, first match wins.
#[derive(Serialize)]
struct Rule<'a> {
    location: &'static str,
    /// A number (0 or 1), never a string.
    #[serde(rename = "tdm-reservation")]
    reservation: u8,
    #[serde(rename = "tdm-policy", skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
}

/// Renders the file: one rule covering the whole site (`/*`), reserved when training is.
pub(crate) fn render(cfg: &ReservationConfig) -> String {
    let rule = Rule {
        location: "/*",
        reservation: u8::from(cfg.reserve_training),
        // A policy only means something next to a reservation.
        policy: cfg.policy_url.as_deref().filter(|_| cfg.reserve_training),
    };
    let mut out = serde_json::to_string_pretty(&[rule]).expect("a Vec of plain structs serializes");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_with_numeric_reservation() {
        let cfg = ReservationConfig {
            policy_url: Some("https://example.com/tdm".into()),
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::from_str(&render(&cfg)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"location": "/*", "tdm-reservation": 1, "tdm-policy": "https://example.com/tdm"}])
        );
    }

    #[test]
    fn no_policy_key_without_url() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&ReservationConfig::default())).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"location": "/*", "tdm-reservation": 1}])
        );
    }
}
