//! The UAS endpoint: server transactions (RFC 3261 §17.2), our BYE client
//! transactions (§17.1.2), dialogs (§12) and the call lifecycle the engine sees.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::drops::{DropCounts, DropReason};
use crate::error::Error;
use crate::info::{self, InfoBody};
use crate::message::{
    self, param, parse_cseq, parse_sip_uri, uri_scheme, Message, Method, NameAddr, StartLine, Via,
};
use crate::reason::Reason;
use crate::session_timer::{self, Asked, Decision, Refresher, SessionTimer, SessionTimerConfig};
use crate::timers::TimerTable;
use crate::transport::{parse_decimal, Peer, Transmit, Transport};

/// Methods we implement, advertised in Allow (RFC 3261 §20.5).
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";
/// The RFC 3261 branch magic cookie (§8.1.1.7).
const MAGIC_COOKIE: &str = "z9hG4bK";
const DEFAULT_SIP_PORT: u16 = 5060;

/// `User-Agent` substrings of well-known SIP scanners and war-dialers (matched
/// case-insensitively); the default of [`EndpointConfig::scanner_user_agents`].
pub const KNOWN_SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "sundayddr",
    "iwar",
    "vaxsipuseragent",
    "pplsip",
    "smap",
];

/// Identifies one call for the application. Dead after [`Event::CallEnded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

/// RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses; default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network; default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Endpoint settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Sent in Server (responses) and User-Agent (requests), e.g. "Chorus/0.1.0".
    pub user_agent: String,
    /// Our SIP address for Contact when the dialog is over UDP.
    pub contact_udp: SocketAddr,
    /// Our SIP address for Contact over TCP (the Contact gets `;transport=tcp`).
    pub contact_tcp: SocketAddr,
    pub timers: TimerConfig,
    /// Larger datagrams are dropped and counted in [`Stats::oversize`].
    pub max_message_size: usize,
    /// RFC 4028 session timers (see [`crate::session_timer`]).
    pub session_timer: SessionTimerConfig,
    /// Requests whose `User-Agent` contains one of these (case-insensitively) are dropped
    /// unanswered and counted in [`Stats::scanner`]. Default: [`KNOWN_SCANNERS`].
    pub scanner_user_agents: Vec<String>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            user_agent: concat!("Chorus/", env!("CARGO_PKG_VERSION")).to_string(),
            contact_udp: SocketAddr::from(([127, 0, 0, 1], DEFAULT_SIP_PORT)),
            contact_tcp: SocketAddr::from(([127, 0, 0, 1], DEFAULT_SIP_PORT)),
            timers: TimerConfig::default(),
            max_message_size: 64 * 1024,
            session_timer: SessionTimerConfig::default(),
            scanner_user_agents: KNOWN_SCANNERS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// What the endpoint tells the application.
// IncomingCall is the large variant, and there is one per INVITE: events are queued briefly
// and rarely, so boxing it would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A dialog-creating INVITE. `100 Trying` has already been queued. The
    /// application must call [`Endpoint::answer`], [`Endpoint::reject`] or
    /// [`Endpoint::hangup`] (which rejects with 480) for it.
    IncomingCall(IncomingCall),
    /// The ACK for our 2xx arrived (2xx retransmissions stop). `sdp` is the ACK
    /// body when the INVITE had no offer (the answer is in the ACK, RFC 3261
    /// §13.2.1, §13.3.1).
    CallConfirmed {
        call: CallHandle,
        sdp: Option<Vec<u8>>,
    },
    /// A re-INVITE inside a confirmed dialog (hold/unhold/session refresh).
    /// The application must call [`Endpoint::answer_reinvite`] or
    /// [`Endpoint::reject_reinvite`]. `sdp: None` is a re-INVITE without offer:
    /// the application answers with an offer and gets the answer in
    /// [`Event::ReInviteConfirmed`].
    ReInvite {
        call: CallHandle,
        sdp: Option<Vec<u8>>,
    },
    /// The ACK for our 2xx to a re-INVITE; `sdp` is its body when the re-INVITE had no offer.
    ReInviteConfirmed {
        call: CallHandle,
        sdp: Option<Vec<u8>>,
    },
    /// A DTMF digit in an in-dialog INFO (`application/dtmf-relay` or `application/dtmf`),
    /// already answered 200. `duration_ms` is 0 when the body does not give one.
    Dtmf {
        call: CallHandle,
        digit: char,
        duration_ms: u32,
    },
    /// The call is over and the handle is dead (no more events for it).
    CallEnded { call: CallHandle, reason: EndReason },
}

/// A new call waiting for the application's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingCall {
    pub call: CallHandle,
    pub call_id: String,
    /// The From URI, e.g. `sip:alice@host`.
    pub from: String,
    /// The From display name (`"Alice" <sip:…>` → `Alice`), if any.
    pub from_display: Option<String>,
    /// The To URI.
    pub to: String,
    /// The Request-URI as received.
    pub request_uri: String,
    /// User part of the Request-URI, percent-decoded.
    pub request_user: Option<String>,
    pub request_host: String,
    /// Every `Authorization` header value (RFC 3261 §22.2), for digest authentication.
    pub authorization: Vec<String>,
    pub sdp: Option<Vec<u8>>,
    pub source: Peer,
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    RemoteBye,
    Cancelled,
    /// Our 2xx was never ACKed within 64*T1; a BYE was sent (RFC 3261 §13.3.1.4).
    AckTimeout,
    /// Our BYE got a final response.
    LocalBye,
    /// Our BYE got no final response before Timer F.
    LocalByeTimeout,
    /// We rejected the INVITE with this status.
    Rejected(u16),
    /// The TCP connection carrying the dialog closed.
    TransportError,
    /// No session refresh came in time, or ours failed for good (RFC 4028 §10); a BYE was
    /// sent.
    SessionExpired,
    /// The application dropped the INVITE unanswered ([`Endpoint::discard`]).
    Discarded,
}

/// Counters; never reset.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Inputs handed to `handle_input`.
    pub received: u64,
    /// Inputs dropped because they could not be parsed far enough to answer.
    pub parse_errors: u64,
    /// 400 Bad Request responses sent.
    pub rejected_400: u64,
    /// Parsed inputs dropped for other reasons (no Via, stray ACK, unmatched response).
    pub dropped_other: u64,
    /// Responses sent for the first time.
    pub responses_sent: u64,
    /// Retransmissions of responses or requests (timers or absorbed request retransmissions).
    pub retransmissions: u64,
    /// Inputs larger than `max_message_size`.
    pub oversize: u64,
    /// Requests we originated (BYE).
    pub requests_sent: u64,
    /// Responses that matched none of our client transactions.
    pub unmatched_responses: u64,
    /// Requests from known scanners, dropped unanswered.
    pub scanner: u64,
}

impl Stats {
    /// The inputs dropped unanswered, by reason.
    pub fn drops(&self) -> DropCounts {
        let mut counts = DropCounts::default();
        for (reason, n) in [
            (DropReason::Oversize, self.oversize),
            (DropReason::Malformed, self.parse_errors),
            (DropReason::Stray, self.dropped_other),
            (DropReason::Scanner, self.scanner),
        ] {
            counts.add_n(reason, n);
        }
        counts
    }
}

/// Identifies a server transaction (RFC 3261 §17.2.3): the top Via branch and
/// sent-by, or for RFC 2543 peers the request's identifying fields; plus the
/// method, with ACK folded onto INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TxKey {
    id: String,
    method: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKind {
    /// Timer G: retransmit a non-2xx final response to INVITE (UDP).
    ServerRetransmit(TxKey),
    /// Timer H: give up waiting for the ACK of a non-2xx final response.
    ServerAckTimeout(TxKey),
    /// Timers I, J and L (RFC 6026): forget a finished server transaction.
    ServerLinger(TxKey),
    /// 2xx retransmission by the TU (RFC 3261 §13.3.1.4).
    Resend2xx(CallHandle),
    /// 64*T1 without ACK for our 2xx.
    Giveup2xx(CallHandle),
    /// Timer E: retransmit our BYE (UDP).
    ClientRetransmit(String),
    /// Timer F: our BYE timed out.
    ClientTimeout(String),
    /// Timer K: forget a completed client transaction.
    ClientLinger(String),
    /// RFC 4028: time for us to refresh the session (UPDATE).
    SessionRefresh(CallHandle),
    /// RFC 4028 §10: no refresh came; the session is over.
    SessionExpiry(CallHandle),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerState {
    /// INVITE received, no final response yet ("Trying" for non-INVITE is folded
    /// in: we answer non-INVITE requests at once).
    Proceeding,
    /// Final response sent (non-2xx for INVITE).
    Completed,
    /// ACK for our non-2xx arrived (Timer I running).
    Confirmed,
    /// 2xx sent to INVITE; absorbs INVITE retransmissions (RFC 6026 §7.1).
    Accepted,
}

#[derive(Debug)]
struct ServerTx {
    invite: bool,
    state: ServerState,
    dest: Peer,
    ctx: ResponseCtx,
    to_tag: String,
    last_response: Option<Vec<u8>>,
    retransmit_interval: Duration,
}

/// What a response copies from its request (RFC 3261 §8.2.6.2), with the top
/// Via already carrying `received`/`rport` (§18.2.1, RFC 3581 §4).
#[derive(Clone, Debug)]
struct ResponseCtx {
    vias: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    to_has_tag: bool,
    call_id: Option<String>,
    cseq: Option<String>,
}

#[derive(Debug)]
struct ClientTx {
    call: CallHandle,
    /// Emit `CallEnded` when the BYE finishes (false when it was already emitted).
    report: bool,
    dest: Peer,
    payload: Vec<u8>,
    interval: Duration,
    proceeding: bool,
    completed: bool,
    /// An UPDATE refreshing the session (RFC 4028), not a BYE.
    refresh: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    /// IncomingCall emitted; waiting for answer/reject.
    Offered,
    /// 2xx sent, waiting for its ACK.
    Answered,
    Confirmed,
    /// Our BYE is in flight.
    Terminating,
}

impl CallState {
    fn name(self) -> &'static str {
        match self {
            CallState::Offered => "offered",
            CallState::Answered => "answered",
            CallState::Confirmed => "confirmed",
            CallState::Terminating => "terminating",
        }
    }
}

