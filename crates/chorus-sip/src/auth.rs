//! Digest authentication of inbound requests (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.
//!
//! [`DigestAuth`] issues challenges and checks the `Authorization` of a retried request. It
//! never reads the clock: every call takes `now`, so nonce expiry is tested in virtual time.
//!
//! - **Challenges** offer every configured algorithm, most preferred first (RFC 8760 §2.4:
//!   SHA-256, then MD5 for older phones), each with `qop="auth"`, the engine's `opaque` and a
//!   nonce. A nonce is self-authenticating: its issue time and a random part, MACed with a
//!   per-process secret (HMAC-SHA-256), so a nonce we issued is recognised (and its age known)
//!   without any state, and one from before a restart is simply unknown.
//! - **Replay**: each nonce's highest nonce-count is remembered (a bounded table, oldest
//!   nonces forgotten first); a request must carry a higher `nc` than any before it on the
//!   same nonce (RFC 7616 §3.4).
//! - **Staleness**: a correct digest on an expired, forgotten or replayed nonce is answered
//!   with a fresh challenge carrying `stale=true` (RFC 7616 §3.3), so the phone retries
//!   without asking its user again.
//! - **No user enumeration**: an unknown user is hashed against a dummy password exactly as a
//!   known one is, and both outcomes are the one [`Rejection::Failed`]: the answer (a fresh
//!   401) is identical apart from its nonce, and takes the same work.
//!
//! ```
//! use std::time::Instant;
//! use chorus_sip::auth::{authorization, DigestAuth, DigestConfig, DigestRequest};
//!
//! let now = Instant::now();
//! let mut auth = DigestAuth::new(DigestConfig::default(), now);
//! let challenge = auth.challenge(now, false);
//! let uri = "sip:room1@192.0.2.1";
//! let answer = authorization(&challenge[0], "INVITE", uri, "alice", "secret", "c0ffee", 1).unwrap();
//! let request = DigestRequest { method: "INVITE", authorization: &[answer] };
//! let users = |user: &str| (user == "alice").then_some("secret");
//! assert_eq!(auth.verify(now, &request, users).unwrap().username, "alice");
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::Md5;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// A Digest hash algorithm (RFC 7616 §3.2, RFC 8760 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// `MD5` or `SHA-256`, case-insensitively; the `-sess` variants are not supported.
    pub fn parse(token: &str) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The lowercase hex hash of `data` (RFC 7616 §3.4.1: `H(data)`).
    fn hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

/// The inputs of a Digest `response` with `qop=auth` (RFC 7616 §3.4.1).
#[derive(Clone, Copy, Debug)]
pub struct ResponseInput<'a> {
    pub algorithm: Algorithm,
    pub username: &'a str,
    pub realm: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    /// The nonce-count as sent: eight hex digits.
    pub nc: &'a str,
    pub cnonce: &'a str,
}

/// `KD(H(A1), nonce:nc:cnonce:auth:H(A2))` with `A1 = user:realm:password` and
/// `A2 = method:uri`, in lowercase hex.
pub fn response(input: &ResponseInput<'_>) -> String {
    let alg = input.algorithm;
    let ha1 = alg.hex(&format!(
        "{}:{}:{}",
        input.username, input.realm, input.password
    ));
    let ha2 = alg.hex(&format!("{}:{}", input.method, input.uri));
    alg.hex(&format!(
        "{ha1}:{}:{}:{}:auth:{ha2}",
        input.nonce, input.nc, input.cnonce
    ))
}

/// The client side (RFC 7616 §3.4): the `Authorization` value answering one challenge (one
/// `WWW-Authenticate` value) for a request, with `qop=auth`. `None` when the challenge is not
/// Digest, lacks a realm or nonce, offers no `auth` qop, or names an algorithm we lack.
pub fn authorization(
    challenge: &str,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Option<String> {
    let params = digest_params(challenge)?;
    let get = |name: &str| lookup(&params, name);
    let realm = get("realm")?;
    let nonce = get("nonce")?;
    let algorithm = match get("algorithm") {
        Some(a) => Algorithm::parse(a)?,
        None => Algorithm::Md5,
    };
    if !get("qop")?
        .split(',')
        .any(|q| q.trim().eq_ignore_ascii_case("auth"))
    {
        return None;
    }
    let nc = format!("{nc:08x}");
    let digest = response(&ResponseInput {
        algorithm,
        username,
        realm,
        password,
        method,
        uri,
        nonce,
        nc: &nc,
        cnonce,
    });
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{digest}\", \
         algorithm={}, cnonce=\"{}\", qop=auth, nc={nc}",
        quote(username),
        quote(realm),
        quote(nonce),
        quote(uri),
        algorithm.name(),
        quote(cnonce),
    );
    if let Some(opaque) = get("opaque") {
        let _ = write!(out, ", opaque=\"{}\"", quote(opaque));
    }
    Some(out)
}

