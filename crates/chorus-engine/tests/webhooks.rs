//! Outgoing webhooks against real receivers on 127.0.0.1: parameter encoding, per-key order,
//! retries, isolation from dead receivers, XML fetch limits, and signatures validated by the
//! official Python SDKs (plivo-python and vobiz-python).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chorus_engine::webhooks::{
    sign_v2, sign_v3, FetchError, Method, WebhookConfig, WebhookStats, Webhooks,
};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

const TOKEN: &str = "MAZDQ1ZDFLNDAXOTHJMZ-test-token";
const XML: &str = "<Response><Speak>hello</Speak></Response>";

#[derive(Clone, Debug)]
struct Received {
    method: String,
    /// Origin form: path and query.
    uri: String,
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .to_str()
            .expect("ASCII header")
    }

    fn query(&self) -> &str {
        self.uri.split_once('?').map_or("", |(_, q)| q)
    }
}

struct ReceiverState {
    requests: Mutex<Vec<Received>>,
    hits: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    released: watch::Sender<bool>,
}

/// An HTTP server that records every request and answers by path (see `answer`).
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start() -> Self {
        let state = Arc::new(ReceiverState {
            requests: Mutex::new(Vec::new()),
            hits: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            released: watch::channel(false).0,
        });
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().expect("lock").clone()
    }

    fn requests_to(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.uri.split('?').next() == Some(path))
            .collect()
    }
}