#[derive(Debug)]
struct Pending2xx {
    cseq: u32,
    payload: Vec<u8>,
    dest: Peer,
    interval: Duration,
    reinvite: bool,
    late_offer: bool,
}

#[derive(Debug)]
struct PendingReInvite {
    tx: TxKey,
    has_offer: bool,
    cseq: u32,
    contact: Option<String>,
    record_route: Vec<String>,
    /// The session timer our 2xx puts in force.
    session: Option<SessionTimer>,
    /// An UPDATE (RFC 3311) with an offer: answered like a re-INVITE, but no ACK follows.
    update: bool,
}

#[derive(Debug)]
struct Call {
    state: CallState,
    call_id: String,
    local_tag: String,
    remote_tag: String,
    /// Our To value including our tag: the From of requests we send.
    local_party: String,
    /// Their From value including their tag: the To of requests we send.
    remote_party: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    remote_cseq: u32,
    /// Where requests we send in the dialog go (see [`Endpoint::hangup`]).
    peer: Peer,
    invite_tx: TxKey,
    invite_cseq: u32,
    late_offer: bool,
    record_route: Vec<String>,
    pending_2xx: Option<Pending2xx>,
    reinvite: Option<PendingReInvite>,
    /// The session timer in force (RFC 4028).
    session: Option<SessionTimer>,
    /// The session timer our 2xx to the INVITE will put in force.
    session_offer: Option<SessionTimer>,
}

type DialogKey = (String, String, String);

/// A validated request.
struct Request {
    method: Method,
    uri: String,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    cseq: u32,
    body: Vec<u8>,
    msg: Message,
    top_via_rport: bool,
}

/// A refusal decided while validating: status and extra headers.
struct Refusal {
    code: u16,
    headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn new(code: u16) -> Self {
        Refusal {
            code,
            headers: Vec::new(),
        }
    }
    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// A sans-IO SIP user agent server. See the crate docs for the driving loop.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    stats: Stats,
    rng: StdRng,
    next_call: u64,
    timers: TimerTable<TimerKind>,
    server_txs: HashMap<TxKey, ServerTx>,
    client_txs: HashMap<String, ClientTx>,
    calls: HashMap<CallHandle, Call>,
    dialogs: HashMap<DialogKey, CallHandle>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// While draining: new calls and OPTIONS get 503 with this Retry-After (seconds).
    unavailable: Option<u32>,
}

impl Endpoint {
    pub fn new(mut config: EndpointConfig) -> Self {
        config.scanner_user_agents = config
            .scanner_user_agents
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.to_ascii_lowercase())
            .collect();
        Endpoint {
            config,
            stats: Stats::default(),
            rng: StdRng::from_entropy(),
            next_call: 1,
            timers: TimerTable::new(),
            server_txs: HashMap::new(),
            client_txs: HashMap::new(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            unavailable: None,
        }
    }

    /// Marks the server unavailable (draining, RFC 3261 §21.5.4): from now on a new
    /// (out-of-dialog) INVITE or OPTIONS is answered `503 Service Unavailable` with
    /// `Retry-After: retry_after` seconds and never reaches the application, and a 503 the
    /// application gives with [`Endpoint::reject`] carries it too. Requests inside existing
    /// dialogs (BYE, re-INVITE, INFO, in-dialog OPTIONS) are served as before. `None` makes
    /// the server available again.
    pub fn set_unavailable(&mut self, retry_after: Option<u32>) {
        self.unavailable = retry_after;
    }

    /// The Retry-After of [`Endpoint::set_unavailable`], while unavailable.
    pub fn unavailable(&self) -> Option<u32> {
        self.unavailable
    }

