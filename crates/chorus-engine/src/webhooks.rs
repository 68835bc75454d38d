//! Outgoing HTTP to customer URLs: XML fetches and signed, ordered, retried notifications.
//!
//! Two kinds of request leave the engine (API.md §8, §9):
//!
//! - [`Webhooks::fetch_xml`] fetches the next call-flow document (answer URL, `action`,
//!   `<Redirect>`, `waitSound`, enter/exit sounds). The call waits for it, so it is bounded by
//!   a timeout and a body size limit.
//! - [`Webhooks::notify`] queues an event (conference callbacks, `hangup_url`, an `action` with
//!   `redirect=false`) and returns at once. The response body is ignored. An unreachable
//!   receiver costs the caller nothing.
//!
//! Requests: parameters go in an `application/x-www-form-urlencoded` body for POST, or in the
//! query string for GET. Query parameters already in the URL are merged into them. On a name
//! clash the URL's value wins, as in plivoframework. A POST still goes to the URL with its
//! query. A GET keeps the URL's query and appends the other parameters. The `User-Agent` comes
//! from [`WebhookConfig`]. No credential is ever sent.
//!
//! Signing (API.md §8.6): when the account's auth token is non-empty, every request carries
//! V2 and V3 signatures under both the Plivo and the Vobiz header names. Each request gets one
//! fresh 20-digit nonce, sent in the matching `-Nonce` headers. `plivo.utils.validate_signature`,
//! `plivo.utils.validate_v3_signature` and their `vobiz.utils` twins accept them.
//!
//! Invariants: notifications sharing an order key are delivered one at a time, in the order
//! queued. Each key with pending work has one drain task, which exits when the key's queue is
//! empty. No lock is held across an `.await`. Auth tokens and query strings (which may carry
//! secrets) are never logged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chorus_engine::webhooks::FetchError> {
//! use chorus_engine::webhooks::{Method, WebhookConfig, Webhooks};
//! let hooks = Webhooks::new(WebhookConfig::default());
//! let params = vec![("CallUUID".to_owned(), "4f1c…".to_owned())];
//! let xml = hooks.fetch_xml("https://example.com/answer", Method::Post, &params, "token").await?;
//! hooks.notify("conference-uuid", "https://example.com/events", Method::Post, params, "token");
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use sha2::Sha256;
use thiserror::Error;
use tracing::{info, warn, Instrument};

pub use chorus_flow::Method;

/// Settings for outgoing webhooks. The defaults match the API contract. Tests shorten the
/// timeouts and the backoff.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Sent as `User-Agent` (the engine uses `Chorus/<version>`).
    pub user_agent: String,
    /// Whole-request limit for [`Webhooks::fetch_xml`]: connect, response and body.
    pub fetch_timeout: Duration,
    /// Whole-request limit for one notification attempt.
    pub notify_timeout: Duration,
    /// Extra attempts after a transport error, a timeout or a 5xx. A 4xx is never retried.
    pub retries: u32,
    /// Delay before the first retry. Each later retry waits twice as long (1 s, 2 s, 4 s).
    pub retry_base: Duration,
    /// Largest XML document accepted (API.md §9.1: 100 KB).
    pub max_xml_bytes: usize,
    /// Notifications waiting per order key. Beyond this, new ones are dropped and counted.
    pub max_pending_per_key: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            fetch_timeout: Duration::from_secs(10),
            notify_timeout: Duration::from_secs(10),
            retries: 3,
            retry_base: Duration::from_secs(1),
            max_xml_bytes: 102_400,
            max_pending_per_key: 10_000,
        }
    }
}

/// Outgoing webhook client and notification queues. Clones share both.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

/// A snapshot of the notification counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Notifications answered with a 2xx.
    pub delivered: u64,
    /// Notifications given up on: a non-2xx, non-5xx answer, retries exhausted, or an unusable URL.
    pub failed: u64,
    /// Retry attempts made (one notification may count several).
    pub retried: u64,
    /// Notifications refused because their key's queue was full or no runtime was running.
    pub dropped: u64,
    /// Notifications queued and not yet started.
    pub pending: u64,
}

