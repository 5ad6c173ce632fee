//! Cross-origin access for browser clients served from elsewhere (`--cors-origin`).
//!
//! Without configured origins no CORS header is ever sent, so browsers allow only pages of
//! this service's own origin (the app at `/`) to call the API. Keys travel in the
//! `Authorization` header, never in cookies, so credentials mode stays off.

use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// A configured origin that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorsError {
    /// Not of the form `scheme://host[:port]`.
    #[error(
        "CORS origin {0:?} is not an origin: expected http(s)://host[:port], without path or trailing slash"
    )]
    NotAnOrigin(String),
    /// `*` would let every web page call the API with a key it got hold of.
    #[error("CORS origin \"*\" is refused: list the origins allowed to call the API")]
    Wildcard,
}

/// Checks one origin and normalises it to lower case (browsers send scheme and host in lower
/// case and the comparison is exact). Used by clap and by [`layer`].
pub fn parse_origin(s: &str) -> Result<String, CorsError> {
    let s = s.trim();
    if s == "*" {
        return Err(CorsError::Wildcard);
    }
    let lower = s.to_ascii_lowercase();
    let host = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| CorsError::NotAnOrigin(s.to_string()))?;
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid_host {
        return Err(CorsError::NotAnOrigin(s.to_string()));
    }
    Ok(lower)
}

/// The CORS layer for `origins`, or `None` (same origin only) when the list is empty.
pub fn layer(origins: &[String]) -> Result<Option<CorsLayer>, CorsError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let values = origins
        .iter()
        .map(|o| {
            let o = parse_origin(o)?;
            HeaderValue::from_str(&o).map_err(|_| CorsError::NotAnOrigin(o))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            // A client backing off after a 429 needs to read it.
            .expose_headers([header::RETRY_AFTER])
            // Spares a preflight before every recognition call of the live view.
            .max_age(Duration::from_secs(600)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_and_normalised() {
        assert_eq!(
            parse_origin("https://App.Example.org:8443").as_deref(),
            Ok("https://app.example.org:8443")
        );
        assert_eq!(
            parse_origin(" http://127.0.0.1:3000 ").as_deref(),
            Ok("http://127.0.0.1:3000")
        );
        assert_eq!(parse_origin("*"), Err(CorsError::Wildcard));
        for bad in [
            "app.example.org",
            "https://",
            "https://a.example/",
            "https://a.example/path",
            "ftp://a.example",
            "https://a b",
        ] {
            assert!(
                matches!(parse_origin(bad), Err(CorsError::NotAnOrigin(_))),
                "{bad}"
            );
        }
        assert!(layer(&[]).expect("empty list").is_none());
        assert!(layer(&["https://a.example".into()]).expect("one").is_some());
        assert!(layer(&["https://a.example/".into()]).is_err());
    }
}