    /// One UDP datagram, or one complete message from a [`crate::StreamFramer`].
    /// Never panics on any input.
    pub fn handle_input(&mut self, now: Instant, from: Peer, data: &[u8]) {
        self.stats.received += 1;
        if data.len() > self.config.max_message_size {
            self.stats.oversize += 1;
            return;
        }
        match message::parse(data) {
            Ok(msg) => match msg.start {
                StartLine::Request { .. } => self.on_request(now, from, msg),
                StartLine::Response { code, .. } => self.on_response(now, code, &msg),
            },
            Err(err) => {
                tracing::debug!(error = %err, "unparseable SIP input");
                self.on_unparseable(now, from, data);
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((kind, at)) = self.timers.pop_due(now) {
            self.on_timer(now, at, kind);
        }
    }

    /// The earliest armed timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Calls that have not ended (no `CallEnded` emitted yet).
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Answers an offered call with 200 OK carrying `sdp` (an answer, or an
    /// offer for a late-offer INVITE), a To-tag, Contact and the INVITE's
    /// Record-Route (RFC 3261 §12.1.1). The 2xx is retransmitted at T1, 2T1, …
    /// capped at T2 until the ACK (§13.3.1.4). Without an ACK after 64*T1 a BYE
    /// is sent and `CallEnded{AckTimeout}` is emitted at once.
    pub fn answer(&mut self, now: Instant, call: CallHandle, sdp: Vec<u8>) -> Result<(), Error> {
        let c = self.calls.get(&call).ok_or(Error::UnknownCall(call))?;
        if c.state != CallState::Offered {
            return Err(Error::InvalidState {
                call,
                state: c.state.name(),
            });
        }
        let tx_key = c.invite_tx.clone();
        let record_route = c.record_route.clone();
        let (cseq, late_offer, session) = (c.invite_cseq, c.late_offer, c.session_offer);
        let payload = self.build_2xx(&tx_key, &record_route, &sdp, session.as_ref())?;
        self.send_2xx(now, call, &tx_key, payload, cseq, false, late_offer);
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Answered;
        }
        self.start_session(now, call, session);
        Ok(())
    }

    /// `183 Session Progress` with `sdp` for early media (RFC 3261 §13.3.1.1, RFC 3960):
    /// the media flows before the call is answered. Sent unreliably (no RFC 3262 PRACK);
    /// INVITE retransmissions get it again. The call stays offered: [`Endpoint::answer`] or
    /// [`Endpoint::reject`] still follow.
    pub fn progress(&mut self, _now: Instant, call: CallHandle, sdp: Vec<u8>) -> Result<(), Error> {
        let c = self.calls.get(&call).ok_or(Error::UnknownCall(call))?;
        if c.state != CallState::Offered {
            return Err(Error::InvalidState {
                call,
                state: c.state.name(),
            });
        }
        let key = c.invite_tx.clone();
        let tx = self.server_txs.get(&key).ok_or(Error::InvalidState {
            call,
            state: "INVITE transaction gone",
        })?;
        if tx.state != ServerState::Proceeding {
            return Err(Error::InvalidState {
                call,
                state: "INVITE transaction not proceeding",
            });
        }
        let extra = [("Contact", self.contact_header(tx.dest.transport))];
        let payload = self.response_bytes(&tx.ctx, 183, Some(&tx.to_tag), &extra, Some(&sdp));
        self.send_on_tx(&key, payload);
        Ok(())
    }

    /// Final non-2xx answer to the INVITE (e.g. 486, 488, 480, 503). The INVITE
    /// server transaction goes Completed (Timer G retransmits over UDP until the
    /// ACK or Timer H, RFC 3261 §17.2.1). Emits `CallEnded{Rejected(status)}`.
    pub fn reject(&mut self, now: Instant, call: CallHandle, status: u16) -> Result<(), Error> {
        if !(300..=699).contains(&status) {
            return Err(Error::InvalidStatus(status));
        }
        let c = self.calls.get(&call).ok_or(Error::UnknownCall(call))?;
        if c.state != CallState::Offered {
            return Err(Error::InvalidState {
                call,
                state: c.state.name(),
            });
        }
        let key = c.invite_tx.clone();
        let retry: Vec<(&str, String)> = match self.unavailable {
            Some(secs) if status == 503 => vec![("Retry-After", secs.to_string())],
            _ => Vec::new(),
        };
        self.send_final_on_tx(now, &key, status, &retry, None);
        self.end_call(call, EndReason::Rejected(status));
        Ok(())
    }

    /// [`Endpoint::reject`] with extra header fields, e.g. a `401 Unauthorized` with its
    /// `WWW-Authenticate` challenges (RFC 3261 §22.2). The 401 is a final response of its
    /// own INVITE transaction: the ACK for it is absorbed there, and the retried INVITE (new
    /// branch, higher CSeq) is a new call.
    pub fn reject_with(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        headers: &[(&str, String)],
    ) -> Result<(), Error> {
        if !(300..=699).contains(&status) {
            return Err(Error::InvalidStatus(status));
        }
        let c = self.calls.get(&call).ok_or(Error::UnknownCall(call))?;
        if c.state != CallState::Offered {
            return Err(Error::InvalidState {
                call,
                state: c.state.name(),
            });
        }
        let key = c.invite_tx.clone();
        self.send_final_on_tx(now, &key, status, headers, None);
        self.end_call(call, EndReason::Rejected(status));
        Ok(())
    }

    /// Drops an offered call without a word: no final response is ever sent, and the
    /// `100 Trying` still waiting in [`Endpoint::poll_transmit`] is withdrawn (poll events
    /// before transmits to make that count). Retransmissions of the INVITE are absorbed
    /// silently until the transaction is forgotten after 64*T1. For sources that should
    /// learn nothing, e.g. one outside the called account's allow-list. Emits
    /// `CallEnded{Discarded}`.
    pub fn discard(&mut self, now: Instant, call: CallHandle) -> Result<(), Error> {
        let c = self.calls.get(&call).ok_or(Error::UnknownCall(call))?;
        if c.state != CallState::Offered {
            return Err(Error::InvalidState {
                call,
                state: c.state.name(),
            });
        }
        let key = c.invite_tx.clone();
        if let Some(tx) = self.server_txs.get_mut(&key) {
            if let Some(trying) = tx.last_response.take() {
                let before = self.transmits.len();
                self.transmits.retain(|t| t.payload != trying);
                let withdrawn = (before - self.transmits.len()) as u64;
                self.stats.responses_sent = self.stats.responses_sent.saturating_sub(withdrawn);
            }
            tx.state = ServerState::Completed;
            self.timers.set(
                TimerKind::ServerLinger(key),
                now + self.config.timers.t1 * 64,
            );
        }
        self.end_call(call, EndReason::Discarded);
        Ok(())
    }

    /// 200 OK to the pending re-INVITE, with `sdp`; retransmitted until ACK like
    /// the initial 2xx. The re-INVITE's Contact becomes the remote target
    /// (target refresh, RFC 3261 §12.2.2).
    pub fn answer_reinvite(
        &mut self,
        now: Instant,
        call: CallHandle,
        sdp: Vec<u8>,
    ) -> Result<(), Error> {
        let c = self.calls.get(&call).ok_or(Error::UnknownCall(call))?;
        let Some(re) = c.reinvite.as_ref() else {
            return Err(Error::InvalidState {
                call,
                state: "no re-INVITE pending",
            });
        };
        let (key, cseq, late) = (re.tx.clone(), re.cseq, !re.has_offer);
        let (session, update) = (re.session, re.update);
        let rr = if update {
            Vec::new()
        } else {
            re.record_route.clone()
        };
        let payload = self.build_2xx(&key, &rr, &sdp, session.as_ref())?;
        if let Some(c) = self.calls.get_mut(&call) {
            if let Some(re) = c.reinvite.take() {
                if let Some(target) = re.contact {
                    c.remote_target = target;
                }
            }
        }
        if update {
            // RFC 3311 §5.2: the answer is in the 200, and nothing acknowledges it.
            self.send_on_tx(&key, payload);
            self.complete_server_tx(now, &key);
        } else {
            self.send_2xx(now, call, &key, payload, cseq, true, late);
        }
        self.start_session(now, call, session);
        Ok(())
    }

    /// Final non-2xx to the pending re-INVITE (e.g. 488); the dialog survives.
    pub fn reject_reinvite(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
    ) -> Result<(), Error> {
        if !(300..=699).contains(&status) {
            return Err(Error::InvalidStatus(status));
        }
        let c = self.calls.get_mut(&call).ok_or(Error::UnknownCall(call))?;
        let Some(re) = c.reinvite.take() else {
            return Err(Error::InvalidState {
                call,
                state: "no re-INVITE pending",
            });
        };
        self.send_final_on_tx(now, &re.tx, status, &[], None);
        Ok(())
    }

    /// Engine-initiated hangup.
    ///
    /// A confirmed (or answered but not yet ACKed) dialog gets a BYE (RFC 3261
    /// §15.1.1) in a non-INVITE client transaction (§17.1.2: Timer E over UDP,
    /// Timer F, Timer K), and `CallEnded{LocalBye | LocalByeTimeout}` follows.
    /// An offered call is rejected with 480. Where the BYE goes:
    /// - TCP: back on the connection the INVITE came in on;
    /// - UDP with a route set: the first route's host if it is an IP literal,
    ///   else the INVITE's source address;
    /// - UDP when the INVITE's top Via had `rport` (NATed phones, SIPp): the
    ///   INVITE's source address (RFC 3581 symmetric response routing);
    /// - otherwise the Contact's address if it is an IP literal, else the
    ///   INVITE's source address (we do no DNS).
    pub fn hangup(&mut self, now: Instant, call: CallHandle) -> Result<(), Error> {
        self.hangup_inner(now, call, None)
    }

    /// [`Endpoint::hangup`] whose BYE carries a `Reason` header (RFC 3326), e.g. the server
    /// is shutting down or the media stopped. An offered call is rejected with 480 as by
    /// `hangup` (a response has no Reason).
    pub fn hangup_with_reason(
        &mut self,
        now: Instant,
        call: CallHandle,
        reason: &Reason,
    ) -> Result<(), Error> {
        self.hangup_inner(now, call, Some(reason))
    }

    fn hangup_inner(
        &mut self,
        now: Instant,
        call: CallHandle,
        reason: Option<&Reason>,
    ) -> Result<(), Error> {
        let c = self.calls.get(&call).ok_or(Error::UnknownCall(call))?;
        match c.state {
            CallState::Offered => self.reject(now, call, 480),
            CallState::Answered | CallState::Confirmed => {
                self.send_bye(now, call, true, reason);
                Ok(())
            }
            CallState::Terminating => Err(Error::InvalidState {
                call,
                state: c.state.name(),
            }),
        }
    }

    /// A TCP connection went away: calls bound to it end with `TransportError`
    /// and its transactions are forgotten.
    pub fn connection_closed(&mut self, conn: crate::transport::ConnectionId) {
        let on_conn = |p: &Peer| p.conn == Some(conn);
        let mut dead: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, c)| on_conn(&c.peer))
            .map(|(h, _)| *h)
            .collect();
        dead.sort();
        for h in dead {
            self.end_call(h, EndReason::TransportError);
        }
        let server: Vec<TxKey> = self
            .server_txs
            .iter()
            .filter(|(_, t)| on_conn(&t.dest))
            .map(|(k, _)| k.clone())
            .collect();
        for k in server {
            self.drop_server_tx(&k);
        }
        let client: Vec<String> = self
            .client_txs
            .iter()
            .filter(|(_, t)| on_conn(&t.dest))
            .map(|(k, _)| k.clone())
            .collect();
        for b in client {
            self.drop_client_tx(&b);
        }
        self.transmits.retain(|t| t.peer.conn != Some(conn));
    }

    // ----- input -----

    fn on_unparseable(&mut self, now: Instant, from: Peer, data: &[u8]) {
        // Answer 400 when the request got far enough to carry what a response
        // needs (RFC 3261 §8.2, §21.4.1); otherwise drop and count.
        let Some(msg) = message::parse_lenient(data) else {
            self.stats.parse_errors += 1;
            return;
        };
        if self.is_scanner(&msg) {
            self.stats.scanner += 1;
            return;
        }
        let method = match &msg.start {
            StartLine::Request { method, .. } => method.clone(),
            StartLine::Response { .. } => {
                self.stats.parse_errors += 1;
                return;
            }
        };
        let vias = msg.list("Via");
        let Some(top) = vias.first().and_then(|v| Via::parse(v)) else {
            self.stats.parse_errors += 1;
            return;
        };
        if method == Method::Ack || msg.first("Call-ID").is_none() || msg.first("CSeq").is_none() {
            self.stats.parse_errors += 1;
            return;
        }
        let key = self.tx_key(&msg, &top, &method);
        if self.absorb_retransmission(&key) {
            return;
        }
        let ctx = response_ctx(&msg, &vias, &top, from);
        let dest = response_dest(&top, from);
        self.respond_new_tx(
            now,
            key,
            method == Method::Invite,
            ctx,
            dest,
            Refusal::new(400),
            None,
        );
    }

    fn on_request(&mut self, now: Instant, from: Peer, msg: Message) {
        let StartLine::Request { method, .. } = &msg.start else {
            return;
        };
        let method = method.clone();
        if self.is_scanner(&msg) {
            // Scanners learn nothing, not even that something listens here.
            self.stats.scanner += 1;
            return;
        }
        let vias = msg.list("Via");
        let Some(top) = vias.first().and_then(|v| Via::parse(v)) else {
            // Without a Via there is nowhere to send a response (RFC 3261 §18.2.2).
            self.stats.dropped_other += 1;
            return;
        };
        let key = self.tx_key(&msg, &top, &method);
        if method != Method::Ack && self.absorb_retransmission(&key) {
            return;
        }
        let ctx = response_ctx(&msg, &vias, &top, from);
        let dest = response_dest(&top, from);
        let req = match validate(msg, &method, from.transport, &top) {
            Ok(req) => req,
            Err(refusal) => {
                if method == Method::Ack {
                    // ACK never gets a response (RFC 3261 §17.1.1.3).
                    self.stats.dropped_other += 1;
                } else {
                    self.respond_new_tx(
                        now,
                        key,
                        method == Method::Invite,
                        ctx,
                        dest,
                        refusal,
                        None,
                    );
                }
                return;
            }
        };
        let in_dialog = req.to.tag().is_some();
        if let Some(secs) = self.unavailable {
            if !in_dialog && matches!(req.method, Method::Invite | Method::Options) {
                // RFC 3261 §21.5.4: we are going away; another server may take it.
                let invite = req.method == Method::Invite;
                let r = Refusal::new(503).with("Retry-After", secs.to_string());
                self.respond_new_tx(now, key, invite, ctx, dest, r, None);
                return;
            }
        }
        match &req.method {
            Method::Ack => self.on_ack(now, &key, req),
            Method::Cancel => self.on_cancel(now, key, ctx, dest),
            Method::Invite if in_dialog => self.on_reinvite(now, key, ctx, dest, req),
            Method::Invite => self.on_invite(now, key, ctx, dest, from, req),
            Method::Bye => self.on_bye(now, key, ctx, dest, &req),
            Method::Update => self.on_update(now, key, ctx, dest, req),
            Method::Info => {
                let r = match self.dialog_for(&req) {
                    Some(call) => self
                        .check_remote_cseq(call, req.cseq)
                        .unwrap_or_else(|| self.on_info(call, &req)),
                    None => Refusal::new(481),
                };
                self.respond_new_tx(now, key, false, ctx, dest, r, None);
            }
            Method::Options => {
                // Answered in or out of dialog, whatever Max-Forwards says: we
                // are the UAS, not a proxy (RFC 3261 §11.2, RFC 4475 §3.3.11).
                let r = Refusal::new(200)
                    .with("Allow", ALLOW)
                    .with("Accept", "application/sdp")
                    .with("Accept-Encoding", "identity")
                    .with("Accept-Language", "en")
                    .with("Supported", "timer");
                self.respond_new_tx(now, key, false, ctx, dest, r, None);
            }
            Method::Register
            | Method::Subscribe
            | Method::Notify
            | Method::Refer
            | Method::Message
            | Method::Prack
            | Method::Publish => {
                // Known methods we do not allow (RFC 3261 §8.2.1).
                let r = Refusal::new(405).with("Allow", ALLOW);
                self.respond_new_tx(now, key, false, ctx, dest, r, None);
            }
            Method::Extension(_) => {
                // Already answered 501 in validation; unreachable in practice.
                let r = Refusal::new(501).with("Allow", ALLOW);
                self.respond_new_tx(now, key, false, ctx, dest, r, None);
            }
        }
    }

