//! SIP security end to end, against the real engine binary: digest authentication of
//! accounts with SIP users (SIPp and our own UA), scanners, allow-lists, per-source rate
//! limits with bans, message size limits, and the `chorus_sip_*` metrics that count them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use chorus_sip::auth::authorization;
use common::sipp::{Sipp, SippRun};
use common::ua::{header, header_values, param, Ua};
use common::{toml_account, wait_until, Engine, EngineOptions, Transport};

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";

/// One account whose INVITEs must authenticate as `alice`, plus security settings.
fn secured_config(extra: &str) -> String {
    format!(
        "{extra}\n{}sip_username = '{USER}'\nsip_password = '{PASSWORD}'\n",
        toml_account(common::ACCOUNT, common::TOKEN, &[], &[])
    )
}

fn digest_scenario() -> PathBuf {
    common::workspace_dir().join("tests/sipp/uac_digest.xml")
}

fn metric(engine: &Engine, series: &str) -> f64 {
    let (status, text) = engine.http_get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
}

fn assert_calls(run: &SippRun, successful: u64, failed: u64) {
    let stats = run
        .stats
        .unwrap_or_else(|| panic!("no SIPp statistics\n{}", run.report()));
    assert_eq!(
        (stats.successful, stats.failed),
        (successful, failed),
        "successful/failed calls\n{}",
        run.report()
    );
}

/// Sends `msg` from `socket` to the engine and waits up to `wait` for a reply.
fn exchange(socket: &UdpSocket, to: SocketAddr, msg: &str, wait: Duration) -> Option<String> {
    socket.send_to(msg.as_bytes(), to).expect("send");
    receive(socket, wait)
}