/// Why [`Webhooks::fetch_xml`] got no document. Display names the failure but never the URL.
/// Query strings may carry secrets, so the caller logs the URL without its query.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("invalid URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("server answered HTTP {status}")]
    Status { status: u16 },
    #[error("response body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("no complete response within {after:?}")]
    Timeout { after: Duration },
    #[error("transport error (connect, TLS or I/O)")]
    Transport(#[source] reqwest::Error),
    #[error("response body is not UTF-8")]
    NotUtf8(#[source] std::string::FromUtf8Error),
}

impl Webhooks {
    pub fn new(config: WebhookConfig) -> Self {
        let user_agent = match HeaderValue::from_str(&config.user_agent) {
            Ok(value) => value,
            Err(_) => {
                warn!(
                    user_agent = %config.user_agent,
                    "user agent is not a valid header value, using the default"
                );
                HeaderValue::from_static(DEFAULT_USER_AGENT)
            }
        };
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .build()
            .expect("a client with a valid user agent and bundled TLS roots always builds");
        Self {
            inner: Arc::new(Inner {
                config,
                client,
                queues: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    /// Fetches call-flow XML (answer URL, `action`, `<Redirect>`, `waitSound`, enter/exit
    /// sounds) and returns the body. Signed like notifications. Fails on a non-2xx status, on a
    /// body over `max_xml_bytes` (reading stops at the limit), on a transport error or
    /// `fetch_timeout`, and on a body that is not UTF-8.
    pub async fn fetch_xml(
        &self,
        url: &str,
        method: Method,
        params: &[(String, String)],
        auth_token: &str,
    ) -> Result<String, FetchError> {
        let target = without_query(url);
        let result = self.inner.fetch(url, method, params, auth_token).await;
        match &result {
            Ok(body) => info!(url = target, bytes = body.len(), "fetched XML"),
            Err(error) => warn!(url = target, error = %ErrorChain(error), "XML fetch failed"),
        }
        result
    }

    /// Queues a notification and returns at once. It never waits for the receiver.
    ///
    /// Notifications sharing an `order_key` (e.g. the conference UUID) are delivered strictly
    /// in the order queued, one at a time. Different keys proceed in parallel. A transport
    /// error, timeout or 5xx is retried `retries` times with doubling backoff. Any other
    /// non-2xx answer is final. Outcomes are counted in [`Webhooks::stats`].
    pub fn notify(
        &self,
        order_key: &str,
        url: &str,
        method: Method,
        params: Vec<(String, String)>,
        auth_token: &str,
    ) {
        let inner = &self.inner;
        let Some(runtime) = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| inner.runtime.clone())
        else {
            inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                url = without_query(url),
                "notification dropped: no tokio runtime to deliver it"
            );
            return;
        };
        let job = Notification {
            url: url.to_owned(),
            method,
            params,
            auth_token: auth_token.to_owned(),
        };
        let start_drain = {
            let mut queues = inner.lock_queues();
            match queues.get_mut(order_key) {
                Some(queue) if queue.len() >= inner.config.max_pending_per_key => {
                    drop(queues);
                    inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        order_key,
                        url = without_query(url),
                        "notification dropped: too many pending for this key"
                    );
                    return;
                }
                Some(queue) => {
                    queue.push_back(job);
                    false
                }
                None => {
                    queues.insert(order_key.to_owned(), VecDeque::from([job]));
                    true
                }
            }
        };
        inner.counters.pending.fetch_add(1, Ordering::Relaxed);
        if start_drain {
            let span = tracing::info_span!("webhooks", order_key);
            runtime.spawn(drain(Arc::clone(inner), order_key.to_owned()).instrument(span));
        }
    }

    /// Nothing queued and nothing being delivered (no key has a drain task).
    pub fn is_idle(&self) -> bool {
        self.inner.lock_queues().is_empty()
    }

    /// Waits until [`Webhooks::is_idle`], or `timeout`; true when idle. Shutdown uses it so
    /// the last callbacks (hangups, recordings) go out before the process exits.
    pub async fn flush(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_idle() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    pub fn stats(&self) -> WebhookStats {
        let c = &self.inner.counters;
        WebhookStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The V2 signature: `base64(HMAC-SHA256(auth_token, url_without_query + nonce))`. The URL is
/// normalised as the request sends it (`Url` parsing). Its query, fragment and `;params` are
/// cut as Python's `urlparse`/`urlunparse` cut them in `validate_signature`.
pub fn sign_v2(auth_token: &str, url: &str, nonce: &str) -> String {
    let (base, _) = split_url(url);
    hmac_base64(auth_token, &[base.as_bytes(), nonce.as_bytes()])
}

/// The V3 signature, as `signature_v3.py` of plivo-python and vobiz-python computes it:
/// `base64(HMAC-SHA256(auth_token, "<base>[?<query>][.]<post params>.<nonce>"))`.
///
/// - `<base>` is the URL without query (as in [`sign_v2`]).
/// - `<query>` holds the decoded `k=v` pairs, sorted by key then value and joined by `&`.
/// - `<post params>` holds the decoded `kv` pairs, sorted the same way and concatenated.
///
/// For GET, `<query>` is the URL's query plus every parameter the URL does not already name.
/// So the configured URL with its parameters and the final request URL alone sign the same.
/// For POST, `<query>` is the URL's own query and `params` is the form body. The `?` appears
/// when either part is non-empty, and the `.` between them only when both are.
pub fn sign_v3(
    auth_token: &str,
    url: &str,
    method: Method,
    params: &[(String, String)],
    nonce: &str,
) -> String {
    let (mut signed, query) = split_url(url);
    match method {
        Method::Get => {
            let merged: Vec<(&str, &str)> = params
                .iter()
                .filter(|(k, _)| !query.iter().any(|(q, _)| q == k))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .collect();
            let query = sorted_query(&merged);
            if !query.is_empty() {
                signed.push('?');
                signed.push_str(&query);
            }
        }
        Method::Post => {
            let query: Vec<(&str, &str)> = query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let query = sorted_query(&query);
            if !query.is_empty() || !params.is_empty() {
                signed.push('?');
                signed.push_str(&query);
            }
            if !query.is_empty() && !params.is_empty() {
                signed.push('.');
            }
            for (k, v) in sorted(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
                signed.push_str(k);
                signed.push_str(v);
            }
        }
    }
    hmac_base64(auth_token, &[signed.as_bytes(), b".", nonce.as_bytes()])
}

const DEFAULT_USER_AGENT: &str = concat!("Chorus/", env!("CARGO_PKG_VERSION"));

const SIGNATURE_V2: [&str; 2] = ["x-plivo-signature-v2", "x-vobiz-signature-v2"];
const NONCE_V2: [&str; 2] = ["x-plivo-signature-v2-nonce", "x-vobiz-signature-v2-nonce"];
const SIGNATURE_V3: [&str; 2] = ["x-plivo-signature-v3", "x-vobiz-signature-v3"];
const NONCE_V3: [&str; 2] = ["x-plivo-signature-v3-nonce", "x-vobiz-signature-v3-nonce"];

struct Inner {
    config: WebhookConfig,
    client: reqwest::Client,
    /// Pending notifications per order key. A key is present exactly while its drain task runs.
    queues: Mutex<HashMap<String, VecDeque<Notification>>>,
    counters: Counters,
    /// The runtime `new` ran on, for `notify` calls made from outside any runtime.
    runtime: Option<tokio::runtime::Handle>,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
}

/// One queued notification. No `Debug`: it holds the auth token.
struct Notification {
    url: String,
    method: Method,
    params: Vec<(String, String)>,
    auth_token: String,
}

/// How one notification attempt ended.
enum Attempt {
    Answered(StatusCode),
    Retryable(FetchError),
    Fatal(FetchError),
}

impl Inner {
    fn lock_queues(&self) -> MutexGuard<'_, HashMap<String, VecDeque<Notification>>> {
        // Nothing panics while the lock is held, so a poisoned map is still consistent.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn fetch(
        &self,
        url: &str,
        method: Method,
        params: &[(String, String)],
        auth_token: &str,
    ) -> Result<String, FetchError> {
        let request = self.build(url, method, params, auth_token)?;
        let limit = self.config.max_xml_bytes;
        let after = self.config.fetch_timeout;
        let fetch = async {
            let mut response = self
                .client
                .execute(request)
                .await
                .map_err(transport_error)?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status {
                    status: status.as_u16(),
                });
            }
            if response
                .content_length()
                .is_some_and(|length| length > limit as u64)
            {
                return Err(FetchError::TooLarge { limit });
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
                if body.len() + chunk.len() > limit {
                    return Err(FetchError::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            String::from_utf8(body).map_err(FetchError::NotUtf8)
        };
        tokio::time::timeout(after, fetch)
            .await
            .unwrap_or(Err(FetchError::Timeout { after }))
    }

    /// One attempt to deliver a notification. The response body is ignored.
    async fn send(&self, job: &Notification) -> Attempt {
        let request = match self.build(&job.url, job.method, &job.params, &job.auth_token) {
            Ok(request) => request,
            Err(error) => return Attempt::Fatal(error),
        };
        let after = self.config.notify_timeout;
        match tokio::time::timeout(after, self.client.execute(request)).await {
            Ok(Ok(response)) if response.status().is_server_error() => {
                Attempt::Retryable(FetchError::Status {
                    status: response.status().as_u16(),
                })
            }
            Ok(Ok(response)) => Attempt::Answered(response.status()),
            Ok(Err(error)) if error.is_builder() => Attempt::Fatal(transport_error(error)),
            Ok(Err(error)) => Attempt::Retryable(transport_error(error)),
            Err(_) => Attempt::Retryable(FetchError::Timeout { after }),
        }
    }

    async fn deliver(&self, job: Notification) {
        let url = without_query(&job.url);
        let mut retry = 0;
        loop {
            let error = match self.send(&job).await {
                Attempt::Answered(status) if status.is_success() => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    info!(
                        url,
                        status = status.as_u16(),
                        attempts = retry + 1,
                        "notification delivered"
                    );
                    return;
                }
                Attempt::Answered(status) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        url,
                        status = status.as_u16(),
                        attempts = retry + 1,
                        "notification refused, not retried"
                    );
                    return;
                }
                Attempt::Fatal(error) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(url, error = %ErrorChain(&error), "notification not sent");
                    return;
                }
                Attempt::Retryable(error) => error,
            };
            if retry >= self.config.retries {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                warn!(
                    url,
                    error = %ErrorChain(&error),
                    attempts = retry + 1,
                    "notification failed, giving up"
                );
                return;
            }
            let delay = self
                .config
                .retry_base
                .saturating_mul(2u32.saturating_pow(retry));
            retry += 1;
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            warn!(url, error = %ErrorChain(&error), retry, ?delay, "notification failed, will retry");
            tokio::time::sleep(delay).await;
        }
    }

    /// The request for `url` with `params` merged, signed when `auth_token` is non-empty.
    fn build(
        &self,
        url: &str,
        method: Method,
        params: &[(String, String)],
        auth_token: &str,
    ) -> Result<reqwest::Request, FetchError> {
        let mut url = Url::parse(url).map_err(|e| FetchError::InvalidUrl {
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::InvalidUrl {
                reason: format!("scheme {:?} is not http or https", url.scheme()),
            });
        }
        url.set_fragment(None);
        let own: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let extra = params
            .iter()
            .filter(|(k, _)| !own.iter().any(|(o, _)| o == k));
        let (builder, body) = match method {
            Method::Get => {
                let extra: Vec<_> = extra.collect();
                if !extra.is_empty() {
                    url.query_pairs_mut()
                        .extend_pairs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                }
                (self.client.get(url), Vec::new())
            }
            Method::Post => {
                let body: Vec<(String, String)> = extra.chain(&own).cloned().collect();
                (self.client.post(url).form(&body), body)
            }
        };
        let mut request = builder.build().map_err(transport_error)?;
        if !auth_token.is_empty() {
            let nonce = new_nonce();
            let final_url = request.url().as_str();
            let v2 = sign_v2(auth_token, final_url, &nonce);
            let v3 = sign_v3(auth_token, final_url, method, &body, &nonce);
            let headers = request.headers_mut();
            for (names, value) in [
                (SIGNATURE_V2, v2),
                (NONCE_V2, nonce.clone()),
                (SIGNATURE_V3, v3),
                (NONCE_V3, nonce),
            ] {
                let value = HeaderValue::try_from(value)
                    .expect("base64 and digits are valid header values");
                for name in names {
                    headers.insert(HeaderName::from_static(name), value.clone());
                }
            }
        }
        Ok(request)
    }
}

/// Delivers `key`'s queue in order, then removes the key and exits.
async fn drain(inner: Arc<Inner>, key: String) {
    loop {
        let job = {
            let mut queues = inner.lock_queues();
            let Some(queue) = queues.get_mut(&key) else {
                return;
            };
            match queue.pop_front() {
                Some(job) => job,
                None => {
                    queues.remove(&key);
                    return;
                }
            }
        };
        inner.counters.pending.fetch_sub(1, Ordering::Relaxed);
        inner.deliver(job).await;
    }
}

fn transport_error(error: reqwest::Error) -> FetchError {
    // The URL may carry secrets in its query: keep it out of messages.
    let error = error.without_url();
    if error.is_builder() {
        FetchError::InvalidUrl {
            reason: ErrorChain(&error).to_string(),
        }
    } else {
        FetchError::Transport(error)
    }
}

/// `url` up to its query or fragment, for logs.
fn without_query(url: &str) -> &str {
    url.find(['?', '#']).map_or(url, |end| &url[..end])
}

/// The base URL as Python's `urlunparse((scheme, netloc, path, '', '', ''))` rebuilds it, and
/// the decoded query pairs as `parse_qs(keep_blank_values=True)` reads them.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let (text, query) = match Url::parse(url) {
        Ok(parsed) => {
            let query = parsed.query_pairs().into_owned().collect();
            (parsed.to_string(), query)
        }
        // Never requested, so only determinism matters: sign the raw base.
        Err(_) => (url.to_owned(), Vec::new()),
    };
    let mut base = without_query(&text).to_owned();
    // `urlparse` moves `;params` of the last path segment out of the path.
    let last_segment = base.rfind('/').map_or(0, |slash| slash + 1);
    if let Some(semicolon) = base[last_segment..].find(';') {
        base.truncate(last_segment + semicolon);
    }
    (base, query)
}