    fn on_invite(
        &mut self,
        now: Instant,
        key: TxKey,
        ctx: ResponseCtx,
        dest: Peer,
        from: Peer,
        req: Request,
    ) {
        if let Some(r) = check_offer_body(&req) {
            self.respond_new_tx(now, key, true, ctx, dest, r, None);
            return;
        }
        if let Some(accept) = req.msg.first("Accept") {
            // We can only answer with SDP (RFC 3261 §21.4.7, RFC 4475 §3.3.15).
            if !accepts_sdp(accept) {
                let r = Refusal::new(406).with("Accept", "application/sdp");
                self.respond_new_tx(now, key, true, ctx, dest, r, None);
                return;
            }
        }
        let Some(remote_tag) = req.from.tag().map(str::to_string) else {
            // A dialog needs the From tag (RFC 3261 §8.1.1.3, §12.1.1).
            let r = Refusal::new(400);
            self.respond_new_tx(now, key, true, ctx, dest, r, None);
            return;
        };
        let session = match self.session_decision(&req) {
            Ok(session) => session,
            Err(r) => {
                self.respond_new_tx(now, key, true, ctx, dest, r, None);
                return;
            }
        };
        let (request_user, request_host) = request_uri_parts(&req.uri);
        let contact = req
            .msg
            .first("Contact")
            .and_then(NameAddr::parse)
            .map(|n| n.uri)
            .unwrap_or_else(|| req.from.uri.clone());
        let record_route = req.msg.list("Record-Route");
        let route_set: Vec<String> = record_route
            .iter()
            .filter_map(|r| NameAddr::parse(r).map(|n| n.uri))
            .collect();
        let local_tag = self.random_token();
        let handle = CallHandle(self.next_call);
        self.next_call += 1;
        let peer = in_dialog_peer(from, req.top_via_rport, &route_set, &contact);

        let tx = ServerTx {
            invite: true,
            state: ServerState::Proceeding,
            dest,
            ctx: ctx.clone(),
            to_tag: local_tag.clone(),
            last_response: None,
            retransmit_interval: self.config.timers.t1,
        };
        self.server_txs.insert(key.clone(), tx);
        // 100 Trying at once: the application may take longer than 200 ms
        // (RFC 3261 §17.2.1).
        let trying = self.response_bytes(&ctx, 100, None, &[], None);
        self.send_on_tx(&key, trying);

        let to_value = req.msg.first("To").unwrap_or_default();
        let sdp = if req.body.is_empty() {
            None
        } else {
            Some(req.body.clone())
        };
        let call = Call {
            state: CallState::Offered,
            call_id: req.call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: remote_tag.clone(),
            local_party: format!("{to_value};tag={local_tag}"),
            remote_party: req.msg.first("From").unwrap_or_default().to_string(),
            remote_target: contact,
            route_set,
            local_cseq: self.rng.gen_range(1..10_000),
            remote_cseq: req.cseq,
            peer,
            invite_tx: key,
            invite_cseq: req.cseq,
            late_offer: sdp.is_none(),
            record_route,
            pending_2xx: None,
            reinvite: None,
            session: None,
            session_offer: session,
        };
        self.calls.insert(handle, call);
        self.events.push_back(Event::IncomingCall(IncomingCall {
            call: handle,
            call_id: req.call_id,
            from_display: req.msg.first("From").and_then(display_name),
            from: req.from.uri,
            to: req.to.uri,
            request_uri: req.uri.clone(),
            request_user,
            request_host,
            authorization: req.msg.all("Authorization").map(str::to_string).collect(),
            sdp,
            source: from,
        }));
    }

    fn on_reinvite(
        &mut self,
        now: Instant,
        key: TxKey,
        ctx: ResponseCtx,
        dest: Peer,
        req: Request,
    ) {
        let Some(call) = self.dialog_for(&req) else {
            self.respond_new_tx(now, key, true, ctx, dest, Refusal::new(481), None);
            return;
        };
        if let Some(r) = self.check_remote_cseq(call, req.cseq) {
            self.respond_new_tx(now, key, true, ctx, dest, r, None);
            return;
        }
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let refusal = if c.reinvite.is_some() {
            // A second INVITE before our final answer to the first (RFC 3261 §14.2).
            let secs = self.rng.gen_range(0..=10u32);
            Some(Refusal::new(500).with("Retry-After", secs.to_string()))
        } else if c.state == CallState::Answered || c.pending_2xx.is_some() {
            // Our 2xx still awaits its ACK: an offer/answer exchange is in
            // progress, so treat it as glare (RFC 3261 §14.2, RFC 6337 §3.1).
            Some(Refusal::new(491))
        } else if c.state == CallState::Terminating {
            Some(Refusal::new(481))
        } else {
            check_offer_body(&req)
        };
        if let Some(r) = refusal {
            self.respond_new_tx(now, key, true, ctx, dest, r, None);
            return;
        }
        let local_tag = c.local_tag.clone();
        let session = match self.session_decision(&req) {
            Ok(session) => session,
            Err(r) => {
                self.respond_new_tx(now, key, true, ctx, dest, r, None);
                return;
            }
        };
        let tx = ServerTx {
            invite: true,
            state: ServerState::Proceeding,
            dest,
            ctx: ctx.clone(),
            to_tag: local_tag,
            last_response: None,
            retransmit_interval: self.config.timers.t1,
        };
        self.server_txs.insert(key.clone(), tx);
        let trying = self.response_bytes(&ctx, 100, None, &[], None);
        self.send_on_tx(&key, trying);
        let has_offer = !req.body.is_empty();
        let contact = req
            .msg
            .first("Contact")
            .and_then(NameAddr::parse)
            .map(|n| n.uri);
        let record_route = self
            .calls
            .get(&call)
            .map(|c| c.record_route.clone())
            .unwrap_or_default();
        if let Some(c) = self.calls.get_mut(&call) {
            c.reinvite = Some(PendingReInvite {
                tx: key,
                has_offer,
                cseq: req.cseq,
                contact,
                record_route,
                session,
                update: false,
            });
        }
        self.events.push_back(Event::ReInvite {
            call,
            sdp: has_offer.then_some(req.body),
        });
    }