fn receive(socket: &UdpSocket, wait: Duration) -> Option<String> {
    socket
        .set_read_timeout(Some(wait))
        .expect("set a read timeout");
    let mut buf = [0u8; 65_536];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

/// Whether the engine closes `tcp` within `within` (a timeout means it stayed open).
fn closed_by_engine(tcp: &mut TcpStream, within: Duration) -> bool {
    tcp.set_read_timeout(Some(within))
        .expect("set a read timeout");
    let mut buf = [0u8; 512];
    match tcp.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

fn udp_from(ip: &str) -> UdpSocket {
    UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"))
}

/// A minimal out-of-dialog request from `socket`'s address.
fn raw_request(
    method: &str,
    socket: &UdpSocket,
    engine: SocketAddr,
    user_agent: &str,
    extra: &str,
) -> String {
    let local = socket.local_addr().expect("local addr");
    let n: u64 = rand::random();
    format!(
        "{method} sip:room1@{engine} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{n:x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag={n:x}\r\n\
         To: <sip:room1@{engine}>\r\n\
         Call-ID: {n:x}@probe\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:probe@{local}>\r\n\
         User-Agent: {user_agent}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn status_of(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// Our UA's side of one INVITE attempt into `room`.
struct Attempt<'a> {
    ua: &'a Ua,
    engine: SocketAddr,
    room: &'a str,
    call_id: String,
    from: String,
}

impl<'a> Attempt<'a> {
    fn new(ua: &'a Ua, engine: SocketAddr, room: &'a str) -> Self {
        Attempt {
            ua,
            engine,
            room,
            call_id: format!("{:x}@sip-security", rand::random::<u64>()),
            from: format!("<sip:{}@{}>;tag={}", ua.user, ua.local, Ua::new_tag()),
        }
    }

    fn uri(&self) -> String {
        format!("sip:{}@{}", self.room, self.engine)
    }

    /// INVITE with CSeq `cseq` and the given Authorization (if any); the final response is
    /// ACKed when it is not a 2xx. Returns it.
    fn invite(&self, cseq: u32, authorization: Option<&str>) -> rsip::Response {
        let branch = Ua::new_branch();
        let uri = self.uri();
        let extra: Vec<String> = authorization
            .map(|a| vec![format!("Authorization: {a}")])
            .unwrap_or_default();
        // Media goes nowhere: these calls test signalling only.
        let sdp = "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let invite = self.ua.format_request(
            "INVITE",
            &uri,
            &branch,
            &self.from,
            &format!("<{uri}>"),
            &self.call_id,
            cseq,
            &extra,
            Some(("application/sdp", sdp)),
        );
        let response = self
            .ua
            .transact(&invite, &branch, Duration::from_secs(8))
            .expect("a final response to the INVITE");
        if response.status_code.code() >= 300 {
            let to = header(&response.headers, "To").expect("To");
            let ack = self.ua.format_request(
                "ACK",
                &uri,
                &branch,
                &self.from,
                &to,
                &self.call_id,
                cseq,
                &[],
                None,
            );
            self.ua.send_raw(ack.as_bytes()).expect("send ACK");
        }
        response
    }

    /// ACKs a 200 (CSeq `cseq`) and hangs up with BYE; returns the BYE's status.
    fn ack_and_bye(&self, ok: &rsip::Response, cseq: u32) -> u16 {
        let to = header(&ok.headers, "To").expect("To");
        let target = header(&ok.headers, "Contact")
            .map(|c| common::ua::uri_of(&c))
            .expect("Contact");
        let ack = self.ua.format_request(
            "ACK",
            &target,
            &Ua::new_branch(),
            &self.from,
            &to,
            &self.call_id,
            cseq,
            &[],
            None,
        );
        self.ua.send_raw(ack.as_bytes()).expect("send ACK");
        let branch = Ua::new_branch();
        let bye = self.ua.format_request(
            "BYE",
            &target,
            &branch,
            &self.from,
            &to,
            &self.call_id,
            cseq + 1,
            &[],
            None,
        );
        self.ua
            .transact(&bye, &branch, Duration::from_secs(8))
            .expect("a response to the BYE")
            .status_code
            .code()
    }
}

fn challenges(response: &rsip::Response) -> Vec<String> {
    header_values(&response.headers, "WWW-Authenticate")
}

fn nonce_of(challenge: &str) -> String {
    let start = challenge.find("nonce=\"").expect("a nonce") + 7;
    let len = challenge[start..].find('"').expect("closing quote");
    challenge[start..start + len].to_string()
}

#[test]
fn sipp_with_credentials_completes_calls_and_with_a_wrong_password_makes_none() {
    // SIPp 3.6 answers only the first challenge and knows no SHA-256: offer MD5 alone, as
    // an operator would for such phones.
    let engine = Engine::start_with_config(
        &secured_config("[sip.auth]\nalgorithms = ['MD5']\n"),
        EngineOptions {
            rtp_ports: 60,
            ..EngineOptions::default()
        },
    );
    let target = engine.sip.to_string();
    let scenario = digest_scenario().display().to_string();
    for transport in ["u1", "t1"] {
        let run = Sipp::new(&[
            "-sf",
            &scenario,
            "-s",
            "room1",
            &target,
            "-t",
            transport,
            "-m",
            "10",
            "-r",
            "10",
            "-au",
            USER,
            "-ap",
            PASSWORD,
            "-timeout",
            "30s",
            "-timeout_error",
        ])
        .run();
        assert!(
            run.status.is_some_and(|s| s.code() == Some(0)),
            "SIPp ({transport}) did not complete every call\n{}\n{}",
            run.report(),
            engine.logs()
        );
        assert_calls(&run, 10, 0);
    }
    assert_eq!(
        metric(&engine, "chorus_sip_auth_total{outcome=\"ok\"}"),
        20.0
    );
    assert_eq!(
        metric(&engine, "chorus_sip_auth_total{outcome=\"missing\"}"),
        20.0
    );

    let mut wrong = Sipp::new(&[
        "-sf",
        &scenario,
        "-s",
        "room2",
        &target,
        "-m",
        "1",
        "-au",
        USER,
        "-ap",
        "guess",
        "-timeout",
        "10s",
        "-timeout_error",
    ]);
    wrong.deadline = Duration::from_secs(30);
    let run = wrong.run();
    assert!(
        run.status.is_none_or(|s| s.code() != Some(0)),
        "a wrong password must not complete a call\n{}",
        run.report()
    );
    assert_eq!(
        metric(&engine, "chorus_sip_auth_total{outcome=\"failed\"}"),
        1.0
    );
    assert_eq!(
        metric(&engine, "chorus_sip_auth_total{outcome=\"ok\"}"),
        20.0
    );
    assert!(!engine.live_rooms().contains(&"room2".to_string()));
}

#[test]
fn sha256_is_offered_first_and_admits_the_right_password_after_a_challenge() {
    let engine = Engine::start_with_config(&secured_config(""), EngineOptions::default());
    let ua = Ua::new(engine.sip, Transport::Udp).expect("UA");
    let attempt = Attempt::new(&ua, engine.sip, "room-sha");
    let challenged = attempt.invite(1, None);
    assert_eq!(challenged.status_code.code(), 401, "{challenged}");
    let offered = challenges(&challenged);
    assert_eq!(offered.len(), 2, "{challenged}");
    assert!(offered[0].contains("algorithm=SHA-256"), "{}", offered[0]);
    assert!(offered[1].contains("algorithm=MD5"), "{}", offered[1]);
    for c in &offered {
        assert!(c.contains("qop=\"auth\"") && c.contains("opaque=\""), "{c}");
    }
    assert_eq!(engine.live_rooms(), Vec::<String>::new(), "no call yet");

    let uri = attempt.uri();
    let answer = authorization(&offered[0], "INVITE", &uri, USER, PASSWORD, "5eed", 1)
        .expect("an answer to the SHA-256 challenge");
    let ok = attempt.invite(2, Some(&answer));
    assert_eq!(ok.status_code.code(), 200, "{ok}\n{}", engine.logs());
    assert!(wait_until(Duration::from_secs(2), || engine
        .live_rooms()
        .contains(&"room-sha".to_string())));
    assert_eq!(attempt.ack_and_bye(&ok, 2), 200);
    assert_eq!(
        metric(&engine, "chorus_sip_auth_total{outcome=\"ok\"}"),
        1.0
    );
}

#[test]
fn unknown_user_and_wrong_password_get_the_same_401_apart_from_the_nonce() {
    let engine = Engine::start_with_config(&secured_config(""), EngineOptions::default());
    let ua = Ua::new(engine.sip, Transport::Udp).expect("UA");
    let attempt = Attempt::new(&ua, engine.sip, "room-enum");
    let first = attempt.invite(1, None);
    let challenge = challenges(&first).remove(0);
    let uri = attempt.uri();
    let mut answers = Vec::new();
    for (cseq, user, password) in [(2, USER, "guess"), (3, "mallory", "guess")] {
        let credentials = authorization(&challenge, "INVITE", &uri, user, password, "c0ffee", 1)
            .expect("an answer to the challenge");
        answers.push(attempt.invite(cseq, Some(&credentials)));
    }
    // Everything that is not per-request (branch, CSeq, To-tag) or the fresh nonce.
    let normalise = |r: &rsip::Response| -> String {
        let mut text = r.to_string();
        for c in challenges(r) {
            text = text.replace(&nonce_of(&c), "NONCE");
        }
        let to = header(&r.headers, "To").expect("To");
        let tag = param(&to, "tag").expect("a To-tag");
        let via = header(&r.headers, "Via").expect("Via");
        let branch = param(&via, "branch").expect("a branch");
        text.replace(&tag, "TAG")
            .replace(&branch, "BRANCH")
            .replace("CSeq: 2 INVITE", "CSeq: N INVITE")
            .replace("CSeq: 3 INVITE", "CSeq: N INVITE")
    };
    let (wrong, unknown) = (&answers[0], &answers[1]);
    assert_eq!(wrong.status_code.code(), 401, "{wrong}");
    assert_ne!(
        nonce_of(&challenges(wrong)[0]),
        nonce_of(&challenges(unknown)[0])
    );
    assert_eq!(normalise(wrong), normalise(unknown));
    assert_eq!(
        metric(&engine, "chorus_sip_auth_total{outcome=\"failed\"}"),
        2.0
    );
    assert_eq!(engine.live_rooms(), Vec::<String>::new());
}

#[test]
fn a_replayed_authorization_gets_a_stale_challenge_and_no_call() {
    let engine = Engine::start_with_config(&secured_config(""), EngineOptions::default());
    let ua = Ua::new(engine.sip, Transport::Udp).expect("UA");
    let first = Attempt::new(&ua, engine.sip, "room-replay");
    let challenge = challenges(&first.invite(1, None)).remove(1);
    let credentials = authorization(
        &challenge,
        "INVITE",
        &first.uri(),
        USER,
        PASSWORD,
        "abc123",
        1,
    )
    .expect("an answer to the MD5 challenge");
    let ok = first.invite(2, Some(&credentials));
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    assert_eq!(first.ack_and_bye(&ok, 2), 200);
    // Someone who captured that INVITE sends its Authorization again on a new call.
    let replay = Attempt::new(&ua, engine.sip, "room-replay");
    let refused = replay.invite(1, Some(&credentials));
    assert_eq!(refused.status_code.code(), 401, "{refused}");
    assert!(
        challenges(&refused)
            .iter()
            .all(|c| c.contains("stale=true")),
        "{refused}"
    );
    assert_eq!(
        metric(&engine, "chorus_sip_auth_total{outcome=\"replayed\"}"),
        1.0
    );
    assert_eq!(metric(&engine, "chorus_active_calls"), 0.0);
}

#[test]
fn a_scanner_user_agent_gets_no_answer_at_all() {
    let engine = Engine::start(&[]);
    let socket = udp_from("127.0.0.1");
    for ua in ["friendly-scanner", "sipvicious", "VaxSIPUserAgent/3.5"] {
        let invite = raw_request("INVITE", &socket, engine.sip, ua, "");
        assert_eq!(
            exchange(&socket, engine.sip, &invite, Duration::from_millis(700)),
            None,
            "{ua} was answered"
        );
    }
    let options = raw_request("OPTIONS", &socket, engine.sip, "friendly-scanner", "");
    assert_eq!(
        exchange(&socket, engine.sip, &options, Duration::from_millis(700)),
        None
    );
    assert_eq!(
        metric(&engine, "chorus_sip_drops_total{reason=\"scanner\"}"),
        4.0
    );
    // The same source with an honest User-Agent is served.
    let options = raw_request("OPTIONS", &socket, engine.sip, "Linphone/5.2", "");
    let reply = exchange(&socket, engine.sip, &options, Duration::from_secs(2));
    assert_eq!(reply.as_deref().and_then(status_of), Some(200));
    assert_eq!(metric(&engine, "chorus_active_calls"), 0.0);
}

#[test]
fn a_flood_from_one_source_is_banned_while_another_source_is_served() {
    let config = format!(
        "[sip.rate_limit]\nrequests_per_s = 20\nburst = 40\nban_s = 30\nexempt = []\n{}",
        toml_account(common::ACCOUNT, common::TOKEN, &[], &[])
    );
    let engine = Engine::start_with_config(&config, EngineOptions::default());
    let flooder = udp_from("127.0.0.1");
    flooder.set_nonblocking(true).expect("nonblocking");
    for _ in 0..500 {
        let options = raw_request("OPTIONS", &flooder, engine.sip, "flood", "");
        let _ = flooder.send_to(options.as_bytes(), engine.sip);
    }
    flooder.set_nonblocking(false).expect("blocking");
    assert!(
        wait_until(Duration::from_secs(3), || metric(
            &engine,
            "chorus_sip_drops_total{reason=\"banned\"}"
        ) > 0.0),
        "nothing was banned"
    );
    assert_eq!(metric(&engine, "chorus_sip_bans_total"), 1.0);
    // Drain the answers to the burst, then the banned source gets nothing.
    while receive(&flooder, Duration::from_millis(300)).is_some() {}
    let options = raw_request("OPTIONS", &flooder, engine.sip, "flood", "");
    assert_eq!(
        exchange(&flooder, engine.sip, &options, Duration::from_secs(1)),
        None,
        "the banned source was answered"
    );

    // Another source is served: an OPTIONS and a whole SIPp call from 127.0.0.2.
    let other = udp_from("127.0.0.2");
    let options = raw_request("OPTIONS", &other, engine.sip, "probe", "");
    let reply = exchange(&other, engine.sip, &options, Duration::from_secs(2));
    assert_eq!(reply.as_deref().and_then(status_of), Some(200));
    let target = engine.sip.to_string();
    let run = Sipp::new(&[
        "-sn",
        "uac",
        "-s",
        "room1",
        &target,
        "-i",
        "127.0.0.2",
        "-m",
        "1",
        "-timeout",
        "20s",
        "-timeout_error",
    ])
    .run();
    assert_calls(&run, 1, 0);
    // Most of the flood was dropped unparsed (the kernel may have dropped some itself).
    assert!(metric(&engine, "chorus_sip_drops_total{reason=\"banned\"}") >= 100.0);
    assert_eq!(
        metric(&engine, "chorus_sip_drops_total{reason=\"rate_limited\"}"),
        1.0
    );
}

#[test]
fn allow_lists_drop_other_sources_silently_globally_and_per_account() {
    // Globally only loopback; the account only 127.0.0.2.
    let config = format!(
        "[sip]\nallow_from = ['127.0.0.0/8']\n{}sip_allow_from = ['127.0.0.2']\n",
        toml_account(common::ACCOUNT, common::TOKEN, &[], &[])
    );
    let engine = Engine::start_with_config(&config, EngineOptions::default());
    let outsider = udp_from("127.0.0.1");
    // OPTIONS is not routed to an account: the global list lets loopback in.
    let options = raw_request("OPTIONS", &outsider, engine.sip, "probe", "");
    let reply = exchange(&outsider, engine.sip, &options, Duration::from_secs(2));
    assert_eq!(reply.as_deref().and_then(status_of), Some(200));
    // An INVITE to the account from a source it does not allow: no answer at all, not even
    // 100 Trying, and its retransmissions are ignored too.
    let invite = raw_request("INVITE", &outsider, engine.sip, "probe", "");
    assert_eq!(
        exchange(&outsider, engine.sip, &invite, Duration::from_millis(700)),
        None
    );
    assert_eq!(
        exchange(&outsider, engine.sip, &invite, Duration::from_millis(700)),
        None
    );
    assert_eq!(
        metric(&engine, "chorus_sip_drops_total{reason=\"not_allowed\"}"),
        1.0
    );
    // The allowed source calls in.
    let target = engine.sip.to_string();
    let run = Sipp::new(&[
        "-sn",
        "uac",
        "-s",
        "room1",
        &target,
        "-i",
        "127.0.0.2",
        "-m",
        "1",
        "-timeout",
        "20s",
        "-timeout_error",
    ])
    .run();
    assert_calls(&run, 1, 0);

    // A source outside the global list is dropped before parsing: UDP and TCP alike.
    let config = format!(
        "[sip]\nallow_from = ['127.0.0.2/32']\n{}",
        toml_account(common::ACCOUNT, common::TOKEN, &[], &[])
    );
    let engine = Engine::start_with_config(&config, EngineOptions::default());
    let options = raw_request("OPTIONS", &outsider, engine.sip, "probe", "");
    assert_eq!(
        exchange(&outsider, engine.sip, &options, Duration::from_millis(700)),
        None
    );
    let mut tcp = TcpStream::connect(engine.sip).expect("TCP connect");
    assert!(
        closed_by_engine(&mut tcp, Duration::from_secs(2)),
        "a TCP connection from outside the list stays open"
    );
    let insider = udp_from("127.0.0.2");
    let options = raw_request("OPTIONS", &insider, engine.sip, "probe", "");
    let reply = exchange(&insider, engine.sip, &options, Duration::from_secs(2));
    assert_eq!(reply.as_deref().and_then(status_of), Some(200));
    assert_eq!(
        metric(&engine, "chorus_sip_drops_total{reason=\"not_allowed\"}"),
        2.0
    );
}

#[test]
fn messages_over_the_size_limit_are_dropped_over_udp_and_tcp() {
    let config = format!(
        "[sip]\nmax_message_bytes = 2048\n{}",
        toml_account(common::ACCOUNT, common::TOKEN, &[], &[])
    );
    let engine = Engine::start_with_config(&config, EngineOptions::default());
    let socket = udp_from("127.0.0.1");
    let padding = format!("X-Padding: {}\r\n", "a".repeat(3000));
    let big = raw_request("OPTIONS", &socket, engine.sip, "probe", &padding);
    assert_eq!(
        exchange(&socket, engine.sip, &big, Duration::from_millis(700)),
        None
    );
    let small = raw_request("OPTIONS", &socket, engine.sip, "probe", "");
    let reply = exchange(&socket, engine.sip, &small, Duration::from_secs(2));
    assert_eq!(reply.as_deref().and_then(status_of), Some(200));

    let mut tcp = TcpStream::connect(engine.sip).expect("TCP connect");
    let big = big.replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    tcp.write_all(big.as_bytes()).expect("write");
    assert!(
        closed_by_engine(&mut tcp, Duration::from_secs(3)),
        "the oversize TCP message did not close its connection"
    );
    assert!(wait_until(Duration::from_secs(2), || metric(
        &engine,
        "chorus_sip_drops_total{reason=\"oversize\"}"
    ) == 2.0));
}
