//! One task per call: the default call flow (join the room named after the dialled user)
//! driving the SIP dialog and the call's leg on a media thread.

use std::net::SocketAddr;
use std::sync::Arc;

use chorus_mixer::{Codec, Encoding, Flow, LegId, LegSpec, LegUpdate};
use chorus_sip::{
    build_answer, build_offer, negotiate, parse_sdp, CallHandle, Direction, EndReason,
    IncomingCall, LocalMedia, Negotiated,
};
use tokio::sync::{mpsc, watch};
use tracing::{info, info_span, warn, Instrument};

use crate::rooms::{Member, MemberCommand, RoomKey};
use crate::sip_driver::{CallEvent, SipCommand};
use crate::Shared;

/// RFC 3261 §21.4.9 / RFC 3264 §6: nothing in the offer we can use.
const NOT_ACCEPTABLE_HERE: u16 = 488;
const NOT_FOUND: u16 = 404;
const SERVICE_UNAVAILABLE: u16 = 503;

pub(crate) fn spawn(
    shared: Arc<Shared>,
    incoming: IncomingCall,
    events: mpsc::UnboundedReceiver<CallEvent>,
    stop: watch::Receiver<bool>,
) {
    let call_uuid = uuid::Uuid::new_v4();
    let span = info_span!("call", %call_uuid, call_id = %incoming.call_id);
    shared.calls_started();
    tokio::spawn(
        async move {
            let guard = ActiveCall(shared.clone());
            run(shared, call_uuid, incoming, events, stop).await;
            drop(guard);
        }
        .instrument(span),
    );
}

/// Counts the call out however its task ends.
struct ActiveCall(Arc<Shared>);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.calls_ended();
    }
}

pub(crate) fn to_mixer_codec(n: &Negotiated) -> Codec {
    match n.codec {
        chorus_sip::Codec::Pcmu => Codec {
            encoding: Encoding::Pcmu,
            payload_type: n.pt,
        },
        chorus_sip::Codec::Pcma => Codec {
            encoding: Encoding::Pcma,
            payload_type: n.pt,
        },
        // The peer's fmtp (RFC 7587 §6.1)
        // says whether it wants in-band FEC and DTX from our encoder.
        chorus_sip::Codec::Opus => Codec {
            encoding: Encoding::Opus {
                fec: n.opus.is_some_and(|o| o.inband_fec),
                dtx: n.opus.is_some_and(|o| o.dtx),
            },
            payload_type: n.pt,
        },
    }
}

/// Our side of the stream, from the direction we answered (RFC 3264 §6.1). A peer that puts
/// hold on with `c=0.0.0.0` (RFC 3264 §8.4) gets nothing sent.
fn to_flow(n: &Negotiated) -> Flow {
    let (send, receive) = match n.local_direction {
        Direction::SendRecv => (true, true),
        Direction::SendOnly => (true, false),
        Direction::RecvOnly => (false, true),
        Direction::Inactive => (false, false),
    };
    Flow {
        send: send && n.remote_addr.is_some(),
        receive,
    }
}

pub(crate) fn leg_update(n: &Negotiated) -> LegUpdate {
    LegUpdate {
        codec: to_mixer_codec(n),
        telephone_event_pt: n.telephone_event_pt,
        remote: n.remote_addr,
        flow: to_flow(n),
    }
}