    fn on_ack(&mut self, now: Instant, key: &TxKey, req: Request) {
        // ACK for a non-2xx final response belongs to the INVITE server
        // transaction (RFC 3261 §17.2.1).
        if let Some(tx) = self.server_txs.get_mut(key) {
            if tx.state == ServerState::Completed {
                tx.state = ServerState::Confirmed;
                let reliable = tx.dest.transport.is_reliable();
                self.timers
                    .cancel(&TimerKind::ServerRetransmit(key.clone()));
                self.timers
                    .cancel(&TimerKind::ServerAckTimeout(key.clone()));
                if reliable {
                    self.drop_server_tx(key);
                } else {
                    // Timer I absorbs ACK retransmissions.
                    self.timers.set(
                        TimerKind::ServerLinger(key.clone()),
                        now + self.config.timers.t4,
                    );
                }
                return;
            }
            if tx.state == ServerState::Confirmed {
                return;
            }
        }
        // ACK for a 2xx is end-to-end: matched by dialog and CSeq (§13.3.1.4).
        let Some(call) = self.dialog_for(&req) else {
            self.stats.dropped_other += 1;
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let matches = c.pending_2xx.as_ref().is_some_and(|p| p.cseq == req.cseq);
        if !matches {
            // A retransmitted ACK, or one for a 2xx we no longer track.
            return;
        }
        let Some(p) = c.pending_2xx.take() else {
            return;
        };
        if c.state == CallState::Answered {
            c.state = CallState::Confirmed;
        }
        self.timers.cancel(&TimerKind::Resend2xx(call));
        self.timers.cancel(&TimerKind::Giveup2xx(call));
        let sdp = (p.late_offer && !req.body.is_empty()).then_some(req.body);
        self.events.push_back(if p.reinvite {
            Event::ReInviteConfirmed { call, sdp }
        } else {
            Event::CallConfirmed { call, sdp }
        });
    }

    fn on_cancel(&mut self, now: Instant, key: TxKey, ctx: ResponseCtx, dest: Peer) {
        // CANCEL matches the INVITE transaction with the same branch (RFC 3261 §9.2).
        let invite_key = TxKey {
            id: key.id.clone(),
            method: "INVITE".to_string(),
        };
        let Some(tx) = self.server_txs.get(&invite_key) else {
            self.respond_new_tx(now, key, false, ctx, dest, Refusal::new(481), None);
            return;
        };
        let pending = tx.state == ServerState::Proceeding;
        // The CANCEL's 200 carries the INVITE's To-tag (§9.2).
        let tag = tx.to_tag.clone();
        self.respond_new_tx(now, key, false, ctx, dest, Refusal::new(200), Some(tag));
        if !pending {
            return;
        }
        self.send_final_on_tx(now, &invite_key, 487, &[], None);
        let owner = self.calls.iter().find_map(|(h, c)| {
            if c.invite_tx == invite_key && c.state == CallState::Offered {
                Some((*h, true))
            } else if c.reinvite.as_ref().is_some_and(|r| r.tx == invite_key) {
                Some((*h, false))
            } else {
                None
            }
        });
        match owner {
            Some((h, true)) => self.end_call(h, EndReason::Cancelled),
            Some((h, false)) => {
                if let Some(c) = self.calls.get_mut(&h) {
                    c.reinvite = None;
                }
            }
            None => {}
        }
    }

    fn on_bye(&mut self, now: Instant, key: TxKey, ctx: ResponseCtx, dest: Peer, req: &Request) {
        let Some(call) = self.dialog_for(req) else {
            self.respond_new_tx(now, key, false, ctx, dest, Refusal::new(481), None);
            return;
        };
        if let Some(r) = self.check_remote_cseq(call, req.cseq) {
            self.respond_new_tx(now, key, false, ctx, dest, r, None);
            return;
        }
        self.respond_new_tx(now, key, false, ctx, dest, Refusal::new(200), None);
        // Pending requests in the dialog still get answers (RFC 3261 §15.1.2).
        if let Some(re) = self.calls.get_mut(&call).and_then(|c| c.reinvite.take()) {
            self.send_final_on_tx(now, &re.tx, 487, &[], None);
        }
        let terminating = self
            .calls
            .get(&call)
            .is_some_and(|c| c.state == CallState::Terminating);
        if terminating {
            // BYEs crossed: ours still completes, but the call ends now.
            for tx in self.client_txs.values_mut() {
                if tx.call == call {
                    tx.report = false;
                }
            }
        }
        self.end_call(call, EndReason::RemoteBye);
    }

    fn on_response(&mut self, now: Instant, code: u16, msg: &Message) {
        let branch = msg
            .first("Via")
            .and_then(|v| message::split_commas(v).into_iter().next())
            .and_then(|v| Via::parse(&v))
            .and_then(|v| v.branch().map(str::to_string));
        let cseq_method = msg.first("CSeq").and_then(parse_cseq).map(|(_, m)| m);
        let Some(branch) = branch else {
            self.stats.dropped_other += 1;
            self.stats.unmatched_responses += 1;
            return;
        };
        let Some(tx) = self.client_txs.get_mut(&branch) else {
            self.stats.dropped_other += 1;
            self.stats.unmatched_responses += 1;
            return;
        };
        let expected = if tx.refresh { "UPDATE" } else { "BYE" };
        if cseq_method.as_deref() != Some(expected) {
            self.stats.dropped_other += 1;
            self.stats.unmatched_responses += 1;
            return;
        }
        if tx.completed {
            return;
        }
        if code < 200 {
            tx.proceeding = true;
            return;
        }
        // Final response: Completed, Timer K (RFC 3261 §17.1.2.2).
        tx.completed = true;
        let (call, report, reliable) = (tx.call, tx.report, tx.dest.transport.is_reliable());
        let refresh = tx.refresh;
        self.timers
            .cancel(&TimerKind::ClientRetransmit(branch.clone()));
        self.timers
            .cancel(&TimerKind::ClientTimeout(branch.clone()));
        if reliable {
            self.client_txs.remove(&branch);
        } else {
            self.timers
                .set(TimerKind::ClientLinger(branch), now + self.config.timers.t4);
        }
        if refresh {
            self.on_refresh_response(now, call, code, msg);
        } else if report {
            self.end_call(call, EndReason::LocalBye);
        }
    }

    // ----- timers -----

    fn on_timer(&mut self, now: Instant, at: Instant, kind: TimerKind) {
        let t = self.config.timers;
        match kind {
            TimerKind::ServerRetransmit(key) => {
                let Some(tx) = self.server_txs.get_mut(&key) else {
                    return;
                };
                if tx.state != ServerState::Completed {
                    return;
                }
                tx.retransmit_interval = (tx.retransmit_interval * 2).min(t.t2);
                let next = at + tx.retransmit_interval;
                if let Some(payload) = tx.last_response.clone() {
                    let peer = tx.dest;
                    self.stats.retransmissions += 1;
                    self.transmits.push_back(Transmit { peer, payload });
                }
                self.timers.set(TimerKind::ServerRetransmit(key), next);
            }
            TimerKind::ServerAckTimeout(key) => {
                // Timer H: the ACK never came; the call already ended when we rejected.
                self.drop_server_tx(&key);
            }
            TimerKind::ServerLinger(key) => self.drop_server_tx(&key),
            TimerKind::Resend2xx(call) => {
                let Some(p) = self
                    .calls
                    .get_mut(&call)
                    .and_then(|c| c.pending_2xx.as_mut())
                else {
                    return;
                };
                p.interval = (p.interval * 2).min(t.t2);
                let next = at + p.interval;
                let transmit = Transmit {
                    peer: p.dest,
                    payload: p.payload.clone(),
                };
                self.stats.retransmissions += 1;
                self.transmits.push_back(transmit);
                self.timers.set(TimerKind::Resend2xx(call), next);
            }
            TimerKind::Giveup2xx(call) => {
                // No ACK within 64*T1: confirm and end the session with a BYE
                // (RFC 3261 §13.3.1.4).
                self.timers.cancel(&TimerKind::Resend2xx(call));
                if let Some(c) = self.calls.get_mut(&call) {
                    c.pending_2xx = None;
                }
                self.send_bye(now, call, false, None);
                self.end_call(call, EndReason::AckTimeout);
            }
            TimerKind::ClientRetransmit(branch) => {
                let Some(tx) = self.client_txs.get_mut(&branch) else {
                    return;
                };
                // Trying doubles up to T2; Proceeding retransmits every T2 (§17.1.2.2).
                tx.interval = if tx.proceeding {
                    t.t2
                } else {
                    (tx.interval * 2).min(t.t2)
                };
                let next = at + tx.interval;
                let transmit = Transmit {
                    peer: tx.dest,
                    payload: tx.payload.clone(),
                };
                self.stats.retransmissions += 1;
                self.transmits.push_back(transmit);
                self.timers.set(TimerKind::ClientRetransmit(branch), next);
            }
            TimerKind::ClientTimeout(branch) => {
                self.timers
                    .cancel(&TimerKind::ClientRetransmit(branch.clone()));
                if let Some(tx) = self.client_txs.remove(&branch) {
                    if tx.refresh {
                        // RFC 4028 §10: a refresh that times out ends the session.
                        self.end_session(now, tx.call);
                    } else if tx.report {
                        self.end_call(tx.call, EndReason::LocalByeTimeout);
                    }
                }
            }
            TimerKind::ClientLinger(branch) => {
                self.client_txs.remove(&branch);
            }
            TimerKind::SessionRefresh(call) => self.send_refresh(now, call),
            TimerKind::SessionExpiry(call) => self.end_session(now, call),
        }
    }

    // ----- helpers -----

    fn is_scanner(&self, msg: &Message) -> bool {
        // The patterns were lowercased in `new`.
        let patterns = &self.config.scanner_user_agents;
        !patterns.is_empty()
            && msg.all("User-Agent").any(|ua| {
                let ua = ua.to_ascii_lowercase();
                patterns.iter().any(|p| ua.contains(p.as_str()))
            })
    }

    fn random_token(&mut self) -> String {
        format!("{:016x}", self.rng.gen::<u64>())
    }

    fn tx_key(&self, msg: &Message, top: &Via, method: &Method) -> TxKey {
        let method_class = match method {
            Method::Ack => "INVITE".to_string(),
            m => m.as_str().to_string(),
        };
        let id = match top.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len() => {
                format!("{b}|{}", top.sent_by().to_ascii_lowercase())
            }
            _ => {
                // RFC 2543 peers: identify the transaction by its fields (§17.2.3).
                let uri = match &msg.start {
                    StartLine::Request { uri, .. } => uri.as_str(),
                    StartLine::Response { .. } => "",
                };
                let from_tag = msg
                    .first("From")
                    .and_then(NameAddr::parse)
                    .and_then(|n| n.tag().map(str::to_string))
                    .unwrap_or_default();
                let cseq_num = msg
                    .first("CSeq")
                    .and_then(parse_cseq)
                    .map(|(n, _)| n.to_string())
                    .unwrap_or_default();
                format!(
                    "2543|{}|{cseq_num}|{from_tag}|{uri}|{}",
                    msg.first("Call-ID").unwrap_or_default(),
                    msg.first("Via")
                        .and_then(|v| message::split_commas(v).into_iter().next())
                        .unwrap_or_default()
                )
            }
        };
        TxKey {
            id,
            method: method_class,
        }
    }

    /// Resends the last response of an existing transaction (RFC 3261 §17.2.1,
    /// §17.2.2). Returns whether the request was a retransmission.
    fn absorb_retransmission(&mut self, key: &TxKey) -> bool {
        let Some(tx) = self.server_txs.get(key) else {
            return false;
        };
        if let Some(payload) = tx.last_response.clone() {
            self.stats.retransmissions += 1;
            self.transmits.push_back(Transmit {
                peer: tx.dest,
                payload,
            });
        }
        true
    }