async fn answer(State(state): State<Arc<ReceiverState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("request body");
    let path = parts.uri.path().to_owned();
    state.requests.lock().expect("lock").push(Received {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let hit = {
        let mut hits = state.hits.lock().expect("lock");
        let count = hits.entry(path.clone()).or_insert(0);
        *count += 1;
        *count
    };
    match path.as_str() {
        "/xml" => ([(header::CONTENT_TYPE, "application/xml")], XML).into_response(),
        "/ordered" => {
            let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            state.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let pause = rand::thread_rng().gen_range(0..=20);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            StatusCode::OK.into_response()
        }
        "/flaky" if hit <= 2 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "/always500" | "/error" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "/missing" => StatusCode::NOT_FOUND.into_response(),
        "/big" => "x".repeat(150 * 1024).into_response(),
        "/latin1" => vec![b'<', 0xe9, b'>'].into_response(),
        "/blocked" => {
            let mut released = state.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
            StatusCode::OK.into_response()
        }
        "/release" => {
            state.released.send_replace(true);
            StatusCode::OK.into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}

fn config() -> WebhookConfig {
    WebhookConfig {
        user_agent: "Chorus/test".to_owned(),
        fetch_timeout: Duration::from_secs(5),
        notify_timeout: Duration::from_secs(5),
        retries: 3,
        retry_base: Duration::from_millis(10),
        ..WebhookConfig::default()
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn decode_form(text: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{text}"))
        .expect("form as query")
        .query_pairs()
        .into_owned()
        .collect()
}

/// Polls `done` until it holds; fails the test after `limit`.
async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_for_outcomes(hooks: &Webhooks, finished: u64) -> WebhookStats {
    wait_for("notification outcomes", Duration::from_secs(10), || {
        let s = hooks.stats();
        s.delivered + s.failed >= finished
    })
    .await;
    hooks.stats()
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr")
}

/// A server that accepts connections and never answers.
async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A server that answers 200 with a chunked body of `size` bytes and no Content-Length.
async fn chunked_server(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
                            Content-Type: application/xml\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("2000\r\n{}\r\n", "x".repeat(0x2000));
                for _ in 0..size / 0x2000 {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    addr
}

// ---- parameters and headers ----

#[tokio::test]
async fn post_form_body_holds_params_and_the_urls_own_query() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    let params = pairs(&[
        ("CallUUID", "c0ffee"),
        ("Name", "Zoë & Co = 1+1"),
        ("shared", "from-params"),
    ]);
    let body = hooks
        .fetch_xml(
            &receiver.url("/xml?fixed=1&shared=from-url"),
            Method::Post,
            &params,
            "",
        )
        .await
        .expect("fetch");
    assert_eq!(body, XML);

    let [request] = &receiver.requests()[..] else {
        panic!("expected one request: {:?}", receiver.requests());
    };
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/xml?fixed=1&shared=from-url");
    assert_eq!(
        request.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(request.header("user-agent"), "Chorus/test");
    let mut form = decode_form(&request.body);
    form.sort();
    assert_eq!(
        form,
        pairs(&[
            ("CallUUID", "c0ffee"),
            ("Name", "Zoë & Co = 1+1"),
            ("fixed", "1"),
            ("shared", "from-url"),
        ])
    );
    assert!(
        !request
            .headers
            .keys()
            .any(|k| k.as_str().contains("signature")),
        "no token, no signature: {:?}",
        request.headers
    );
}

#[tokio::test]
async fn get_query_keeps_the_urls_own_query_and_appends_the_params() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    let params = pairs(&[
        ("CallUUID", "c0ffee"),
        ("Name", "Zoë & Co = 1+1"),
        ("shared", "from-params"),
    ]);
    hooks
        .fetch_xml(
            &receiver.url("/xml?fixed=1&shared=from-url"),
            Method::Get,
            &params,
            TOKEN,
        )
        .await
        .expect("fetch");

    let [request] = &receiver.requests()[..] else {
        panic!("expected one request: {:?}", receiver.requests());
    };
    assert_eq!(request.method, "GET");
    assert!(request.body.is_empty());
    assert!(
        request.query().starts_with("fixed=1&shared=from-url&"),
        "{}",
        request.uri
    );
    assert_eq!(
        decode_form(request.query()),
        pairs(&[
            ("fixed", "1"),
            ("shared", "from-url"),
            ("CallUUID", "c0ffee"),
            ("Name", "Zoë & Co = 1+1"),
        ])
    );
    assert_eq!(request.header("user-agent"), "Chorus/test");
    for (name, value) in &request.headers {
        let value = value.to_str().unwrap_or_default();
        assert!(!value.contains(TOKEN), "{name} carries the auth token");
    }
}

// ---- notification order and isolation ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_with_one_key_arrive_in_order_one_at_a_time() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    for seq in 0..50 {
        hooks.notify(
            "conference-1",
            &receiver.url("/ordered"),
            Method::Post,
            pairs(&[("seq", &seq.to_string())]),
            TOKEN,
        );
    }
    let stats = wait_for_outcomes(&hooks, 50).await;
    assert_eq!(stats.delivered, 50, "{stats:?}");
    assert_eq!(stats.pending, 0);

    let order: Vec<String> = receiver
        .requests_to("/ordered")
        .iter()
        .map(|r| decode_form(&r.body)[0].1.clone())
        .collect();
    let expected: Vec<String> = (0..50).map(|n: i32| n.to_string()).collect();
    assert_eq!(order, expected);
    assert_eq!(receiver.state.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_key_does_not_delay_another_key() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(WebhookConfig {
        notify_timeout: Duration::from_secs(30),
        ..config()
    });
    // Key A's receiver answers only once key B's notification has arrived: if A held up B,
    // neither would ever be delivered.
    hooks.notify("a", &receiver.url("/blocked"), Method::Post, vec![], "");
    hooks.notify("a", &receiver.url("/ok"), Method::Post, vec![], "");
    wait_for("key A's first request", Duration::from_secs(2), || {
        !receiver.requests().is_empty()
    })
    .await;
    hooks.notify("b", &receiver.url("/release"), Method::Post, vec![], "");
    let stats = wait_for_outcomes(&hooks, 3).await;
    assert_eq!(stats.delivered, 3, "{stats:?}");
    let paths: Vec<String> = receiver.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(paths, ["/blocked", "/release", "/ok"]);
}

#[tokio::test]
async fn a_dead_receiver_does_not_block_the_caller() {
    let receiver = Receiver::start().await;
    let dead = format!("http://{}/events", closed_port().await);
    let hooks = Webhooks::new(WebhookConfig {
        retries: 2,
        ..config()
    });
    let mut slowest = Duration::ZERO;
    for n in 0..200 {
        let start = Instant::now();
        hooks.notify(
            &format!("conference-{}", n % 4),
            &dead,
            Method::Post,
            vec![],
            TOKEN,
        );
        slowest = slowest.max(start.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(20),
        "notify took {slowest:?}"
    );
    hooks.notify("live", &receiver.url("/ok"), Method::Post, vec![], "");
    wait_for("the live key's delivery", Duration::from_secs(2), || {
        hooks.stats().delivered == 1
    })
    .await;

    let stats = wait_for_outcomes(&hooks, 201).await;
    assert_eq!(stats.failed, 200, "{stats:?}");
    assert_eq!(stats.retried, 400, "two retries each: {stats:?}");
}

// ---- retries ----

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    hooks.notify("k", &receiver.url("/flaky"), Method::Post, vec![], TOKEN);
    let stats = wait_for_outcomes(&hooks, 1).await;
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried),
        (1, 0, 2),
        "{stats:?}"
    );
    let attempts = receiver.requests_to("/flaky");
    assert_eq!(attempts.len(), 3);
    let nonces: Vec<&str> = attempts
        .iter()
        .map(|r| r.header("x-plivo-signature-v2-nonce"))
        .collect();
    assert!(
        nonces[0] != nonces[1] && nonces[1] != nonces[2],
        "fresh nonce per attempt: {nonces:?}"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    hooks.notify("k", &receiver.url("/missing"), Method::Post, vec![], "");
    // A later notification on the same key: once it is delivered, the first is settled.
    hooks.notify("k", &receiver.url("/ok"), Method::Post, vec![], "");
    let stats = wait_for_outcomes(&hooks, 2).await;
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(receiver.requests_to("/missing").len(), 1);
}

#[tokio::test]
async fn retries_stop_after_the_configured_count() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    hooks.notify("k", &receiver.url("/always500"), Method::Get, vec![], "");
    let stats = wait_for_outcomes(&hooks, 1).await;
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried),
        (0, 1, 3),
        "{stats:?}"
    );
    assert_eq!(receiver.requests_to("/always500").len(), 4);
}

#[tokio::test]
async fn retry_backoff_doubles_from_the_base() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(WebhookConfig {
        retry_base: Duration::from_millis(100),
        ..config()
    });
    let start = Instant::now();
    hooks.notify("k", &receiver.url("/always500"), Method::Post, vec![], "");
    wait_for_outcomes(&hooks, 1).await;
    // Waits of 100 + 200 + 400 ms between the four attempts.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(WebhookConfig {
        max_pending_per_key: 5,
        notify_timeout: Duration::from_secs(30),
        ..config()
    });
    hooks.notify("k", &receiver.url("/blocked"), Method::Post, vec![], "");
    wait_for("the first request", Duration::from_secs(2), || {
        !receiver.requests().is_empty()
    })
    .await;
    for _ in 0..8 {
        hooks.notify("k", &receiver.url("/ok"), Method::Post, vec![], "");
    }
    let stats = hooks.stats();
    assert_eq!((stats.pending, stats.dropped), (5, 3), "{stats:?}");
    hooks.notify("other", &receiver.url("/release"), Method::Post, vec![], "");
    let stats = wait_for_outcomes(&hooks, 7).await;
    assert_eq!(stats.delivered, 7, "{stats:?}");
}

