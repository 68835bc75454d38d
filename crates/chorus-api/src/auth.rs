//! Account authentication for both REST dialects (API.md §3): `X-Auth-ID` + `X-Auth-Token`
//! headers when both are present, else HTTP Basic. The `auth_id` in the path must be the
//! authenticated account. Tokens are compared in constant time, and an unknown id, a wrong
//! token and a foreign path all get the same answer.

use axum::http::HeaderMap;
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// One API account's credentials.
#[derive(Clone)]
pub struct Credential {
    pub auth_id: String,
    pub auth_token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("auth_id", &self.auth_id)
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

/// The configured accounts.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    accounts: Vec<Credential>,
}

impl Accounts {
    pub fn new(accounts: Vec<Credential>) -> Self {
        Self { accounts }
    }

    /// The account the request authenticates as, provided it is the one named in the path.
    pub fn authenticate(&self, headers: &HeaderMap, path_auth_id: &str) -> Option<&Credential> {
        let (id, token) = presented(headers)?;
        // Every configured account is compared, matching or not, so the time taken does not
        // tell which ids exist.
        let mut found = None;
        for account in &self.accounts {
            let id_ok = account.auth_id.as_bytes().ct_eq(id.as_bytes());
            let token_ok = account.auth_token.as_bytes().ct_eq(token.as_bytes());
            if bool::from(id_ok & token_ok) {
                found = Some(account);
            }
        }
        found.filter(|a| a.auth_id == path_auth_id)
    }
}

fn presented(headers: &HeaderMap) -> Option<(String, String)> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let (Some(id), Some(token)) = (header("x-auth-id"), header("x-auth-token")) {
        return Some((id, token));
    }
    let value = header("authorization")?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, token) = text.split_once(':')?;
    Some((id.to_owned(), token.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accounts() -> Accounts {
        Accounts::new(vec![
            Credential {
                auth_id: "MA_ONE".into(),
                auth_token: "one".into(),
            },
            Credential {
                auth_id: "MA_TWO".into(),
                auth_token: "two".into(),
            },
        ])
    }

    fn basic(id: &str, token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{token}"));
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Basic {value}")).unwrap(),
        );
        h
    }

    #[test]
    fn basic_and_header_credentials_both_authenticate() {
        let a = accounts();
        assert!(a.authenticate(&basic("MA_ONE", "one"), "MA_ONE").is_some());
        let mut h = HeaderMap::new();
        h.insert("x-auth-id", HeaderValue::from_static("MA_TWO"));
        h.insert("x-auth-token", HeaderValue::from_static("two"));
        // A Bearer token beside valid X-Auth headers is ignored (API.md §3).
        h.insert("authorization", HeaderValue::from_static("Bearer whatever"));
        assert!(a.authenticate(&h, "MA_TWO").is_some());
    }

    #[test]
    fn wrong_token_unknown_id_and_foreign_path_are_refused() {
        let a = accounts();
        assert!(a.authenticate(&basic("MA_ONE", "two"), "MA_ONE").is_none());
        assert!(a
            .authenticate(&basic("MA_NOPE", "one"), "MA_NOPE")
            .is_none());
        assert!(a.authenticate(&basic("MA_ONE", "one"), "MA_TWO").is_none());
        assert!(a.authenticate(&HeaderMap::new(), "MA_ONE").is_none());
    }
}