    fn dialog_for(&self, req: &Request) -> Option<CallHandle> {
        let local = req.to.tag()?.to_string();
        let remote = req.from.tag().unwrap_or_default().to_string();
        self.dialogs
            .get(&(req.call_id.clone(), local, remote))
            .copied()
    }

    /// An in-dialog INFO in CSeq order: a DTMF digit becomes [`Event::Dtmf`]. RFC 6086 §4.2:
    /// a body of a type we do not handle is refused with 415 (the dialog is unaffected); a
    /// DTMF body we cannot read is still acknowledged, but nothing is reported.
    fn on_info(&mut self, call: CallHandle, req: &Request) -> Refusal {
        match info::parse(req.msg.first("Content-Type"), &req.body) {
            InfoBody::Dtmf { digit, duration_ms } => {
                self.events.push_back(Event::Dtmf {
                    call,
                    digit,
                    duration_ms,
                });
                Refusal::new(200)
            }
            InfoBody::Empty | InfoBody::Malformed => Refusal::new(200),
            InfoBody::Unsupported => Refusal::new(415).with("Accept", info::ACCEPTED),
        }
    }

    /// In-dialog requests must arrive in CSeq order (RFC 3261 §12.2.2).
    fn check_remote_cseq(&mut self, call: CallHandle, cseq: u32) -> Option<Refusal> {
        let c = self.calls.get_mut(&call)?;
        if cseq <= c.remote_cseq {
            return Some(Refusal::new(500));
        }
        c.remote_cseq = cseq;
        None
    }

    fn contact_header(&self, transport: Transport) -> String {
        match transport {
            Transport::Udp => format!("<sip:{}>", fmt_addr(self.config.contact_udp)),
            Transport::Tcp => format!("<sip:{};transport=tcp>", fmt_addr(self.config.contact_tcp)),
        }
    }

    fn build_2xx(
        &self,
        key: &TxKey,
        record_route: &[String],
        sdp: &[u8],
        session: Option<&SessionTimer>,
    ) -> Result<Vec<u8>, Error> {
        let tx = self.server_txs.get(key).ok_or(Error::InvalidState {
            call: CallHandle(0),
            state: "INVITE transaction gone",
        })?;
        let mut extra: Vec<(&str, String)> = record_route
            .iter()
            .map(|r| ("Record-Route", r.clone()))
            .collect();
        extra.push(("Contact", self.contact_header(tx.dest.transport)));
        extra.push(("Allow", ALLOW.to_string()));
        extra.push(("Supported", "timer".to_string()));
        if let Some(s) = session {
            // RFC 4028 §9: the UAC must know it refreshes, so it must understand the header.
            extra.push(("Session-Expires", s.response_header()));
            if s.require {
                extra.push(("Require", "timer".to_string()));
            }
        }
        Ok(self.response_bytes(&tx.ctx, 200, Some(&tx.to_tag), &extra, Some(sdp)))
    }

    #[allow(clippy::too_many_arguments)]
    fn send_2xx(
        &mut self,
        now: Instant,
        call: CallHandle,
        key: &TxKey,
        payload: Vec<u8>,
        cseq: u32,
        reinvite: bool,
        late_offer: bool,
    ) {
        let t = self.config.timers;
        let Some(tx) = self.server_txs.get_mut(key) else {
            return;
        };
        // RFC 6026 §7.1: Accepted absorbs INVITE retransmissions for Timer L.
        tx.state = ServerState::Accepted;
        tx.last_response = Some(payload.clone());
        let dest = tx.dest;
        self.stats.responses_sent += 1;
        self.transmits.push_back(Transmit {
            peer: dest,
            payload: payload.clone(),
        });
        self.timers
            .set(TimerKind::ServerLinger(key.clone()), now + t.t1 * 64);
        if let Some(c) = self.calls.get_mut(&call) {
            c.pending_2xx = Some(Pending2xx {
                cseq,
                payload,
                dest,
                interval: t.t1,
                reinvite,
                late_offer,
            });
            self.dialogs.insert(
                (c.call_id.clone(), c.local_tag.clone(), c.remote_tag.clone()),
                call,
            );
        }
        // The TU retransmits the 2xx over unreliable transports only (§13.3.1.4).
        if !dest.transport.is_reliable() {
            self.timers.set(TimerKind::Resend2xx(call), now + t.t1);
        }
        self.timers.set(TimerKind::Giveup2xx(call), now + t.t1 * 64);
    }

    /// Sends a final non-2xx response on an INVITE transaction in Proceeding.
    fn send_final_on_tx(
        &mut self,
        now: Instant,
        key: &TxKey,
        code: u16,
        extra: &[(&str, String)],
        body: Option<&[u8]>,
    ) {
        let Some(tx) = self.server_txs.get(key) else {
            return;
        };
        if tx.state != ServerState::Proceeding {
            return;
        }
        let payload = self.response_bytes(&tx.ctx, code, Some(&tx.to_tag), extra, body);
        if code == 400 {
            self.stats.rejected_400 += 1;
        }
        self.send_on_tx(key, payload);
        self.complete_server_tx(now, key);
    }

    /// Moves a transaction to Completed after its final response and arms its timers.
    fn complete_server_tx(&mut self, now: Instant, key: &TxKey) {
        let t = self.config.timers;
        let Some(tx) = self.server_txs.get_mut(key) else {
            return;
        };
        tx.state = ServerState::Completed;
        let reliable = tx.dest.transport.is_reliable();
        if tx.invite {
            tx.retransmit_interval = t.t1;
            if !reliable {
                self.timers
                    .set(TimerKind::ServerRetransmit(key.clone()), now + t.t1);
            }
            self.timers
                .set(TimerKind::ServerAckTimeout(key.clone()), now + t.t1 * 64);
        } else if reliable {
            // Timer J is zero on reliable transports (§17.2.2).
            self.server_txs.remove(key);
        } else {
            self.timers
                .set(TimerKind::ServerLinger(key.clone()), now + t.t1 * 64);
        }
    }

    fn send_on_tx(&mut self, key: &TxKey, payload: Vec<u8>) {
        let Some(tx) = self.server_txs.get_mut(key) else {
            return;
        };
        tx.last_response = Some(payload.clone());
        self.stats.responses_sent += 1;
        self.transmits.push_back(Transmit {
            peer: tx.dest,
            payload,
        });
    }

    /// Creates a server transaction that is answered at once with a final response.
    #[allow(clippy::too_many_arguments)]
    fn respond_new_tx(
        &mut self,
        now: Instant,
        key: TxKey,
        invite: bool,
        ctx: ResponseCtx,
        dest: Peer,
        refusal: Refusal,
        to_tag: Option<String>,
    ) {
        let to_tag = match to_tag {
            Some(t) => t,
            None => self.random_token(),
        };
        let tx = ServerTx {
            invite,
            state: ServerState::Proceeding,
            dest,
            ctx,
            to_tag,
            last_response: None,
            retransmit_interval: self.config.timers.t1,
        };
        self.server_txs.insert(key.clone(), tx);
        if (200..300).contains(&refusal.code) {
            // Only non-INVITE requests are answered 2xx here.
            let Some(tx) = self.server_txs.get(&key) else {
                return;
            };
            let payload = self.response_bytes(
                &tx.ctx,
                refusal.code,
                Some(&tx.to_tag),
                &refusal.headers,
                None,
            );
            self.send_on_tx(&key, payload);
            self.complete_server_tx(now, &key);
        } else {
            self.send_final_on_tx(now, &key, refusal.code, &refusal.headers, None);
        }
    }

    fn drop_server_tx(&mut self, key: &TxKey) {
        self.server_txs.remove(key);
        self.timers
            .cancel(&TimerKind::ServerRetransmit(key.clone()));
        self.timers
            .cancel(&TimerKind::ServerAckTimeout(key.clone()));
        self.timers.cancel(&TimerKind::ServerLinger(key.clone()));
    }

    fn drop_client_tx(&mut self, branch: &str) {
        self.client_txs.remove(branch);
        self.timers
            .cancel(&TimerKind::ClientRetransmit(branch.to_string()));
        self.timers
            .cancel(&TimerKind::ClientTimeout(branch.to_string()));
        self.timers
            .cancel(&TimerKind::ClientLinger(branch.to_string()));
    }