/// Pairs sorted by key, then value: Python's `sorted` on `str` and Rust's on `&str` agree
/// (both order by code point).
fn sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    let mut grouped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in pairs {
        grouped.entry(k).or_default().push(v);
    }
    grouped
        .into_iter()
        .flat_map(|(k, mut values)| {
            values.sort_unstable();
            values.into_iter().map(move |v| (k, v))
        })
        .collect()
}

fn sorted_query(pairs: &[(&str, &str)]) -> String {
    sorted(pairs.iter().copied())
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac_base64(key: &str, parts: &[&[u8]]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn new_nonce() -> String {
    let mut rng = rand::thread_rng();
    (0..20)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// Displays an error and its sources, `: `-separated, for logs.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers computed with plivo-python 4.63.0 (`plivo.utils.signature_v3` for V3;
    // `validate_signature`'s urlparse/urlunparse + HMAC-SHA256 for V2).
    const TOKEN: &str = "MAZDQ1ZDFLNDAXOTHJMZ";
    const NONCE: &str = "05429567804466091622";

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn v2_signs_the_url_without_query_fragment_or_path_params() {
        let cases = [
            (
                "https://example.com/answer?x=1#frag",
                "Y2nrvsNQ9Y6YidcrWiraT6ZCiYBNrv4B6CDr/A/oDNY=",
            ),
            (
                "https://example.com/a/b;jsessionid=1?x=1",
                "hxtKsXVNKCyw6Uuns5wQuoeIDK5fyiUFZ0HWaK3XUi0=",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(sign_v2(TOKEN, url, NONCE), expected, "{url}");
        }
    }

    #[test]
    fn v3_matches_the_sdk_for_get_and_post_shapes() {
        let cases = [
            (
                Method::Get,
                "https://example.com/cb?b=2&a=1&a=0&name=Jo+%26+Co%3D",
                vec![],
                "xoSU6TUWkstrh5fjLZZvc6Cjy41/otOw+fElEomXcr8=",
            ),
            (
                Method::Get,
                "https://example.com/cb?b=2",
                pairs(&[("b", "ignored"), ("c", "3")]),
                "llIwoo5f75AOBviAIdotAz9U13V8j6akZnvYENyclaw=",
            ),
            (
                Method::Post,
                "https://example.com/cb?z=1",
                pairs(&[
                    ("CallUUID", "abc"),
                    ("From", "+1 555"),
                    ("Empty", ""),
                    ("Name", "Zoë & Co"),
                ]),
                "G21MqGp5oyljvPimxHVO2mOCm8xqtlShrPKWy30YU00=",
            ),
            (
                Method::Post,
                "https://example.com/cb",
                vec![],
                "jWRNDtXjJ9RL1UUiHNZ7p+BDArnYDr9cMTSBqbWZBDA=",
            ),
            (
                Method::Post,
                "https://example.com/cb",
                pairs(&[("b", "2"), ("a", "1")]),
                "hl7JHCzzbgicGiEVxrQ+hkZrgu86oA8g2/iCwtvX3RA=",
            ),
            (
                Method::Post,
                "https://example.com/cb?z=1",
                vec![],
                "ZzTRVsjKHTUyoJf5q+8f7rGbfLghoV5z3khjeqhheaU=",
            ),
        ];
        for (method, url, params, expected) in cases {
            assert_eq!(
                sign_v3(TOKEN, url, method, &params, NONCE),
                expected,
                "{method:?} {url} {params:?}"
            );
        }
    }

    #[test]
    fn get_signature_is_the_same_for_configured_url_with_params_and_final_url() {
        let params = pairs(&[("CallUUID", "abc"), ("From", "+1 555")]);
        let configured = sign_v3(TOKEN, "http://h/cb?x=1", Method::Get, &params, NONCE);
        let final_url = "http://h/cb?x=1&CallUUID=abc&From=%2B1+555";
        assert_eq!(
            configured,
            sign_v3(TOKEN, final_url, Method::Get, &[], NONCE)
        );
        assert_eq!(
            configured,
            sign_v3(TOKEN, final_url, Method::Get, &params, NONCE)
        );
    }

    #[test]
    fn nonce_is_twenty_random_digits() {
        let a = new_nonce();
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|b| b.is_ascii_digit()), "{a}");
        assert_ne!(a, new_nonce());
    }

    #[tokio::test]
    async fn url_query_wins_over_a_parameter_of_the_same_name() {
        let hooks = Webhooks::new(WebhookConfig::default());
        let params = pairs(&[("shared", "param"), ("a", "1 2")]);
        let get = hooks
            .inner
            .build("http://h/cb?shared=url#frag", Method::Get, &params, "")
            .expect("valid URL");
        assert_eq!(get.url().as_str(), "http://h/cb?shared=url&a=1+2");
        let post = hooks
            .inner
            .build("http://h/cb?shared=url", Method::Post, &params, "")
            .expect("valid URL");
        assert_eq!(post.url().as_str(), "http://h/cb?shared=url");
        let body = post.body().and_then(|b| b.as_bytes()).expect("form body");
        assert_eq!(body, b"a=1+2&shared=url");
    }

    #[tokio::test]
    async fn unsigned_without_token_and_never_sends_the_token() {
        let hooks = Webhooks::new(WebhookConfig::default());
        let unsigned = hooks
            .inner
            .build("http://h/cb", Method::Post, &[], "")
            .expect("valid URL");
        let names: Vec<&str> = unsigned.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type"]);
        let signed = hooks
            .inner
            .build("http://h/cb", Method::Post, &[], "secret-token")
            .expect("valid URL");
        let signatures: Vec<_> = signed
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-"))
            .collect();
        assert_eq!(signatures.len(), 8, "{:?}", signed.headers());
        for (name, value) in signed.headers() {
            assert!(
                !value.as_bytes().windows(6).any(|w| w == b"secret"),
                "{name}"
            );
        }
    }

    #[test]
    fn non_http_urls_are_refused() {
        let hooks = Webhooks::new(WebhookConfig::default());
        for url in ["file:///etc/passwd", "not a url"] {
            let error = hooks
                .inner
                .build(url, Method::Get, &[], "")
                .expect_err("refused");
            assert!(matches!(error, FetchError::InvalidUrl { .. }), "{error}");
        }
    }
}
