//! Logs: `[log] format = "json"` writes one JSON object per line carrying the fields of the
//! spans it is in (a call's `call_uuid` and `call_id`, a conference's `room`); and even at
//! `RUST_LOG=debug` no secret reaches the log: not the accounts' tokens, not an HTTP Basic
//! credential (right or wrong), not the admin token, not the webhook signatures, not a SIP
//! password nor a digest answer.

mod common;

use std::time::Duration;

use common::app::App;
use common::rest::{http_request, Credentials};
use common::sipp::Sipp;
use common::{toml_account, wait_until, Call, Engine, EngineOptions, Source};

const ACCOUNT: &str = "MALOG0000000000000A";
const TOKEN: &str = "tok-Zq8LEAKCHECK-account";
const WRONG_TOKEN: &str = "tok-Zq8LEAKCHECK-wrong";
const ADMIN_TOKEN: &str = "tok-Zq8LEAKCHECK-admin";

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn json_logs_carry_span_fields_and_no_secret_even_at_debug() {
    let app = App::start();
    app.xml(
        "/answer",
        "<Response><Conference enterSound=\"\" callbackUrl=\"{base}/conf\">logged</Conference></Response>",
    );
    app.respond("/conf", 200, "text/plain", "ok");
    let toml = format!(
        "[log]\nformat = 'json'\n[admin]\ntoken = '{ADMIN_TOKEN}'\n[calls]\nanswer_url = '{}'\n{}",
        app.url("/answer"),
        toml_account(ACCOUNT, TOKEN, &[], &[])
    );
    let engine = Engine::start_with_config(
        &toml,
        EngineOptions {
            rust_log: Some("debug".into()),
            ..EngineOptions::default()
        },
    );

    // REST with each kind of credential, a wrong one, and the admin API.
    let list = format!("/v1/Account/{ACCOUNT}/Conference/");
    for (auth, expected) in [
        (Credentials::Basic(ACCOUNT, TOKEN), 200),
        (Credentials::XAuth(ACCOUNT, TOKEN), 200),
        (Credentials::Basic(ACCOUNT, WRONG_TOKEN), 401),
        (Credentials::XAuth(ACCOUNT, WRONG_TOKEN), 401),
    ] {
        let reply = http_request(engine.http, "GET", &list, auth, &[], None).expect("REST");
        assert_eq!(reply.status, expected, "{auth:?}: {reply}");
    }
    let wrong_admin = format!("Bearer {WRONG_TOKEN}");
    let status = http_request(
        engine.http,
        "GET",
        "/admin/drain",
        Credentials::None,
        &[("Authorization", &wrong_admin)],
        None,
    )
    .expect("admin");
    assert_eq!(status.status, 401, "{status}");
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let status = http_request(
        engine.http,
        "GET",
        "/admin/drain",
        Credentials::None,
        &[("Authorization", &admin)],
        None,
    )
    .expect("admin");
    assert_eq!(status.status, 200, "{status}");

    // A call through a signed XML flow into a conference, with a signed callback.
    let mut call = Call::dial(engine.sip, "logged", Source::tone(440.0));
    assert!(
        wait_until(Duration::from_secs(5), || !app
            .requests_to("/conf")
            .is_empty()),
        "the conference callback came\n{}",
        engine.logs()
    );
    let rest_call = http_request(
        engine.http,
        "POST",
        &format!("/v1/Account/{ACCOUNT}/Conference/logged/Member/all/Mute/"),
        Credentials::Basic(ACCOUNT, TOKEN),
        &[],
        None,
    )
    .expect("mute");
    assert!(rest_call.status < 300, "{rest_call}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(call.hangup().expect("BYE"), 200);
    std::thread::sleep(Duration::from_millis(500));

    let log = std::fs::read_to_string(engine.dir().join("chorus.stderr.log")).expect("the log");
    // What must never appear: the secrets, and what a request carried that derives from them.
    let mut secrets: Vec<String> = [TOKEN, WRONG_TOKEN, ADMIN_TOKEN]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for token in [TOKEN, WRONG_TOKEN] {
        secrets.push(base64(format!("{ACCOUNT}:{token}").as_bytes()));
    }
    let signed = app.requests();
    assert!(!signed.is_empty());
    for request in &signed {
        for (name, value) in &request.headers {
            if name.contains("signature") && value.len() > 8 {
                secrets.push(value.clone());
            }
        }
    }
    assert!(
        secrets.len() > 5,
        "the webhooks were signed: {:?}",
        signed[0].headers
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log contains the secret {secret:?}:\n{log}"
        );
    }
    assert!(
        !log.contains("Zq8LEAKCHECK"),
        "a token fragment is in the log"
    );

    // Every line is one JSON object; the call's lines name the call, the room's the room.
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 10, "debug logs: {} lines", lines.len());
    for line in &lines {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"),
            "not a JSON log line: {line}"
        );
    }
    let call_id = call.call_id().to_owned();
    let in_call: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("\"call_uuid\":"))
        .collect();
    assert!(!in_call.is_empty(), "no line carries call_uuid:\n{log}");
    assert!(
        in_call.iter().all(|l| l.contains(&call_id)),
        "call_uuid and call_id travel together"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"room\":\"logged\"") && l.contains("\"call_uuid\":")),
        "no line names both the conference room and the call:\n{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"matched_path\":") && l.contains("Conference")),
        "REST request lines carry their span"
    );
}

#[test]
fn sip_passwords_and_digest_answers_never_reach_the_log() {
    const SIP_USER: &str = "logged-alice";
    const SIP_PASSWORD: &str = "pw-Zq8LEAKCHECK-sip";
    // SIPp answers only the first challenge and knows no SHA-256: MD5 alone.
    let toml = format!(
        "[sip.auth]\nalgorithms = ['MD5']\n{}sip_username = '{SIP_USER}'\nsip_password = '{SIP_PASSWORD}'\n",
        toml_account(ACCOUNT, TOKEN, &[], &[])
    );
    let engine = Engine::start_with_config(
        &toml,
        EngineOptions {
            rust_log: Some("debug".into()),
            ..EngineOptions::default()
        },
    );
    let target = engine.sip.to_string();
    let scenario = common::workspace_dir()
        .join("tests/sipp/uac_digest.xml")
        .display()
        .to_string();
    for (password, calls) in [(SIP_PASSWORD, "2"), ("pw-Zq8LEAKCHECK-wrong", "1")] {
        let mut sipp = Sipp::new(&[
            "-sf",
            &scenario,
            "-s",
            "room1",
            &target,
            "-m",
            calls,
            "-au",
            SIP_USER,
            "-ap",
            password,
            "-timeout",
            "10s",
            "-timeout_error",
        ]);
        sipp.deadline = Duration::from_secs(30);
        let run = sipp.run();
        let completed = run.status.is_some_and(|s| s.code() == Some(0));
        assert_eq!(
            completed,
            password == SIP_PASSWORD,
            "only the right password completes its calls\n{}",
            run.report()
        );
    }
    let log = std::fs::read_to_string(engine.dir().join("chorus.stderr.log")).expect("the log");
    assert!(
        log.contains(SIP_USER) || log.contains("authenticat"),
        "auth was logged at all:\n{log}"
    );
    assert!(
        !log.contains("Zq8LEAKCHECK"),
        "a password is in the log:\n{log}"
    );
    let lower = log.to_ascii_lowercase();
    for leak in ["response=", "authorization:", "proxy-authorization"] {
        assert!(!lower.contains(leak), "{leak} in the log:\n{log}");
    }
}