    /// Emits `CallEnded` once and forgets the call and its dialog.
    fn end_call(&mut self, call: CallHandle, reason: EndReason) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.timers.cancel(&TimerKind::Resend2xx(call));
        self.timers.cancel(&TimerKind::Giveup2xx(call));
        self.timers.cancel(&TimerKind::SessionRefresh(call));
        self.timers.cancel(&TimerKind::SessionExpiry(call));
        self.dialogs
            .remove(&(c.call_id.clone(), c.local_tag.clone(), c.remote_tag.clone()));
        for tx in self.client_txs.values_mut() {
            if tx.call == call {
                tx.report = false;
            }
        }
        self.events.push_back(Event::CallEnded { call, reason });
    }

    /// Sends BYE in the dialog (RFC 3261 §15.1.1). With `report`, the call stays
    /// until the BYE transaction finishes and then emits `CallEnded`.
    fn send_bye(&mut self, now: Instant, call: CallHandle, report: bool, reason: Option<&Reason>) {
        // A re-INVITE we never answered must still get a final response (§15.1.2).
        if let Some(re) = self.calls.get_mut(&call).and_then(|c| c.reinvite.take()) {
            self.send_final_on_tx(now, &re.tx, 487, &[], None);
        }
        self.timers.cancel(&TimerKind::Resend2xx(call));
        self.timers.cancel(&TimerKind::Giveup2xx(call));
        self.timers.cancel(&TimerKind::SessionRefresh(call));
        self.timers.cancel(&TimerKind::SessionExpiry(call));
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.pending_2xx = None;
        c.state = CallState::Terminating;
        let extra: Vec<(&str, String)> = reason
            .map(|r| ("Reason", r.to_string()))
            .into_iter()
            .collect();
        self.send_request(now, call, "BYE", &extra, report, false);
    }

    /// Sends a request inside the dialog (RFC 3261 §12.2.1.1) in a non-INVITE client
    /// transaction (§17.1.2): Timer E over UDP, Timer F, Timer K. `extra` headers follow the
    /// Route set.
    fn send_request(
        &mut self,
        now: Instant,
        call: CallHandle,
        method: &str,
        extra: &[(&str, String)],
        report: bool,
        refresh: bool,
    ) {
        let branch = format!("{MAGIC_COOKIE}{}", self.random_token());
        let t = self.config.timers;
        let contact_udp = self.config.contact_udp;
        let contact_tcp = self.config.contact_tcp;
        let user_agent = self.config.user_agent.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.local_cseq = c.local_cseq.saturating_add(1);
        let transport = c.peer.transport;
        let via_addr = match transport {
            Transport::Udp => contact_udp,
            Transport::Tcp => contact_tcp,
        };
        // Loose routing keeps the remote target as Request-URI; a strict router
        // (no ;lr) takes the Request-URI and the target goes last (§12.2.1.1).
        let strict = c.route_set.first().is_some_and(|r| !r.contains(";lr"));
        let (ruri, routes): (String, Vec<String>) = match c.route_set.split_first() {
            Some((first, rest)) if strict => {
                let mut routes: Vec<String> = rest.iter().map(|r| format!("<{r}>")).collect();
                routes.push(format!("<{}>", c.remote_target));
                (first.clone(), routes)
            }
            _ => (
                c.remote_target.clone(),
                c.route_set.iter().map(|r| format!("<{r}>")).collect(),
            ),
        };
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            transport.via_token(),
            fmt_addr(via_addr)
        );
        for r in &routes {
            let _ = write!(out, "Route: {r}\r\n");
        }
        for (name, value) in extra {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(
            out,
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\nUser-Agent: {user_agent}\r\nContent-Length: 0\r\n\r\n",
            c.local_party, c.remote_party, c.call_id, c.local_cseq
        );
        let payload = out.into_bytes();
        let dest = c.peer;
        self.stats.requests_sent += 1;
        self.transmits.push_back(Transmit {
            peer: dest,
            payload: payload.clone(),
        });
        if !dest.transport.is_reliable() {
            self.timers
                .set(TimerKind::ClientRetransmit(branch.clone()), now + t.t1);
        }
        self.timers
            .set(TimerKind::ClientTimeout(branch.clone()), now + t.t1 * 64);
        self.client_txs.insert(
            branch,
            ClientTx {
                call,
                report,
                dest,
                payload,
                interval: t.t1,
                proceeding: false,
                completed: false,
                refresh,
            },
        );
    }

    // ----- session timers (RFC 4028) -----

    /// What a request asks of the session timer: the timer our 2xx will put in force, or
    /// the 422 (with our `Min-SE`, §6) that refuses it.
    fn session_decision(&self, req: &Request) -> Result<Option<SessionTimer>, Refusal> {
        match session_timer::decide(&Asked::of(&req.msg), &self.config.session_timer) {
            Decision::Accept(session) => Ok(session),
            Decision::TooSmall { min_se } => {
                Err(Refusal::new(422).with("Min-SE", min_se.to_string()))
            }
        }
    }

    /// Puts `session` in force from `now` (our 2xx to a refresh was just sent, or our own
    /// refresh succeeded): the refresh at half the interval when we refresh, and the expiry
    /// either way (§10). `None` stops the timer.
    fn start_session(&mut self, now: Instant, call: CallHandle, session: Option<SessionTimer>) {
        self.timers.cancel(&TimerKind::SessionRefresh(call));
        self.timers.cancel(&TimerKind::SessionExpiry(call));
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.session = session;
        let Some(s) = session else {
            return;
        };
        if s.refresher == Refresher::Us {
            self.timers
                .set(TimerKind::SessionRefresh(call), now + s.refresh_after());
        }
        self.timers
            .set(TimerKind::SessionExpiry(call), now + s.expire_after());
    }

    /// We refresh: an UPDATE without a body (RFC 3311, RFC 4028 §7.4), which the peer
    /// allowed in its INVITE.
    fn send_refresh(&mut self, now: Instant, call: CallHandle) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some(session) = c.session else {
            return;
        };
        if !matches!(c.state, CallState::Answered | CallState::Confirmed) {
            return;
        }
        let extra = [
            ("Contact", self.contact_header(c.peer.transport)),
            ("Session-Expires", session.request_header()),
            (
                "Min-SE",
                self.config
                    .session_timer
                    .min_se
                    .max(session_timer::MIN_MIN_SE)
                    .to_string(),
            ),
            ("Supported", "timer".to_string()),
        ];
        self.send_request(now, call, "UPDATE", &extra, false, true);
    }

    /// The final response to our refresh (RFC 4028 §7.2–§7.4, §10).
    fn on_refresh_response(&mut self, now: Instant, call: CallHandle, code: u16, msg: &Message) {
        let live = self
            .calls
            .get(&call)
            .is_some_and(|c| matches!(c.state, CallState::Answered | CallState::Confirmed));
        if !live {
            return;
        }
        match code {
            200..=299 => {
                let session = session_timer::from_refresh_response(&Asked::of(msg));
                self.start_session(now, call, session);
            }
            422 => {
                // §7.3: ask again, with at least the interval the peer wants.
                let min_se = Asked::of(msg).min_se.unwrap_or(0);
                let raised = self
                    .calls
                    .get_mut(&call)
                    .and_then(|c| c.session.as_mut())
                    .filter(|s| min_se > s.interval)
                    .map(|s| s.interval = min_se)
                    .is_some();
                if raised {
                    self.send_refresh(now, call);
                }
            }
            // RFC 3261 §12.2.1.2: the dialog is gone.
            408 | 481 => self.end_session(now, call),
            // Not refreshed: the expiry ends the session unless a refresh comes meanwhile.
            _ => {}
        }
    }

    /// The session expired or cannot be refreshed (RFC 4028 §10): BYE, and the call ends.
    fn end_session(&mut self, now: Instant, call: CallHandle) {
        let live = self
            .calls
            .get(&call)
            .is_some_and(|c| matches!(c.state, CallState::Answered | CallState::Confirmed));
        if !live {
            return;
        }
        let reason = Reason::sip(408, "Session timer expired");
        self.send_bye(now, call, false, Some(&reason));
        self.end_call(call, EndReason::SessionExpired);
    }

    /// UPDATE inside a dialog (RFC 3311): without a body, a session refresh (RFC 4028)
    /// answered here; with an offer, handed to the application as an [`Event::ReInvite`]
    /// and answered by [`Endpoint::answer_reinvite`] (no ACK follows).
    fn on_update(&mut self, now: Instant, key: TxKey, ctx: ResponseCtx, dest: Peer, req: Request) {
        let Some(call) = self.dialog_for(&req) else {
            self.respond_new_tx(now, key, false, ctx, dest, Refusal::new(481), None);
            return;
        };
        if let Some(r) = self.check_remote_cseq(call, req.cseq) {
            self.respond_new_tx(now, key, false, ctx, dest, r, None);
            return;
        }
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let has_offer = !req.body.is_empty();
        let refusal = if c.state == CallState::Terminating {
            Some(Refusal::new(481))
        } else if has_offer && c.reinvite.is_some() {
            // RFC 3311 §5.2: an offer while another is being answered.
            let secs = self.rng.gen_range(0..=10u32);
            Some(Refusal::new(500).with("Retry-After", secs.to_string()))
        } else if has_offer && c.pending_2xx.as_ref().is_some_and(|p| p.late_offer) {
            // Our own offer awaits its answer.
            Some(Refusal::new(491))
        } else if has_offer {
            check_offer_body(&req)
        } else {
            None
        };
        if let Some(r) = refusal {
            self.respond_new_tx(now, key, false, ctx, dest, r, None);
            return;
        }
        let session = match self.session_decision(&req) {
            Ok(session) => session,
            Err(r) => {
                self.respond_new_tx(now, key, false, ctx, dest, r, None);
                return;
            }
        };
        let contact = req
            .msg
            .first("Contact")
            .and_then(NameAddr::parse)
            .map(|n| n.uri);
        if has_offer {
            let tx = ServerTx {
                invite: false,
                state: ServerState::Proceeding,
                dest,
                ctx,
                to_tag: c.local_tag.clone(),
                last_response: None,
                retransmit_interval: self.config.timers.t1,
            };
            self.server_txs.insert(key.clone(), tx);
            if let Some(c) = self.calls.get_mut(&call) {
                c.reinvite = Some(PendingReInvite {
                    tx: key,
                    has_offer,
                    cseq: req.cseq,
                    contact,
                    record_route: Vec::new(),
                    session,
                    update: true,
                });
            }
            self.events.push_back(Event::ReInvite {
                call,
                sdp: Some(req.body),
            });
            return;
        }
        let transport = dest.transport;
        if let Some(c) = self.calls.get_mut(&call) {
            // UPDATE refreshes the remote target (RFC 3311 §5.2).
            if let Some(target) = contact {
                c.remote_target = target;
            }
        }
        let mut ok = Refusal::new(200)
            .with("Contact", self.contact_header(transport))
            .with("Supported", "timer");
        if let Some(s) = session {
            ok = ok.with("Session-Expires", s.response_header());
            if s.require {
                ok = ok.with("Require", "timer");
            }
        }
        self.respond_new_tx(now, key, false, ctx, dest, ok, None);
        self.start_session(now, call, session);
    }

    /// A response copying Via/From/To/Call-ID/CSeq (RFC 3261 §8.2.6.2); the To
    /// gets `to_tag` unless it already has one or this is a 100 (§8.2.6.2).
    fn response_bytes(
        &self,
        ctx: &ResponseCtx,
        code: u16,
        to_tag: Option<&str>,
        extra: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let body = body.unwrap_or_default();
        let mut out = String::with_capacity(512);
        let _ = write!(out, "SIP/2.0 {code} {}\r\n", reason_phrase(code));
        for v in &ctx.vias {
            let _ = write!(out, "Via: {v}\r\n");
        }
        if let Some(f) = &ctx.from {
            let _ = write!(out, "From: {f}\r\n");
        }
        if let Some(t) = &ctx.to {
            match to_tag {
                Some(tag) if !ctx.to_has_tag && code != 100 => {
                    let _ = write!(out, "To: {t};tag={tag}\r\n");
                }
                _ => {
                    let _ = write!(out, "To: {t}\r\n");
                }
            }
        }
        if let Some(c) = &ctx.call_id {
            let _ = write!(out, "Call-ID: {c}\r\n");
        }
        if let Some(c) = &ctx.cseq {
            let _ = write!(out, "CSeq: {c}\r\n");
        }
        for (name, value) in extra {
            if value.is_empty() {
                let _ = write!(out, "{name}:\r\n");
            } else {
                let _ = write!(out, "{name}: {value}\r\n");
            }
        }
        let _ = write!(out, "Server: {}\r\n", self.config.user_agent);
        if !body.is_empty() {
            out.push_str("Content-Type: application/sdp\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

/// Checks what RFC 3261 §8.2 requires before a request is processed, in the
/// order the RFC gives: syntax (400, 505), method (501), URI scheme (416),
/// extensions (420). Content checks (415) depend on the method and come later.
fn validate(
    msg: Message,
    method: &Method,
    transport: Transport,
    top: &Via,
) -> Result<Request, Refusal> {
    let StartLine::Request { uri, version, .. } = &msg.start else {
        return Err(Refusal::new(400));
    };
    if version != "SIP/2.0" {
        return Err(Refusal::new(505));
    }
    if !msg.all("Via").all(message::via_line_is_strict) {
        return Err(Refusal::new(400));
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        // Missing or repeated single-valued headers (RFC 3261 §7.3.1, §8.1.1;
        // RFC 4475 §3.3.1, §3.3.8).
        if msg.count(name) != 1 {
            return Err(Refusal::new(400));
        }
    }
    for name in ["Max-Forwards", "Content-Type", "Content-Length"] {
        if msg.count(name) > 1 {
            return Err(Refusal::new(400));
        }
    }
    let from = msg
        .first("From")
        .filter(|v| message::split_commas(v).len() == 1)
        .and_then(NameAddr::parse)
        .ok_or_else(|| Refusal::new(400))?;
    let to = msg
        .first("To")
        .filter(|v| message::split_commas(v).len() == 1)
        .and_then(NameAddr::parse)
        .ok_or_else(|| Refusal::new(400))?;
    let call_id = msg.first("Call-ID").unwrap_or_default().to_string();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(Refusal::new(400));
    }
    let (cseq, cseq_method) = msg
        .first("CSeq")
        .and_then(parse_cseq)
        .ok_or_else(|| Refusal::new(400))?;
    if cseq_method != method.as_str() {
        return Err(Refusal::new(400));
    }
    if let Some(mf) = msg.first("Max-Forwards") {
        if parse_decimal(mf.as_bytes()).is_none_or(|n| n > 255) {
            return Err(Refusal::new(400));
        }
    }
    let mut body = msg.body.clone();
    match msg.first("Content-Length") {
        Some(cl) => {
            let n = parse_decimal(cl.as_bytes()).ok_or_else(|| Refusal::new(400))?;
            if n > body.len() {
                // Over UDP the rest of the body can never arrive (RFC 3261 §18.3).
                return Err(Refusal::new(400));
            }
            // Octets beyond Content-Length are ignored (RFC 4475 §3.1.1.8).
            body.truncate(n);
        }
        None if transport.is_reliable() => return Err(Refusal::new(400)),
        None => {}
    }
    if let Method::Extension(_) = method {
        return Err(Refusal::new(501).with("Allow", ALLOW));
    }
    match uri_scheme(uri).as_deref() {
        Some("sip" | "sips") => {
            if parse_sip_uri(uri).is_none() {
                return Err(Refusal::new(400));
            }
        }
        Some("tel") => {}
        Some(_) => return Err(Refusal::new(416)),
        None => return Err(Refusal::new(400)),
    }
    if !matches!(method, Method::Ack | Method::Cancel) {
        // Session timers (RFC 4028) are the one extension we support (§8.2.2.3).
        let unsupported: Vec<String> = msg
            .list("Require")
            .into_iter()
            .filter(|tag| !tag.trim().eq_ignore_ascii_case("timer"))
            .collect();
        if !unsupported.is_empty() {
            return Err(Refusal::new(420).with("Unsupported", unsupported.join(", ")));
        }
    }
    let top_via_rport = param(&top.params, "rport").is_some();
    Ok(Request {
        method: method.clone(),
        uri: uri.clone(),
        from,
        to,
        call_id,
        cseq,
        body,
        msg,
        top_via_rport,
    })
}

/// INVITE bodies must be SDP (RFC 3261 §8.2.3, §21.4.19).
fn check_offer_body(req: &Request) -> Option<Refusal> {
    if req.body.is_empty() {
        return None;
    }
    let ct = req.msg.first("Content-Type").unwrap_or_default();
    let media = ct.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/sdp") {
        None
    } else {
        Some(Refusal::new(415).with("Accept", "application/sdp"))
    }
}

fn accepts_sdp(accept: &str) -> bool {
    if accept.trim().is_empty() {
        // An empty Accept means no body is acceptable, but we always send SDP;
        // be lenient as most UAs mean "default" here.
        return true;
    }
    message::split_commas(accept).iter().any(|a| {
        let m = a.split(';').next().unwrap_or_default().trim();
        m.eq_ignore_ascii_case("application/sdp")
            || m.eq_ignore_ascii_case("application/*")
            || m == "*/*"
    })
}

fn request_uri_parts(uri: &str) -> (Option<String>, String) {
    match uri_scheme(uri).as_deref() {
        Some("tel") => {
            let number = uri
                .split_once(':')
                .map(|(_, r)| r.split(';').next().unwrap_or_default())
                .unwrap_or_default();
            (Some(message::percent_decode(number)), String::new())
        }
        _ => match parse_sip_uri(uri) {
            Some(u) => (u.user, u.host),
            None => (None, String::new()),
        },
    }
}

/// Copies what a response needs, filling `received`/`rport` into the top Via
/// (RFC 3261 §18.2.1, RFC 3581 §4).
/// The display name of a name-addr (RFC 3261 §25.1: a token list or a quoted string before
/// `<`), unquoted and unescaped.
fn display_name(value: &str) -> Option<String> {
    let value = value.trim();
    let name = if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        loop {
            match chars.next()? {
                '\\' => out.push(chars.next()?),
                '"' => break,
                c => out.push(c),
            }
        }
        out
    } else {
        let (before, _) = value.split_once('<')?;
        before.trim().to_owned()
    };
    (!name.is_empty()).then_some(name)
}