// ---- fetch_xml ----

#[tokio::test]
async fn fetch_returns_the_body_of_a_200() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    let body = hooks
        .fetch_xml(&receiver.url("/xml"), Method::Post, &[], TOKEN)
        .await
        .expect("fetch");
    assert_eq!(body, XML);
}

#[tokio::test]
async fn fetch_of_a_500_is_a_status_error() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    let error = hooks
        .fetch_xml(&receiver.url("/error"), Method::Post, &[], "")
        .await
        .expect_err("500");
    assert!(
        matches!(error, FetchError::Status { status: 500 }),
        "{error:?}"
    );
    assert!(error.to_string().contains("500"), "{error}");
    assert_eq!(
        receiver.requests_to("/error").len(),
        1,
        "fetches are not retried"
    );
}

#[tokio::test]
async fn fetch_of_a_body_over_the_limit_is_too_large() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    let error = hooks
        .fetch_xml(&receiver.url("/big"), Method::Get, &[], "")
        .await
        .expect_err("150 KB");
    assert!(
        matches!(error, FetchError::TooLarge { limit: 102_400 }),
        "{error:?}"
    );

    let chunked = chunked_server(150 * 1024).await;
    let error = hooks
        .fetch_xml(&format!("http://{chunked}/big"), Method::Get, &[], "")
        .await
        .expect_err("150 KB chunked");
    assert!(matches!(error, FetchError::TooLarge { .. }), "{error:?}");

    let just_fits = chunked_server(96 * 1024).await;
    let body = hooks
        .fetch_xml(&format!("http://{just_fits}/ok"), Method::Get, &[], "")
        .await
        .expect("96 KB is under the limit");
    assert_eq!(body.len(), 96 * 1024);
}

