//! Delivery of async-mode results (API.md §6): a form-encoded POST, or a GET with the fields in
//! the query string, to the request's `callback_url`. The router talks to a [`CallbackSink`], so
//! tests can record deliveries instead of sending them; [`HttpCallbackSink`] is the real one.

use std::time::Duration;

use crate::control::BoxFuture;

/// `callback_method` (default POST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackMethod {
    Get,
    Post,
}

impl CallbackMethod {
    /// `GET` or `POST`, any case.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("POST") {
            Some(Self::Post)
        } else if text.eq_ignore_ascii_case("GET") {
            Some(Self::Get)
        } else {
            None
        }
    }
}

/// One callback to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRequest {
    pub url: String,
    pub method: CallbackMethod,
    /// Form fields, in order.
    pub fields: Vec<(String, String)>,
}

/// Where async-mode results go. `deliver` owns its retries and its logging; its future runs
/// in a spawned task, so it may take as long as it needs.
pub trait CallbackSink: Send + Sync + 'static {
    fn deliver(&self, request: CallbackRequest) -> BoxFuture<'static, ()>;
}

/// Sends callbacks over HTTP(S): 10 s timeout per attempt, one retry when the connection
/// could not be made. Failures are logged, never returned.
#[derive(Clone, Debug)]
pub struct HttpCallbackSink {
    client: reqwest::Client,
}

impl HttpCallbackSink {
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Self::TIMEOUT)
            .user_agent(concat!("chorus/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    async fn send(client: reqwest::Client, request: CallbackRequest) {
        // The URL may carry credentials (userinfo, query tokens): log only where it goes.
        let target = reqwest::Url::parse(&request.url)
            .map(|u| {
                format!(
                    "{}://{}{}",
                    u.scheme(),
                    u.host_str().unwrap_or(""),
                    u.path()
                )
            })
            .unwrap_or_else(|_| "<unparsable url>".to_owned());
        for attempt in 1..=2 {
            let builder = match request.method {
                CallbackMethod::Post => client.post(&request.url).form(&request.fields),
                CallbackMethod::Get => client.get(&request.url).query(&request.fields),
            };
            match builder.send().await {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(%target, status = response.status().as_u16(), "callback delivered");
                    return;
                }
                Ok(response) => {
                    tracing::warn!(%target, status = response.status().as_u16(), "callback refused");
                    return;
                }
                Err(e) if e.is_connect() && attempt == 1 => {
                    tracing::debug!(%target, error = %e.without_url(), "callback connect failed; retrying");
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e.without_url(), "callback failed");
                    return;
                }
            }
        }
    }
}

impl CallbackSink for HttpCallbackSink {
    fn deliver(&self, request: CallbackRequest) -> BoxFuture<'static, ()> {
        Box::pin(Self::send(self.client.clone(), request))
    }
}

/// Used only when the HTTP client cannot be built: says so for every callback it drops.
pub(crate) struct DroppingSink;

impl CallbackSink for DroppingSink {
    fn deliver(&self, _request: CallbackRequest) -> BoxFuture<'static, ()> {
        Box::pin(async {
            tracing::error!("callback dropped: the HTTP client could not be built");
        })
    }
}