/// Settings of a [`DigestAuth`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestConfig {
    /// The protection space (RFC 7616 §3.3); phones show it when asking for a password.
    pub realm: String,
    /// How long a nonce may be used; after that a correct answer gets `stale=true`.
    pub nonce_ttl: Duration,
    /// Offered in this order, most preferred first (RFC 8760 §2.4). Never empty.
    pub algorithms: Vec<Algorithm>,
    /// Nonces whose counts are remembered. Issuing one more forgets the oldest; a phone still
    /// using a forgotten nonce gets `stale=true` and retries with a new one.
    pub max_nonces: usize,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            realm: "chorus".to_string(),
            nonce_ttl: Duration::from_secs(300),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            max_nonces: 10_000,
        }
    }
}

/// What [`DigestAuth::verify`] needs of a request.
///
/// The credentials' `uri` is hashed as sent but not compared with the Request-URI: proxies
/// rewrite Request-URIs and some UAs (SIPp) put the server's address there, and a captured
/// answer cannot be replayed on another URI anyway, since its nonce-count is then used up.
#[derive(Clone, Copy, Debug)]
pub struct DigestRequest<'a> {
    pub method: &'a str,
    /// Every `Authorization` header value of the request.
    pub authorization: &'a [String],
}

/// Credentials that passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    pub username: String,
    pub algorithm: Algorithm,
}

/// Why a request was not authorized. Every rejection is answered with a fresh challenge
/// ([`DigestAuth::challenge`], `stale` per [`Rejection::stale`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// No Digest credentials for our realm: a first attempt.
    Missing,
    /// Credentials we cannot check: an algorithm or qop we did not offer, a parameter
    /// missing or malformed, or an `opaque` that is not ours.
    Malformed,
    /// A nonce we did not issue (or issued before a restart).
    UnknownNonce,
    /// A wrong password or an unknown user: deliberately the same outcome.
    Failed,
    /// A correct digest on a nonce that expired or was forgotten.
    Stale,
    /// A correct digest whose nonce-count was not above every earlier one on its nonce.
    Replayed,
}

impl Rejection {
    /// Whether the new challenge carries `stale=true`: the credentials were right, only the
    /// nonce was not usable any more.
    pub fn stale(self) -> bool {
        matches!(self, Rejection::Stale | Rejection::Replayed)
    }

    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Malformed => "malformed",
            Rejection::UnknownNonce => "unknown_nonce",
            Rejection::Failed => "failed",
            Rejection::Stale => "stale",
            Rejection::Replayed => "replayed",
        }
    }
}

/// Issues Digest challenges and verifies answers; see the module docs.
#[derive(Debug)]
pub struct DigestAuth {
    config: DigestConfig,
    secret: [u8; 32],
    opaque: String,
    /// Hashed instead of the password of an unknown user, so both cost the same.
    dummy_password: String,
    /// Nonce times are milliseconds since this instant.
    epoch: Instant,
    rng: StdRng,
    /// The highest nonce-count seen per live nonce (0 = unused).
    counts: HashMap<String, u32>,
    /// Live nonces in issue order, with their issue time, for expiry and the size cap.
    issued: VecDeque<(u64, String)>,
}

/// Hex characters in a nonce: issue time (16), random part (16), MAC (32).
const NONCE_LEN: usize = 64;

impl DigestAuth {
    /// A verifier with a random secret; nonces it issues are worthless to any other instance.
    pub fn new(config: DigestConfig, now: Instant) -> Self {
        Self::with_rng(config, now, StdRng::from_entropy())
    }

    /// A verifier whose secret, opaque and nonces derive from `seed` (reproducible tests).
    pub fn with_seed(config: DigestConfig, now: Instant, seed: u64) -> Self {
        Self::with_rng(config, now, StdRng::seed_from_u64(seed))
    }