#[tokio::test]
async fn fetch_from_a_silent_server_times_out_on_time() {
    let silent = silent_server().await;
    let hooks = Webhooks::new(WebhookConfig {
        fetch_timeout: Duration::from_millis(300),
        ..config()
    });
    let start = Instant::now();
    let error = hooks
        .fetch_xml(&format!("http://{silent}/answer"), Method::Post, &[], "")
        .await
        .expect_err("no answer");
    let elapsed = start.elapsed();
    assert!(matches!(error, FetchError::Timeout { .. }), "{error:?}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn fetch_of_a_closed_port_is_a_transport_error() {
    let hooks = Webhooks::new(config());
    let dead = closed_port().await;
    let error = hooks
        .fetch_xml(&format!("http://{dead}/answer"), Method::Post, &[], "")
        .await
        .expect_err("refused");
    assert!(matches!(error, FetchError::Transport(_)), "{error:?}");
}

#[tokio::test]
async fn fetch_of_a_non_utf8_body_is_an_error() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    let error = hooks
        .fetch_xml(&receiver.url("/latin1"), Method::Get, &[], "")
        .await
        .expect_err("not UTF-8");
    assert!(matches!(error, FetchError::NotUtf8(_)), "{error:?}");
}

// ---- signatures, checked by the SDKs ----

/// The Python of the SDK virtualenv: `$CHORUS_SDK_PYTHON`, else `target/sdk-venv/bin/python`
/// under the workspace root. Fails the test when missing: it must never pass by not running.
fn sdk_python() -> PathBuf {
    let path = std::env::var_os("CHORUS_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/sdk-venv/bin/python")
        });
    assert!(
        path.is_file(),
        "the Python SDK environment is missing ({} does not exist): run scripts/bootstrap.sh, \
         which creates target/sdk-venv with the plivo and vobiz-python SDKs \
         (or point CHORUS_SDK_PYTHON at a python that has them)",
        path.display()
    );
    path
}

/// Runs `script` with `args` in the SDK Python and returns its stdout; fails on a non-zero exit.
fn python(script: &str, args: &[&str]) -> String {
    let python = sdk_python();
    let output = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Validates a received request the way a Plivo or Vobiz customer's server would: the full
/// URL it was called on, the signature headers, and the parameters it parsed (POST: the form,
/// as lists and flattened; GET: none, and the query as lists).
const VALIDATE: &str = r#"
import sys, urllib.parse
import plivo.utils, vobiz.utils
(method, url, body, token,
 p2, p2n, p3, p3n, v2, v2n, v3, v3n) = sys.argv[1:]
if method == "POST":
    lists = urllib.parse.parse_qs(body, keep_blank_values=True)
else:
    lists = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)