fn response_ctx(msg: &Message, vias: &[String], top: &Via, from: Peer) -> ResponseCtx {
    let mut vias = vias.to_vec();
    if let Some(first) = vias.first_mut() {
        *first = stamp_top_via(first, top, from.addr);
    }
    let to = msg.first("To").map(str::to_string);
    let to_has_tag = to
        .as_deref()
        .and_then(NameAddr::parse)
        .is_some_and(|n| n.tag().is_some());
    ResponseCtx {
        vias,
        from: msg.first("From").map(str::to_string),
        to,
        to_has_tag,
        call_id: msg.first("Call-ID").map(str::to_string),
        cseq: msg.first("CSeq").map(str::to_string),
    }
}

fn stamp_top_via(raw: &str, top: &Via, source: SocketAddr) -> String {
    let wants_rport = matches!(param(&top.params, "rport"), Some(None));
    let host_is_source = top.host.parse::<IpAddr>().is_ok_and(|ip| ip == source.ip());
    if !wants_rport && host_is_source {
        return raw.to_string();
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, seg) in raw.split(';').enumerate() {
        let name = seg
            .split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if i > 0 && name == "received" {
            continue;
        }
        if i > 0 && name == "rport" && wants_rport {
            parts.push(format!("rport={}", source.port()));
            continue;
        }
        parts.push(seg.to_string());
    }
    parts.push(format!("received={}", source.ip()));
    parts.join(";")
}

/// Where responses go (RFC 3261 §18.2.2, RFC 3581 §4).
fn response_dest(top: &Via, from: Peer) -> Peer {
    if from.transport.is_reliable() {
        return from;
    }
    if matches!(param(&top.params, "rport"), Some(None)) {
        return from;
    }
    let port = top.port.unwrap_or(DEFAULT_SIP_PORT);
    Peer {
        transport: from.transport,
        addr: SocketAddr::new(from.addr.ip(), port),
        conn: None,
    }
}

/// Where requests we send inside the dialog go; see [`Endpoint::hangup`].
fn in_dialog_peer(from: Peer, rport: bool, route_set: &[String], contact: &str) -> Peer {
    if from.transport.is_reliable() {
        return from;
    }
    let literal = |uri: &str| {
        parse_sip_uri(uri).and_then(|u| {
            u.ip.map(|ip| Peer::udp(SocketAddr::new(ip, u.port.unwrap_or(DEFAULT_SIP_PORT))))
        })
    };
    if let Some(first) = route_set.first() {
        return literal(first).unwrap_or(from);
    }
    if rport {
        return from;
    }
    literal(contact).unwrap_or(from)
}

fn fmt_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Unknown",
    }
}