async fn run(
    shared: Arc<Shared>,
    call_uuid: uuid::Uuid,
    incoming: IncomingCall,
    mut events: mpsc::UnboundedReceiver<CallEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let call = incoming.call;
    let reject = |status| {
        let _ = shared.sip.send(SipCommand::Reject { call, status });
    };
    // The call belongs to the account its Request-URI routes to (domain or number pattern),
    // else to the first account.
    let routed = crate::config::route_call(
        &shared.config.accounts,
        incoming.request_user.as_deref(),
        &incoming.request_host,
    );
    let Some(account) = routed.cloned() else {
        reject(SERVICE_UNAVAILABLE);
        return;
    };
    let answer_url = account
        .answer_url
        .clone()
        .map(|u| (u, account.answer_method))
        .or_else(|| {
            shared
                .config
                .answer_url
                .clone()
                .map(|u| (u, shared.config.answer_method))
        });
    let room = incoming.request_user.clone().filter(|r| !r.is_empty());
    if room.is_none() && answer_url.is_none() {
        info!(request_host = %incoming.request_host, "no room in the Request-URI");
        reject(NOT_FOUND);
        return;
    }
    let Some(socket) = shared.ports.allocate() else {
        warn!("RTP port range exhausted");
        reject(SERVICE_UNAVAILABLE);
        return;
    };
    let local_port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut local = LocalMedia {
        addr: SocketAddr::new(shared.config.advertise_ip, local_port),
        session_id: rand::random::<u32>().into(),
        session_version: 1,
        codecs: vec![
            chorus_sip::Codec::Opus,
            chorus_sip::Codec::Pcmu,
            chorus_sip::Codec::Pcma,
        ],
        telephone_event: true,
    };
    // Early offer: answer it now. Late offer (RFC 3261 §13.2.1): offer everything, learn the
    // codec from the answer in the ACK; until then receive only.
    let (sdp, mut negotiated) = match incoming.sdp.as_deref() {
        Some(offer) => {
            let result = parse_sdp(offer).and_then(|remote| negotiate(&remote, &local));
            match result {
                Ok(n) => (build_answer(&local, &n), Some(n)),
                Err(error) => {
                    info!(%error, "offer not acceptable");
                    reject(NOT_ACCEPTABLE_HERE);
                    return;
                }
            }
        }
        None => (build_offer(&local), None),
    };
    let leg = LegId(shared.next_leg());
    let mut media = crate::media_watch::MediaWatch::new(shared.config.media_timeouts);
    let spec = LegSpec {
        id: leg,
        socket: Some(socket),
        audio_level_id: negotiated.as_ref().and_then(|n| n.audio_level_ext),
        codec: negotiated.as_ref().map_or(Codec::PCMU, to_mixer_codec),
        telephone_event_pt: negotiated.as_ref().and_then(|n| n.telephone_event_pt),
        remote: negotiated.as_ref().and_then(|n| n.remote_addr),
        flow: negotiated.as_ref().map_or(
            Flow {
                send: false,
                receive: true,
            },
            to_flow,
        ),
        activity: Some(media.activity()),
    };
    if let Some((url, method)) = answer_url {
        let thread = shared.mixer.pick_thread();
        let private = shared.rooms.private_room();
        // Nothing is sent before the caller has our SDP (the 183 or the 200): a phone
        // ringing would otherwise get our silence instead of its own ringback.
        let mut spec = spec;
        spec.flow.send = false;
        if let Err(error) = shared.mixer.add_leg(thread, private, spec) {
            warn!(%error, "media thread refused the leg");
            reject(SERVICE_UNAVAILABLE);
            return;
        }
        let setup = crate::flow::Setup {
            shared: shared.clone(),
            call,
            call_uuid: call_uuid.to_string(),
            account,
            answer: chorus_flow::Target { url, method },
            leg,
            thread,
            room: private,
            sdp,
            local,
            negotiated,
            from: user_part(&incoming.from),
            to: room.unwrap_or_default(),
            caller_name: incoming.from_display.clone().unwrap_or_default(),
            events,
            stop,
            media,
        };
        crate::flow::run(setup).await;
        return;
    }
    let room = room.unwrap_or_default();
    let key = RoomKey {
        account: account.auth_id.clone(),
        name: room.clone(),
    };
    let codec_rate = spec.codec.encoding.rate();
    let (member_tx, mut member_rx) = mpsc::unbounded_channel();
    let member_id = shared.rooms.next_member_id();
    let member = Member {
        id: member_id,
        leg,
        call_uuid: call_uuid.to_string(),
        from: user_part(&incoming.from),
        to: room.clone(),
        caller_name: String::new(),
        inbound: true,
        joined: std::time::Instant::now(),
        flags: Default::default(),
        codec_rate,
        commands: member_tx,
        waiting: false,
    };
    let (room_id, thread) = shared.rooms.join(key.clone(), &shared.mixer, member);
    let entry = Entry {
        id: room_id,
        thread,
    };
    if let Err(error) = shared.mixer.add_leg(entry.thread, entry.id, spec) {
        warn!(%error, "media thread refused the leg");
        shared.rooms.leave(&key, entry.id, member_id);
        reject(SERVICE_UNAVAILABLE);
        return;
    }
    let _ = shared.sip.send(SipCommand::Answer { call, sdp });
    media.answered(tokio::time::Instant::now());
    info!(room = %room, rtp_port = local_port, from = %incoming.from, "call joined room");

    let update = |n: &Negotiated| {
        let update = leg_update(n);
        if let Err(error) = shared.mixer.update_leg(entry.thread, leg, update) {
            warn!(%error, "cannot update leg");
        }
        shared.rooms.update_member(&key, member_id, |m| {
            m.codec_rate = update.codec.encoding.rate();
        });
    };
    let mut hanging_up = false;
    let mut in_room = true;
    let reason = loop {
        let watch_at = media.next_check();
        tokio::select! {
            _ = crate::media_watch::sleep_until(watch_at), if watch_at.is_some() && !hanging_up => {
                if let Some(timeout) = media.check(tokio::time::Instant::now(), negotiated.as_ref()) {
                    warn!(timeout = timeout.describe(), "RTP timeout; hanging up");
                    hanging_up = true;
                    let reason = timeout.reason();
                    let _ = shared.sip.send(SipCommand::HangupWithReason { call, reason });
                }
            }
            event = events.recv() => match event {
                Some(CallEvent::Confirmed { sdp }) | Some(CallEvent::ReInviteConfirmed { sdp }) => {
                    // An answer to our offer (late offer, or re-INVITE without SDP).
                    if let Some(answer) = sdp {
                        match parse_sdp(&answer).and_then(|remote| negotiate(&remote, &local)) {
                            Ok(n) => { update(&n); negotiated = Some(n); }
                            Err(error) => {
                                // RFC 3261 §13.3.1.4: a bad answer in the ACK ends the call.
                                info!(%error, "unusable answer in ACK; hanging up");
                                hang_up(&shared, call, &mut hanging_up);
                            }
                        }
                    }
                }
                Some(CallEvent::ReInvite { sdp }) => {
                    handle_reinvite_for(&shared, call, &mut local, sdp, &mut negotiated, &update);
                }
                Some(CallEvent::Dtmf { .. }) => {}
                Some(CallEvent::Ended(reason)) => break reason,
                None => break EndReason::TransportError,
            },
            changed = stop.changed(), if !hanging_up => {
                if changed.is_err() || *stop.borrow() {
                    hang_up(&shared, call, &mut hanging_up);
                }
            }
            Some(command) = member_rx.recv() => match command {
                MemberCommand::Hangup => hang_up(&shared, call, &mut hanging_up),
                MemberCommand::Kick => {
                    // A kick ends only the conference; with the default flow nothing follows
                    // it, so the call ends too.
                    if in_room {
                        leave_room(&shared, &key, entry, leg, member_id);
                        in_room = false;
                        info!(room = %room, member_id, "kicked");
                    }
                    hang_up(&shared, call, &mut hanging_up);
                }
                // Rooms of the default flow start at once and have no stayAlone.
                MemberCommand::RoomStarted | MemberCommand::CheckAlone => {}
            },
        }
    };
    if in_room {
        leave_room(&shared, &key, entry, leg, member_id);
    }
    info!(room = %room, ?reason, "call ended");
}