variants = {"lists": lists, "flat": {k: v[-1] for k, v in lists.items()}}
if method == "GET":
    variants["none"] = {}
results = {
    "plivo v2": plivo.utils.validate_signature(url, p2n, p2, token),
    "vobiz v2": vobiz.utils.validate_signature(url, v2n, v2, token),
}
for name, params in variants.items():
    results["plivo v3 " + name] = plivo.utils.validate_v3_signature(method, url, p3n, token, p3, dict(params))
    results["vobiz v3 " + name] = vobiz.utils.validate_v3_signature(method, url, v3n, token, v3, dict(params))
for name, ok in results.items():
    print(name, ok)
sys.exit(0 if all(results.values()) else 1)
"#;

fn assert_sdks_validate(receiver: &Receiver, request: &Received) {
    let url = format!("http://{}{}", receiver.addr, request.uri);
    let headers = [
        "x-plivo-signature-v2",
        "x-plivo-signature-v2-nonce",
        "x-plivo-signature-v3",
        "x-plivo-signature-v3-nonce",
        "x-vobiz-signature-v2",
        "x-vobiz-signature-v2-nonce",
        "x-vobiz-signature-v3",
        "x-vobiz-signature-v3-nonce",
    ]
    .map(|name| request.header(name));
    let nonce = headers[1];
    assert!(
        nonce.len() == 20 && nonce.bytes().all(|b| b.is_ascii_digit()),
        "{nonce}"
    );
    let mut args = vec![
        request.method.as_str(),
        url.as_str(),
        request.body.as_str(),
        TOKEN,
    ];
    args.extend(headers);
    let report = python(VALIDATE, &args);
    assert!(report.contains("plivo v3 lists True"), "{report}");
}

#[tokio::test]
async fn post_signatures_validate_with_both_sdks() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    let params = pairs(&[
        ("ConferenceAction", "enter"),
        ("ConferenceName", "Weekly Standup"),
        ("CallerName", "Zoë & Co = 1+1"),
        ("From", "+919876543210"),
        ("Empty", ""),
    ]);
    hooks.notify(
        "conf",
        &receiver.url("/events?tenant=a%20b&x=1"),
        Method::Post,
        params.clone(),
        TOKEN,
    );
    hooks.notify(
        "conf",
        &receiver.url("/events"),
        Method::Post,
        vec![],
        TOKEN,
    );
    hooks.notify(
        "conf",
        &receiver.url("/events"),
        Method::Post,
        params,
        TOKEN,
    );
    hooks.notify(
        "conf",
        &receiver.url("/events?only=query"),
        Method::Post,
        vec![],
        TOKEN,
    );
    wait_for_outcomes(&hooks, 4).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert_sdks_validate(&receiver, request);
    }
}

#[tokio::test]
async fn get_signatures_validate_with_both_sdks() {
    let receiver = Receiver::start().await;
    let hooks = Webhooks::new(config());
    // ASCII only: the SDKs' V3 validators parse the URL as bytes and raise on a non-ASCII
    // query value.
    let params = pairs(&[
        ("CallUUID", "c0ffee"),
        ("CallerName", "Jo & Co = 1+1"),
        ("From", "+919876543210"),
        ("b", "2"),
    ]);
    hooks
        .fetch_xml(
            &receiver.url("/xml?b=1&a=0&a=%2F"),
            Method::Get,
            &params,
            TOKEN,
        )
        .await
        .expect("fetch");
    hooks
        .fetch_xml(&receiver.url("/xml"), Method::Get, &[], TOKEN)
        .await
        .expect("fetch");
    hooks
        .fetch_xml(&receiver.url("/xml"), Method::Get, &params, TOKEN)
        .await
        .expect("fetch");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_sdks_validate(&receiver, request);
    }
}