    fn with_rng(mut config: DigestConfig, now: Instant, mut rng: StdRng) -> Self {
        if config.algorithms.is_empty() {
            config.algorithms = DigestConfig::default().algorithms;
        }
        config.max_nonces = config.max_nonces.max(1);
        let secret: [u8; 32] = rng.gen();
        let opaque = hex(&rng.gen::<[u8; 16]>());
        let dummy_password = hex(&rng.gen::<[u8; 16]>());
        DigestAuth {
            config,
            secret,
            opaque,
            dummy_password,
            epoch: now,
            rng,
            counts: HashMap::new(),
            issued: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &DigestConfig {
        &self.config
    }

    /// Nonces whose counts are remembered now.
    pub fn live_nonces(&self) -> usize {
        self.counts.len()
    }

    /// `WWW-Authenticate` values for a 401 (RFC 3261 §22.1): one per configured algorithm,
    /// in preference order, sharing one new nonce. `stale` tells the client its credentials
    /// were right but the nonce was not (RFC 7616 §3.3).
    pub fn challenge(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let nonce = self.issue_nonce(now);
        self.config
            .algorithms
            .iter()
            .map(|alg| {
                let mut value = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", opaque=\"{}\", algorithm={}, qop=\"auth\"",
                    quote(&self.config.realm),
                    self.opaque,
                    alg.name()
                );
                if stale {
                    value.push_str(", stale=true");
                }
                value
            })
            .collect()
    }

    /// Checks the request's credentials. `password` gives the password of a user, `None` for
    /// an unknown user (who is then hashed against a dummy password: same work, same
    /// answer as a wrong password). On `Ok` the nonce-count is recorded.
    pub fn verify<'p>(
        &mut self,
        now: Instant,
        request: &DigestRequest<'_>,
        password: impl Fn(&str) -> Option<&'p str>,
    ) -> Result<Authorized, Rejection> {
        let params = request
            .authorization
            .iter()
            .filter_map(|value| digest_params(value))
            .find(|p| lookup(p, "realm") == Some(self.config.realm.as_str()))
            .ok_or(Rejection::Missing)?;
        let get = |name: &str| lookup(&params, name);
        let algorithm = match get("algorithm") {
            Some(a) => Algorithm::parse(a).ok_or(Rejection::Malformed)?,
            None => Algorithm::Md5,
        };
        if !self.config.algorithms.contains(&algorithm) {
            return Err(Rejection::Malformed);
        }
        let (Some(username), Some(nonce), Some(uri), Some(answer), Some(cnonce), Some(nc)) = (
            get("username"),
            get("nonce"),
            get("uri"),
            get("response"),
            get("cnonce"),
            get("nc"),
        ) else {
            return Err(Rejection::Malformed);
        };
        if !get("qop").is_some_and(|q| q.eq_ignore_ascii_case("auth"))
            || get("opaque") != Some(self.opaque.as_str())
        {
            return Err(Rejection::Malformed);
        }
        let count = parse_nc(nc).ok_or(Rejection::Malformed)?;
        let issued_ms = self.open_nonce(nonce).ok_or(Rejection::UnknownNonce)?;
        let known = password(username);
        let expected = response(&ResponseInput {
            algorithm,
            username,
            realm: &self.config.realm,
            password: known.unwrap_or(&self.dummy_password),
            method: request.method,
            uri,
            nonce,
            nc,
            cnonce,
        });
        let matches = constant_time_eq(expected.as_bytes(), answer.as_bytes());
        if !(matches && known.is_some()) {
            return Err(Rejection::Failed);
        }
        let age = self.millis(now).saturating_sub(issued_ms);
        if u128::from(age) > self.config.nonce_ttl.as_millis() {
            return Err(Rejection::Stale);
        }
        let Some(highest) = self.counts.get_mut(nonce) else {
            return Err(Rejection::Stale);
        };
        if count <= *highest {
            return Err(Rejection::Replayed);
        }
        *highest = count;
        Ok(Authorized {
            username: username.to_string(),
            algorithm,
        })
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn mac(&self, issued_ms: u64, random: u64) -> [u8; 16] {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return [0; 16];
        };
        mac.update(&issued_ms.to_be_bytes());
        mac.update(&random.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    fn issue_nonce(&mut self, now: Instant) -> String {
        let issued_ms = self.millis(now);
        let ttl_ms = u64::try_from(self.config.nonce_ttl.as_millis()).unwrap_or(u64::MAX);
        // Expired nonces answer stale whatever their count: forget them first.
        while let Some((at, _)) = self.issued.front() {
            if at.saturating_add(ttl_ms) >= issued_ms && self.issued.len() < self.config.max_nonces
            {
                break;
            }
            if let Some((_, old)) = self.issued.pop_front() {
                self.counts.remove(&old);
            }
        }
        let random: u64 = self.rng.gen();
        let nonce = format!(
            "{issued_ms:016x}{random:016x}{}",
            hex(&self.mac(issued_ms, random))
        );
        self.counts.insert(nonce.clone(), 0);
        self.issued.push_back((issued_ms, nonce.clone()));
        nonce
    }

    /// The issue time of a nonce this instance made, else `None`.
    fn open_nonce(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let issued_ms = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        let random = u64::from_str_radix(nonce.get(16..32)?, 16).ok()?;
        let mac = hex(&self.mac(issued_ms, random));
        constant_time_eq(mac.as_bytes(), nonce.get(32..)?.as_bytes()).then_some(issued_ms)
    }
}

/// The auth-params of a `Digest` challenge or credentials (RFC 7235 §2.1, RFC 7616 §3.3):
/// names lowercased, quoted values unescaped. `None` for another scheme.
fn digest_params(value: &str) -> Option<Vec<(String, String)>> {
    let value = value.trim_start();
    let scheme_end = value.find(|c: char| c.is_ascii_whitespace())?;
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_ascii_whitespace() {
                break;
            }
            name.push(c.to_ascii_lowercase());
            chars.next();
        }
        if name.is_empty() {
            return Some(params);
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            return None;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => val.push(chars.next()?),
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        if params.iter().any(|(n, _): &(String, String)| *n == name) {
            // A repeated parameter makes the credentials ambiguous.
            return None;
        }
        params.push((name, val));
    }
}

fn lookup<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `nc`: exactly eight hex digits (RFC 7616 §3.4).
fn parse_nc(nc: &str) -> Option<u32> {
    if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(nc, 16).ok()
}

/// Compares without an early exit, so the time taken says nothing of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Escapes `"` and `\` for a quoted-string (RFC 3261 §25.1).
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const URI: &str = "sip:room1@192.0.2.1";

