//! The SIP socket driver: the one task that owns the sans-IO [`Endpoint`], feeds it UDP
//! datagrams and framed TCP messages, fires its timers, sends what it polls out, and routes
//! its events to per-call tasks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chorus_sip::guard::SourceGuard;
use chorus_sip::{
    CallHandle, ConnectionId, DropCounts, DropReason, EndReason, Endpoint, Event, IncomingCall,
    ParseError, Peer, StreamFramer, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use crate::sip_security::{Admission, Decision, SipCounters};

/// What a call task asks of the SIP layer.
#[derive(Debug)]
pub(crate) enum SipCommand {
    Answer {
        call: CallHandle,
        sdp: Vec<u8>,
    },
    /// 183 with SDP: early media before the answer (`<PreAnswer>`).
    Progress {
        call: CallHandle,
        sdp: Vec<u8>,
    },
    Reject {
        call: CallHandle,
        status: u16,
    },
    AnswerReinvite {
        call: CallHandle,
        sdp: Vec<u8>,
    },
    RejectReinvite {
        call: CallHandle,
        status: u16,
    },
    Hangup {
        call: CallHandle,
    },
    /// A hangup whose BYE says why (RFC 3326), e.g. the media timed out.
    HangupWithReason {
        call: CallHandle,
        reason: chorus_sip::Reason,
    },
}

/// What the SIP layer tells a call task.
#[derive(Debug)]
pub(crate) enum CallEvent {
    Confirmed {
        sdp: Option<Vec<u8>>,
    },
    ReInvite {
        sdp: Option<Vec<u8>>,
    },
    ReInviteConfirmed {
        sdp: Option<Vec<u8>>,
    },
    /// A DTMF digit carried by SIP INFO (`application/dtmf-relay` or `application/dtmf`),
    /// the fallback when the peer did not negotiate RFC 4733 telephone-event.
    // The call task does not read the digit yet: the flow interpreter's `GetDigits` will.
    #[allow(dead_code)]
    Dtmf {
        digit: char,
        duration_ms: u32,
    },
    Ended(EndReason),
}

enum TcpEvent {
    Opened {
        conn: ConnectionId,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    Message {
        conn: ConnectionId,
        addr: SocketAddr,
        data: Vec<u8>,
    },
    /// The connection ended; `error` when we closed it because its framing broke.
    Closed {
        conn: ConnectionId,
        error: Option<DropReason>,
    },
}

/// Spawns a call task for each new INVITE.
pub(crate) trait CallSpawner: Send + 'static {
    fn spawn(&mut self, incoming: IncomingCall, events: mpsc::UnboundedReceiver<CallEvent>);
    /// While shutting down, new calls are refused instead.
    fn refusing(&self) -> bool;
    /// While draining: the `Retry-After` (seconds) of the 503 new INVITEs and OPTIONS get.
    fn unavailable(&self) -> Option<u32>;
    /// The `Reason` (RFC 3326) the BYEs of engine hangups carry now, if any.
    fn hangup_reason(&self) -> Option<chorus_sip::Reason>;
}

pub(crate) struct SipDriver<S> {
    pub endpoint: Endpoint,
    pub udp: UdpSocket,
    pub commands: mpsc::UnboundedReceiver<SipCommand>,
    pub spawner: S,
    pub stop: watch::Receiver<bool>,
    pub max_message: usize,
    /// Requests and responses by method and status, both ways.
    pub metrics: std::sync::Arc<crate::sip_metrics::SipMetrics>,
    /// Per-source admission before parsing; shared with the TCP accept loop.
    pub guard: Arc<Mutex<SourceGuard>>,
    /// Allow-lists and digest authentication of new INVITEs.
    pub admission: Admission,
    pub counters: Arc<SipCounters>,
    /// Drops counted here rather than by the endpoint or the guard (TCP framing, account
    /// allow-lists).
    pub drops: DropCounts,
}

fn lock(guard: &Mutex<SourceGuard>) -> MutexGuard<'_, SourceGuard> {
    // The guard's state stays consistent even if a holder panicked.
    guard.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: CallSpawner> SipDriver<S> {
    pub async fn run(mut self, tcp: TcpListener) {
        // Bounded: a peer flooding its TCP connection is slowed down at its own socket instead of
        // growing this queue.
        let (tcp_tx, mut tcp_rx) = mpsc::channel(1024);
        let accept = tokio::spawn(accept_loop(
            tcp,
            tcp_tx,
            self.max_message,
            Arc::clone(&self.guard),
        ));
        let mut writers: HashMap<ConnectionId, mpsc::UnboundedSender<Vec<u8>>> = HashMap::new();
        let mut calls: HashMap<CallHandle, mpsc::UnboundedSender<CallEvent>> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            let timer = self.endpoint.poll_timeout().map(Instant::from_std);
            tokio::select! {
                received = self.udp.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.input(Peer::udp(from), &buf[..len]),
                    // ICMP port-unreachable from an earlier send and the like: keep serving.
                    Err(e) => debug!(error = %e, "SIP UDP receive error"),
                },
                Some(event) = tcp_rx.recv() => match event {
                    TcpEvent::Opened { conn, writer } => { writers.insert(conn, writer); }
                    TcpEvent::Message { conn, addr, data } => self.input(Peer::tcp(addr, conn), &data),
                    TcpEvent::Closed { conn, error } => {
                        writers.remove(&conn);
                        self.endpoint.connection_closed(conn);
                        if let Some(reason) = error {
                            self.drops.add(reason);
                        }
                    }
                },
                Some(command) = self.commands.recv() => self.apply(command),
                () = sleep_until(timer), if timer.is_some() => {
                    self.endpoint.handle_timeout(Instant::now().into_std());
                }
                _ = self.stop.changed() => break,
            }
            // Events first: a new INVITE may be challenged or dropped silently, which must
            // happen before its 100 Trying leaves.
            self.dispatch(&mut calls);
            self.flush(&writers).await;
            self.publish();
        }
        accept.abort();
    }

    /// Feeds one message to the endpoint. The endpoint is written never to panic on network
    /// input; should a bug make it panic anyway, the message is dropped and logged rather than
    /// taking every call of the process down with the driver task.
    fn input(&mut self, from: Peer, data: &[u8]) {
        let now = Instant::now().into_std();
        if lock(&self.guard).admit(now, from.addr.ip()).is_err() {
            // Not allowed, over its rate or banned: dropped unparsed, counted by the guard.
            return;
        }
        self.metrics.received.count(data);
        self.endpoint.set_unavailable(self.spawner.unavailable());
        let endpoint = &mut self.endpoint;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            endpoint.handle_input(now, from, data);
        }));
        if outcome.is_err() {
            error!(from = %from.addr, len = data.len(), "SIP endpoint panicked on input; message dropped");
        }
    }

    /// Stores the drop and ban totals where `/metrics` reads them.
    fn publish(&self) {
        let mut drops = self.endpoint.stats().drops();
        drops.merge(&self.drops);
        let bans = {
            let guard = lock(&self.guard);
            drops.merge(&guard.stats().drops);
            guard.stats().bans
        };
        self.counters.store_drops(&drops, bans);
    }

    fn apply(&mut self, command: SipCommand) {
        let now = Instant::now().into_std();
        let (call, result) = match command {
            SipCommand::Answer { call, sdp } => (call, self.endpoint.answer(now, call, sdp)),
            SipCommand::Progress { call, sdp } => (call, self.endpoint.progress(now, call, sdp)),
            SipCommand::Reject { call, status } => (call, self.endpoint.reject(now, call, status)),
            SipCommand::AnswerReinvite { call, sdp } => {
                (call, self.endpoint.answer_reinvite(now, call, sdp))
            }
            SipCommand::RejectReinvite { call, status } => {
                (call, self.endpoint.reject_reinvite(now, call, status))
            }
            SipCommand::HangupWithReason { call, reason } => {
                (call, self.endpoint.hangup_with_reason(now, call, &reason))
            }
            SipCommand::Hangup { call } => match self.spawner.hangup_reason() {
                Some(reason) => (call, self.endpoint.hangup_with_reason(now, call, &reason)),
                None => (call, self.endpoint.hangup(now, call)),
            },
        };
        if let Err(error) = result {
            // The call may have ended on the wire meanwhile (BYE crossing our answer).
            debug!(?call, %error, "SIP command not applied");
        }
    }

    async fn flush(&mut self, writers: &HashMap<ConnectionId, mpsc::UnboundedSender<Vec<u8>>>) {
        while let Some(transmit) = self.endpoint.poll_transmit() {
            self.metrics.sent.count(&transmit.payload);
            match transmit.peer.transport {
                Transport::Udp => {
                    if let Err(e) = self
                        .udp
                        .send_to(&transmit.payload, transmit.peer.addr)
                        .await
                    {
                        debug!(error = %e, to = %transmit.peer.addr, "SIP UDP send failed");
                    }
                }
                Transport::Tcp => {
                    let writer = transmit.peer.conn.and_then(|c| writers.get(&c));
                    match writer {
                        Some(w) => {
                            let _ = w.send(transmit.payload);
                        }
                        None => debug!(to = %transmit.peer.addr, "no TCP connection for message"),
                    }
                }
            }
        }
    }

    fn dispatch(&mut self, calls: &mut HashMap<CallHandle, mpsc::UnboundedSender<CallEvent>>) {
        while let Some(event) = self.endpoint.poll_event() {
            let (call, event) = match event {
                Event::IncomingCall(incoming) => {
                    let call = incoming.call;
                    let now = Instant::now().into_std();
                    if self.spawner.refusing() {
                        // RFC 3261 §21.5.4: we are going away; another server may take it.
                        self.endpoint.set_unavailable(self.spawner.unavailable());
                        let _ = self.endpoint.reject(now, call, 503);
                        continue;
                    }
                    match self.admission.decide(now, &incoming, &self.counters) {
                        Decision::Admit => {}
                        Decision::Challenge(challenges) => {
                            let headers: Vec<(&str, String)> = challenges
                                .into_iter()
                                .map(|c| ("WWW-Authenticate", c))
                                .collect();
                            let _ = self.endpoint.reject_with(now, call, 401, &headers);
                            continue;
                        }
                        Decision::Discard => {
                            self.drops.add(DropReason::NotAllowed);
                            let _ = self.endpoint.discard(now, call);
                            continue;
                        }
                    }
                    let (tx, rx) = mpsc::unbounded_channel();
                    calls.insert(call, tx);
                    self.spawner.spawn(incoming, rx);
                    continue;
                }
                Event::CallConfirmed { call, sdp } => (call, CallEvent::Confirmed { sdp }),
                Event::ReInvite { call, sdp } => (call, CallEvent::ReInvite { sdp }),
                Event::ReInviteConfirmed { call, sdp } => {
                    (call, CallEvent::ReInviteConfirmed { sdp })
                }
                Event::Dtmf {
                    call,
                    digit,
                    duration_ms,
                } => (call, CallEvent::Dtmf { digit, duration_ms }),
                Event::CallEnded { call, reason } => {
                    if let Some(tx) = calls.remove(&call) {
                        let _ = tx.send(CallEvent::Ended(reason));
                    }
                    continue;
                }
            };
            if let Some(tx) = calls.get(&call) {
                let _ = tx.send(event);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<TcpEvent>,
    max: usize,
    guard: Arc<Mutex<SourceGuard>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let now = Instant::now().into_std();
                if lock(&guard).admit(now, addr.ip()).is_err() {
                    // A source not allowed, or banned, gets its connection closed at once.
                    drop(stream);
                    continue;
                }
                let conn = ConnectionId(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed));
                tokio::spawn(serve_connection(stream, addr, conn, events.clone(), max));
            }
            Err(e) => {
                warn!(error = %e, "SIP TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    conn: ConnectionId,
    events: mpsc::Sender<TcpEvent>,
    max: usize,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    if events
        .send(TcpEvent::Opened { conn, writer: tx })
        .await
        .is_err()
    {
        return;
    }
    let write = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if writer.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new(max);
    let mut buf = vec![0u8; 16 * 1024];
    let mut error = None;
    'read: loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_message() {
                Ok(Some(data)) => {
                    if events
                        .send(TcpEvent::Message { conn, addr, data })
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // RFC 3261 §18.3: without a usable Content-Length the stream cannot be
                    // re-synchronised; close it.
                    debug!(%addr, error = %e, "closing SIP TCP connection");
                    error = Some(match e {
                        ParseError::TooLarge { .. } => DropReason::Oversize,
                        _ => DropReason::Malformed,
                    });
                    break 'read;
                }
            }
        }
    }
    let _ = events.send(TcpEvent::Closed { conn, error }).await;
    write.abort();
}