/// Computes signatures with the SDK's own code: `validate_signature`'s URL handling for V2,
/// `signature_v3.construct_{get,post}_url` and `get_signature_v3` for V3. The cases are
/// JSON-free lines of tab-separated `version method url nonce k=v...`.
const COMPUTE: &str = r#"
import sys, hmac, hashlib, base64
from urllib.parse import urlparse, urlunparse
from plivo.utils import signature_v3 as s3
token = sys.argv[1]
for line in sys.stdin.read().splitlines():
    version, method, url, nonce, *kvs = line.split("\t")
    params = dict(kv.split("=", 1) for kv in kvs)
    if version == "v2":
        p = urlparse(url)
        base = urlunparse((p.scheme, p.netloc, p.path, "", "", ""))
        sig = base64.b64encode(hmac.new(token.encode(), (base + nonce).encode(), hashlib.sha256).digest()).decode()
    else:
        signed = (s3.construct_get_url(url, params) if method == "GET" else s3.construct_post_url(url, params)).decode()
        sig = s3.get_signature_v3(token.encode(), signed, nonce.encode()).decode()
    print(sig)
"#;

#[test]
fn sign_v2_and_v3_equal_the_sdk_computation() {
    /// Signature version, method, URL, parameters.
    type Case = (&'static str, Method, &'static str, Vec<(String, String)>);
    let cases: Vec<Case> = vec![
        ("v2", Method::Post, "https://example.com/answer", vec![]),
        (
            "v2",
            Method::Post,
            "https://example.com/a/b?x=1&y=2#top",
            vec![],
        ),
        (
            "v2",
            Method::Get,
            "http://127.0.0.1:8080/cb;jsession=1?x=1",
            vec![],
        ),
        ("v3", Method::Get, "https://example.com/cb", vec![]),
        (
            "v3",
            Method::Get,
            "https://example.com/cb?z=9&a=1&a=0",
            vec![],
        ),
        (
            "v3",
            Method::Get,
            "https://example.com/cb?z=9",
            pairs(&[("z", "ignored"), ("From", "+1 555"), ("E", "")]),
        ),
        ("v3", Method::Post, "https://example.com/cb", vec![]),
        (
            "v3",
            Method::Post,
            "https://example.com/cb?q=1&p=%2B",
            vec![],
        ),
        (
            "v3",
            Method::Post,
            "https://example.com/cb",
            pairs(&[("To", "sip:bob@example.com"), ("From", "+1 555")]),
        ),
        (
            "v3",
            Method::Post,
            "http://127.0.0.1:9/cb?q=1",
            pairs(&[("Name", "Zoë & Co = 1+1"), ("Empty", ""), ("A", "x")]),
        ),
    ];
    let nonces = ["00000000000000000000", "31415926535897932384"];
    let mut input = String::new();
    let mut ours = Vec::new();
    for (version, method, url, params) in &cases {
        for nonce in nonces {
            let verb = if *method == Method::Get {
                "GET"
            } else {
                "POST"
            };
            input.push_str(&format!("{version}\t{verb}\t{url}\t{nonce}"));
            for (k, v) in params {
                input.push_str(&format!("\t{k}={v}"));
            }
            input.push('\n');
            ours.push(match *version {
                "v2" => sign_v2(TOKEN, url, nonce),
                _ => sign_v3(TOKEN, url, *method, params, nonce),
            });
        }
    }
    let theirs = python_with_stdin(COMPUTE, &[TOKEN], &input);
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(theirs.len(), ours.len(), "{theirs:?}");
    for ((line, ours), theirs) in input.lines().zip(&ours).zip(theirs) {
        assert_eq!(ours, theirs, "case {line:?}");
    }
}

fn python_with_stdin(script: &str, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let python = sdk_python();
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write to python");
    let output = child.wait_with_output().expect("python output");
    assert!(
        output.status.success(),
        "python failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
