//! Reading settings from TOML: the one error type every configuration file reports with,
//! line numbers worked out in one place, and durations.
//!
//! Each stage owns its own config types; they all report problems as a [`ConfigError`] that
//! names the file, the key and, where the parser kept a span, the line.
//!
//! ```
//! use std::time::Duration;
//! use lenscap::{ConfigError, parse_duration};
//!
//! assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
//! // Too large for the clock: refused, never a panic.
//! assert_eq!(parse_duration("99999999999999999999h"), None);
//!
//! let err = lenscap::Policy::from_toml_str("[tarpit]\ndelay = \"18446744073709551616s\"\n", None)
//!     .unwrap_err();
//! assert!(matches!(err, ConfigError::Invalid { .. }));
//! assert!(err.to_string().contains("line 2") && err.to_string().contains("tarpit.delay"));
//! ```

use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde_spanned::Spanned;

/// A configuration file (policy, scenario, server tables) that could not be used. Every
/// variant names the file and, where it can, the key and line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{source_name}: {message}")]
    Parse {
        /// The file.
        source_name: String,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value that parsed but makes no sense.
    #[error("{source_name}: {message}")]
    Invalid {
        /// The file.
        source_name: String,
        /// What is wrong, naming the key (and line when known).
        message: String,
    },
    /// A data file the configuration names (the crawler catalog, a ranges file) is wrong.
    #[error(transparent)]
    Data(Box<dyn std::error::Error + Send + Sync>),
}

impl ConfigError {
    /// The file at `path` could not be read.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ConfigError {
        ConfigError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// `text`, read from `source_name`, is not valid TOML for its schema.
    pub(crate) fn toml(source_name: &str, text: &str, error: &toml::de::Error) -> ConfigError {
        ConfigError::Parse {
            source_name: source_name.to_owned(),
            message: describe_toml_error(error, text),
        }
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::io(path, source))
}

/// A configuration text being compiled: turns spans into line numbers for its errors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source<'a> {
    /// The file (or `policy`, `--upstream`, …), named in errors.
    pub(crate) name: &'a str,
    /// Its text, for line numbers.
    pub(crate) text: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        Source { name, text }
    }

    /// An [`ConfigError::Invalid`] naming the line of `span` (when it has one).
    pub(crate) fn invalid(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        let message = message.into();
        let message = match span.filter(|s| s.end > 0) {
            Some(span) => format!("line {}: {message}", line_col(self.text, span.start).0),
            None => message,
        };
        ConfigError::Invalid {
            source_name: self.name.to_owned(),
            message,
        }
    }

    /// The duration at `key`, or an error naming the key and its line.
    pub(crate) fn duration(
        &self,
        key: &str,
        value: &Spanned<String>,
    ) -> Result<Duration, ConfigError> {
        parse_duration(value.get_ref()).ok_or_else(|| {
            self.invalid(
                Some(value.span()),
                format!(
                    "{key} = {:?} is not a duration like \"30s\", \"800ms\" or \"10m\" (at most {} days)",
                    value.get_ref(),
                    MAX_DURATION.as_secs() / 86_400
                ),
            )
        })
    }

    /// The span of a `[section]` header, to point errors at it.
    pub(crate) fn section(&self, section: &str) -> Option<Range<usize>> {
        let header = format!("[{section}]");
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            if line.trim() == header {
                return Some(offset..offset + line.len());
            }
            offset += line.len();
        }
        None
    }
}

/// Renders a TOML error as `line L, column C: message` plus the offending line.
pub(crate) fn describe_toml_error(error: &toml::de::Error, text: &str) -> String {
    let Some(span) = error.span() else {
        return error.message().to_owned();
    };
    let (line, column) = line_col(text, span.start);
    let source_line = text.lines().nth(line - 1).unwrap_or("").trim();
    let mut out = format!("line {line}, column {column}: {}", error.message());
    if !source_line.is_empty() {
        let _ = write!(out, " (in `{source_line}`)");
    }
    out
}

/// The 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// The longest duration a setting may have: a year, far above any sensible window or timeout
/// and far below what the clocks (and millisecond counters) overflow at.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// Parses `"5s"`, `"800ms"`, `"1.5s"`, `"2m"`, `"1h"`. The unit is required (a bare number is
/// ambiguous); negative, non-finite and over-long durations (above [`MAX_DURATION`]) are
/// `None`, never a panic.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" | "hour" | "hours" => value * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("800ms"), Some(Duration::from_millis(800)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), None);
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn durations_too_large_for_the_clock_are_refused_not_a_panic() {
        assert_eq!(parse_duration("18446744073709551616s"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
        assert_eq!(parse_duration("1e400s"), None);
        assert_eq!(parse_duration("367d"), None);
        assert_eq!(parse_duration("8785h"), None);
        assert_eq!(parse_duration("8784h"), Some(MAX_DURATION));
    }

    #[test]
    fn errors_point_at_lines() {
        let source = Source::new("f.toml", "a = 1\n[x]\nb = \"2\"\n");
        let e = source.invalid(Some(12..15), "bad b");
        assert_eq!(e.to_string(), "f.toml: line 3: bad b");
        assert_eq!(source.section("x"), Some(6..10));
        let e = source.invalid(None, "no line");
        assert_eq!(e.to_string(), "f.toml: no line");
    }
}