/// Where the call's leg lives.
#[derive(Clone, Copy)]
struct Entry {
    id: chorus_mixer::RoomId,
    thread: usize,
}

fn leave_room(shared: &Shared, key: &RoomKey, entry: Entry, leg: LegId, member_id: u64) {
    if let Err(error) = shared.mixer.remove_leg(entry.thread, leg) {
        warn!(%error, "cannot remove leg");
    }
    shared.rooms.leave(key, entry.id, member_id);
}

/// `sip:alice@host` → `alice`: the caller's number or name as webhooks and the REST API show
/// it; the whole URI when it has no user part.
fn user_part(uri: &str) -> String {
    let bare = uri
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .trim_start_matches("tel:");
    match bare.split_once('@') {
        Some((user, _)) if !user.is_empty() => user.split(';').next().unwrap_or(user).to_owned(),
        _ => uri.to_owned(),
    }
}

fn hang_up(shared: &Shared, call: CallHandle, hanging_up: &mut bool) {
    if !*hanging_up {
        *hanging_up = true;
        let _ = shared.sip.send(SipCommand::Hangup { call });
    }
}

/// RFC 3264 §8: a new offer in the dialog — hold (sendonly/inactive/c=0.0.0.0), unhold, or a
/// session refresh repeating the same SDP. Media continues throughout.
pub(crate) fn handle_reinvite_for(
    shared: &Shared,
    call: CallHandle,
    local: &mut LocalMedia,
    sdp: Option<Vec<u8>>,
    negotiated: &mut Option<Negotiated>,
    update: &dyn Fn(&Negotiated),
) {
    let Some(offer) = sdp else {
        // Re-INVITE without an offer: we offer, the answer comes in the ACK.
        local.session_version += 1;
        let _ = shared.sip.send(SipCommand::AnswerReinvite {
            call,
            sdp: build_offer(local),
        });
        return;
    };
    match parse_sdp(&offer).and_then(|remote| negotiate(&remote, local)) {
        Ok(n) => {
            // RFC 3264 §8: the version goes up only when the answer changes.
            if negotiated.as_ref() != Some(&n) {
                local.session_version += 1;
            }
            update(&n);
            let sdp = build_answer(local, &n);
            *negotiated = Some(n);
            let _ = shared.sip.send(SipCommand::AnswerReinvite { call, sdp });
        }
        Err(error) => {
            // RFC 3261 §14.2: a refused re-INVITE leaves the session as it was.
            info!(%error, "re-INVITE offer not acceptable");
            let _ = shared.sip.send(SipCommand::RejectReinvite {
                call,
                status: NOT_ACCEPTABLE_HERE,
            });
        }
    }
}
