//! Request parameters from the query string and a lenient body (API.md §4.3, §15.17).
//!
//! The SDKs send JSON (with or without a `Content-Type`), an empty body with a JSON
//! `Content-Type`, or form-encoded bodies (plivoframework style), on any method, DELETE
//! included. The rule: a non-empty body that looks like JSON is JSON; else a form body when the
//! `Content-Type` says so; else the body is ignored. Body keys override query keys; unknown keys
//! are ignored; an empty body is never an error.

use std::collections::HashMap;

use thiserror::Error;

/// Why a body was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("JSON body must be an object")]
    NotAnObject,
}

/// The scalar parameters of one request, by name.
#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, String>,
}

impl Params {
    pub fn parse(
        content_type: Option<&str>,
        body: &[u8],
        query: Option<&str>,
    ) -> Result<Self, BodyError> {
        let mut values = HashMap::new();
        if let Some(query) = query {
            values.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let trimmed = body.trim_ascii();
        let json_type = essence == "application/json" || essence.ends_with("+json");
        let looks_json = matches!(trimmed.first(), Some(b'{' | b'['));
        if !trimmed.is_empty() && (looks_json || json_type) {
            let value: serde_json::Value = serde_json::from_slice(trimmed)
                .map_err(|e| BodyError::MalformedJson(e.to_string()))?;
            match value {
                serde_json::Value::Object(map) => {
                    for (key, value) in map {
                        if let Some(text) = scalar(value) {
                            values.insert(key, text);
                        }
                    }
                }
                serde_json::Value::Null => {}
                _ => return Err(BodyError::NotAnObject),
            }
        } else if essence == "application/x-www-form-urlencoded" {
            values.extend(form_urlencoded::parse(body).into_owned());
        }
        Ok(Self { values })
    }

    /// The parameter, trimmed; an empty value counts as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// Strings as they are, numbers and booleans in their JSON spelling; `null`, arrays and
/// objects are not parameters and count as absent.
fn scalar(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn json_body_is_read_whatever_the_content_type() {
        for ct in [
            None,
            Some("text/plain"),
            Some("application/json; charset=utf-8"),
        ] {
            let p =
                Params::parse(ct, br#" {"url":"http://a/b.mp3","n":3,"x":null} "#, None).unwrap();
            assert_eq!(p.get("url"), Some("http://a/b.mp3"));
            assert_eq!(p.get("n"), Some("3"));
            assert_eq!(p.get("x"), None);
        }
    }

    #[test]
    fn form_body_is_read_when_declared() {
        let p = Params::parse(
            Some("application/x-www-form-urlencoded"),
            b"text=hello+world&voice=MAN",
            None,
        )
        .unwrap();
        assert_eq!(p.get("text"), Some("hello world"));
        assert_eq!(p.get("voice"), Some("MAN"));
    }

    #[test]
    fn empty_or_undeclared_bodies_are_ignored() {
        assert!(Params::parse(Some("application/json"), b"", None).is_ok());
        assert!(Params::parse(Some("application/json"), b"  \n", None).is_ok());
        assert!(Params::parse(Some("application/json"), b"null", None).is_ok());
        let p = Params::parse(Some("text/plain"), b"url=x", None).unwrap();
        assert_eq!(p.get("url"), None);
    }

    #[test]
    fn body_overrides_query() {
        let p = Params::parse(None, br#"{"url":"body"}"#, Some("url=query&voice=MAN")).unwrap();
        assert_eq!(p.get("url"), Some("body"));
        assert_eq!(p.get("voice"), Some("MAN"));
    }

    #[test]
    fn malformed_json_is_refused() {
        assert!(matches!(
            Params::parse(None, b"{\"url\":", None),
            Err(BodyError::MalformedJson(_))
        ));
        assert_eq!(
            Params::parse(None, b"[1,2]", None).unwrap_err(),
            BodyError::NotAnObject
        );
        assert!(Params::parse(Some("application/json"), b"url=x", None).is_err());
    }

    #[test]
    fn random_bodies_and_queries_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let types = [
            None,
            Some("application/json"),
            Some("application/x-www-form-urlencoded"),
            Some("text/plain; x"),
        ];
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.3) {
                body.insert(0, b'{');
            }
            let query: String = (0..rng.gen_range(0..16))
                .map(|_| char::from(rng.gen_range(0x20u8..0x7f)))
                .collect();
            let _ = Params::parse(types[rng.gen_range(0..types.len())], &body, Some(&query));
        }
    }
}