    fn rfc_input(algorithm: Algorithm) -> ResponseInput<'static> {
        ResponseInput {
            algorithm,
            username: "Mufasa",
            realm: "http-auth@example.org",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: RFC_NONCE,
            nc: "00000001",
            cnonce: RFC_CNONCE,
        }
    }

    #[test]
    fn responses_match_the_rfc_7616_section_3_9_1_examples() {
        assert_eq!(
            response(&rfc_input(Algorithm::Md5)),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        assert_eq!(
            response(&rfc_input(Algorithm::Sha256)),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn client_answer_to_the_rfc_challenge_carries_the_rfc_response() {
        let challenge = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
            algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
            opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let value = authorization(
            challenge,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            RFC_CNONCE,
            1,
        )
        .unwrap();
        assert!(
            value.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{value}"
        );
        assert!(value.contains("nc=00000001"), "{value}");
        assert!(value.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""));
        let md5 = challenge.replace("SHA-256", "MD5");
        let value = authorization(
            &md5,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            RFC_CNONCE,
            1,
        )
        .unwrap();
        assert!(value.contains("response=\"8ca523f5e9506fed4657c9700eebdbec\""));
    }

    fn auth_at(t0: Instant) -> DigestAuth {
        DigestAuth::with_seed(DigestConfig::default(), t0, 7)
    }

    fn users(user: &str) -> Option<&'static str> {
        match user {
            "alice" => Some("wonderland"),
            "bob" => Some("builder"),
            _ => None,
        }
    }

    fn answer(challenge: &str, user: &str, password: &str, nc: u32) -> String {
        authorization(challenge, "INVITE", URI, user, password, "abcdef01", nc).unwrap()
    }

    fn verify(auth: &mut DigestAuth, now: Instant, value: String) -> Result<Authorized, Rejection> {
        let values = [value];
        let request = DigestRequest {
            method: "INVITE",
            authorization: &values,
        };
        auth.verify(now, &request, users)
    }

    #[test]
    fn challenge_offers_sha256_before_md5_with_qop_auth_and_opaque() {
        let t0 = Instant::now();
        let mut auth = auth_at(t0);
        let headers = auth.challenge(t0, false);
        assert_eq!(headers.len(), 2);
        assert!(headers[0].contains("algorithm=SHA-256"), "{}", headers[0]);
        assert!(headers[1].contains("algorithm=MD5"), "{}", headers[1]);
        for h in &headers {
            assert!(h.starts_with("Digest realm=\"chorus\", nonce=\""), "{h}");
            assert!(h.contains("qop=\"auth\""), "{h}");
            assert!(h.contains("opaque=\""), "{h}");
            assert!(!h.contains("stale"), "{h}");
        }
        let nonce = |h: &str| {
            lookup(&digest_params(h).unwrap(), "nonce")
                .unwrap()
                .to_owned()
        };
        assert_eq!(nonce(&headers[0]), nonce(&headers[1]));
        assert!(auth.challenge(t0, true)[0].ends_with(", stale=true"));
    }

    #[test]
    fn both_algorithms_authorize_the_right_password() {
        let t0 = Instant::now();
        let mut auth = auth_at(t0);
        for (i, alg) in [Algorithm::Sha256, Algorithm::Md5].into_iter().enumerate() {
            let h = auth.challenge(t0, false).remove(i);
            let ok = verify(&mut auth, t0, answer(&h, "alice", "wonderland", 1)).unwrap();
            assert_eq!(ok.username, "alice");
            assert_eq!(ok.algorithm, alg);
            // The same nonce serves later requests with higher counts (RFC 7616 §3.4).
            let ok = verify(&mut auth, t0, answer(&h, "bob", "builder", 2)).unwrap();
            assert_eq!(ok.username, "bob");
        }
    }

    #[test]
    fn unknown_user_and_wrong_password_get_identical_answers_apart_from_the_nonce() {
        let t0 = Instant::now();
        let mut auth = auth_at(t0);
        let challenge = auth.challenge(t0, false).remove(0);
        let wrong = verify(&mut auth, t0, answer(&challenge, "alice", "guess", 1));
        let unknown = verify(&mut auth, t0, answer(&challenge, "mallory", "guess", 1));
        assert_eq!(wrong, Err(Rejection::Failed));
        assert_eq!(unknown, wrong);
        let after_wrong = auth.challenge(t0, wrong.unwrap_err().stale());
        let after_unknown = auth.challenge(t0, unknown.unwrap_err().stale());
        let strip = |headers: &[String]| -> Vec<String> {
            headers
                .iter()
                .map(|h| {
                    let nonce = lookup(&digest_params(h).unwrap(), "nonce")
                        .unwrap()
                        .to_owned();
                    h.replace(&nonce, "NONCE")
                })
                .collect()
        };
        assert_ne!(after_wrong, after_unknown, "nonces are fresh each time");
        assert_eq!(strip(&after_wrong), strip(&after_unknown));
    }

    #[test]
    fn nonce_expires_after_its_ttl_in_virtual_time_and_then_answers_stale() {
        let t0 = Instant::now();
        let mut auth = auth_at(t0);
        let challenge = auth.challenge(t0, false).remove(0);
        let ttl = DigestConfig::default().nonce_ttl;
        let just_in_time = t0 + ttl;
        verify(
            &mut auth,
            just_in_time,
            answer(&challenge, "alice", "wonderland", 1),
        )
        .unwrap();
        let late = t0 + ttl + Duration::from_millis(1);
        assert_eq!(
            verify(
                &mut auth,
                late,
                answer(&challenge, "alice", "wonderland", 2)
            ),
            Err(Rejection::Stale)
        );
        // An expired nonce with a wrong password is a plain failure: stale is only for
        // clients that know the password.
        assert_eq!(
            verify(&mut auth, late, answer(&challenge, "alice", "guess", 3)),
            Err(Rejection::Failed)
        );
        assert!(Rejection::Stale.stale() && !Rejection::Failed.stale());
    }

    #[test]
    fn a_repeated_or_lower_nonce_count_is_a_replay() {
        let t0 = Instant::now();
        let mut auth = auth_at(t0);
        let challenge = auth.challenge(t0, false).remove(1);
        let first = answer(&challenge, "bob", "builder", 1);
        verify(&mut auth, t0, first.clone()).unwrap();
        assert_eq!(verify(&mut auth, t0, first), Err(Rejection::Replayed));
        verify(&mut auth, t0, answer(&challenge, "bob", "builder", 5)).unwrap();
        assert_eq!(
            verify(&mut auth, t0, answer(&challenge, "bob", "builder", 4)),
            Err(Rejection::Replayed)
        );
        assert!(Rejection::Replayed.stale());
    }

    #[test]
    fn forgotten_nonces_answer_stale_and_the_table_stays_bounded() {
        let t0 = Instant::now();
        let config = DigestConfig {
            max_nonces: 3,
            ..DigestConfig::default()
        };
        let mut auth = DigestAuth::with_seed(config, t0, 1);
        let first = auth.challenge(t0, false).remove(0);
        for _ in 0..10 {
            auth.challenge(t0, false);
        }
        assert_eq!(auth.live_nonces(), 3);
        assert_eq!(
            verify(&mut auth, t0, answer(&first, "alice", "wonderland", 1)),
            Err(Rejection::Stale)
        );
        // Expired nonces leave the table as soon as another is issued.
        auth.challenge(t0 + Duration::from_secs(3600), false);
        assert_eq!(auth.live_nonces(), 1);
    }

    #[test]
    fn foreign_forged_and_missing_credentials_are_rejected() {
        let t0 = Instant::now();
        let mut auth = auth_at(t0);
        let mut other = DigestAuth::with_seed(DigestConfig::default(), t0, 99);
        let theirs = other.challenge(t0, false).remove(0);
        let ours = auth.challenge(t0, false).remove(0);
        // A nonce from another instance (or before a restart), with our opaque.
        let foreign = answer(&theirs, "alice", "wonderland", 1)
            .replace(&other.opaque.clone(), &auth.opaque.clone());
        assert_eq!(verify(&mut auth, t0, foreign), Err(Rejection::UnknownNonce));
        let good = answer(&ours, "alice", "wonderland", 1);
        for (from, to) in [
            ("qop=auth", "qop=auth-int"),
            ("algorithm=SHA-256", "algorithm=SHA-256-sess"),
            ("nc=00000001", "nc=1"),
            ("opaque=\"", "opaque=\"x"),
        ] {
            let bad = good.replace(from, to);
            assert_eq!(
                verify(&mut auth, t0, bad),
                Err(Rejection::Malformed),
                "{from} -> {to}"
            );
        }
        let other_realm = good.replace("realm=\"chorus\"", "realm=\"elsewhere\"");
        assert_eq!(verify(&mut auth, t0, other_realm), Err(Rejection::Missing));
        assert_eq!(
            verify(&mut auth, t0, "Basic YWxpY2U6d29uZGVybGFuZA==".into()),
            Err(Rejection::Missing)
        );
        // None of that burned the nonce.
        verify(&mut auth, t0, good).unwrap();
        // The uri is hashed as the client sent it (SIPp sends the server's address).
        let server_uri = authorization(
            &ours,
            "INVITE",
            "sip:192.0.2.1:5060",
            "alice",
            "wonderland",
            "x",
            2,
        )
        .unwrap();
        verify(&mut auth, t0, server_uri).unwrap();
        // A changed uri breaks the digest.
        let tampered = answer(&ours, "alice", "wonderland", 3).replace("sip:room1@", "sip:room2@");
        assert_eq!(verify(&mut auth, t0, tampered), Err(Rejection::Failed));
    }

    #[test]
    fn md5_is_refused_when_only_sha256_is_configured() {
        let t0 = Instant::now();
        let config = DigestConfig {
            algorithms: vec![Algorithm::Sha256],
            ..DigestConfig::default()
        };
        let mut auth = DigestAuth::with_seed(config, t0, 3);
        let headers = auth.challenge(t0, false);
        assert_eq!(headers.len(), 1);
        let md5 = headers[0].replace("SHA-256", "MD5");
        assert_eq!(
            verify(&mut auth, t0, answer(&md5, "alice", "wonderland", 1)),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn parameter_parsing_handles_quotes_escapes_and_odd_spacing() {
        let p =
            digest_params("Digest  username = \"a\\\"b\" ,realm=\"r, s\",nc=00000001,  qop=auth")
                .unwrap();
        assert_eq!(lookup(&p, "username"), Some("a\"b"));
        assert_eq!(lookup(&p, "realm"), Some("r, s"));
        assert_eq!(lookup(&p, "nc"), Some("00000001"));
        assert_eq!(lookup(&p, "qop"), Some("auth"));
        assert!(digest_params("Digest realm=\"unterminated").is_none());
        assert!(digest_params("Digest realm=a, realm=b").is_none());
        assert!(digest_params("Digest novalue").is_none());
        assert!(digest_params("Basic abc").is_none());
    }
}
