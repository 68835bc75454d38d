//! `<Conference>` for one member, as API.md §7.2 lays it out: apply the member's settings,
//! join (or be refused when the room is full), send the enter callback, stay until a kick,
//! a hangup or the caller leaving, then send the exit callback and hand the flow back to the
//! interpreter (next verb or `action`).
//!
//! Room-wide rules live here too: `startConferenceOnEnter` (members wait, unmixed, hearing
//! `waitSound`, until a moderator arrives), `endConferenceOnExit` (kicks everyone),
//! `stayAlone="false"` (a member left alone is kicked), `timeLimit` (kicks everyone when it
//! expires), enter/exit sounds to the room, `hangupOnStar`, `digitsMatch`, `floorEvent` and
//! `relayDTMF`. Callbacks go out through the ordered, asynchronous webhook queue keyed by
//! the room instance, so a slow receiver never holds up a call or a room.

use std::time::Duration;

use chorus_flow::{Conference, DigitsMatcher, Element, Input, Method, Params, Sound, Target};
use chorus_media::tone::Sine;
use chorus_mixer::{MemberFlags, Playback};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::flow::{CallCtx, Ending, Gone, Wake};
use crate::rooms::{JoinRefused, Joined, Member, MemberCommand, RoomKey};

/// plivoframework's beep: 300 ms at 700 Hz, 200 ms apart (`tone_stream://%(300,200,700)`).
const BEEP_MS: usize = 300;
const BEEP_GAP_MS: usize = 200;
const BEEP_HZ: f64 = 700.0;
/// Tone amplitudes in sample units (`Sine` takes the peak value): -10 dBFS for a beep, each
/// DTMF component at -12 dBFS so the pair stays below full scale.
const BEEP_AMPLITUDE: f64 = 0.3 * 32_767.0;
const DTMF_AMPLITUDE: f64 = 0.25 * 32_767.0;
/// How long a `waitSound` playlist item may repeat before the list starts over.
const WAIT_LOOP_CAP: u32 = 1_000;

/// `count` beeps at `rate`.
pub(crate) fn beep(rate: u32, count: usize) -> Vec<i16> {
    let per_ms = rate as usize / 1000;
    let mut out = Vec::with_capacity(count * (BEEP_MS + BEEP_GAP_MS) * per_ms);
    let mut sine = Sine::new(BEEP_HZ, rate, BEEP_AMPLITUDE);
    for i in 0..count {
        if i > 0 {
            out.extend(std::iter::repeat_n(0i16, BEEP_GAP_MS * per_ms));
        }
        let start = out.len();
        out.resize(start + BEEP_MS * per_ms, 0);
        sine.fill(&mut out[start..]);
    }
    out
}

/// DTMF sent in band (ITU-T Q.23 pairs), for peers without telephone-event: 100 ms tones,
/// 60 ms gaps; `w` is half a second of silence, `W` a second.
pub(crate) fn dtmf_tones(digits: &str, rate: u32) -> Vec<i16> {
    let per_ms = rate as usize / 1000;
    let mut out = Vec::new();
    for c in digits.chars() {
        let (low, high) = match c {
            '1' => (697.0, 1209.0),
            '2' => (697.0, 1336.0),
            '3' => (697.0, 1477.0),
            'A' => (697.0, 1633.0),
            '4' => (770.0, 1209.0),
            '5' => (770.0, 1336.0),
            '6' => (770.0, 1477.0),
            'B' => (770.0, 1633.0),
            '7' => (852.0, 1209.0),
            '8' => (852.0, 1336.0),
            '9' => (852.0, 1477.0),
            'C' => (852.0, 1633.0),
            '*' => (941.0, 1209.0),
            '0' => (941.0, 1336.0),
            '#' => (941.0, 1477.0),
            'D' => (941.0, 1633.0),
            'w' => {
                out.extend(std::iter::repeat_n(0i16, 500 * per_ms));
                continue;
            }
            'W' => {
                out.extend(std::iter::repeat_n(0i16, 1000 * per_ms));
                continue;
            }
            _ => continue,
        };
        let n = 100 * per_ms;
        let mut a = vec![0i16; n];
        let mut b = vec![0i16; n];
        Sine::new(low, rate, DTMF_AMPLITUDE).fill(&mut a);
        Sine::new(high, rate, DTMF_AMPLITUDE).fill(&mut b);
        out.extend(a.iter().zip(&b).map(|(x, y)| x.saturating_add(*y)));
        out.extend(std::iter::repeat_n(0i16, 60 * per_ms));
    }
    out
}

/// The wait-sound playlist: `<Play>`, `<Speak>` and `<Wait>` from the `waitSound` document
/// (API.md §8.3), prepared as samples at the member's rate, looped while waiting.
struct WaitSound {
    items: Vec<(Vec<i16>, u32)>,
    next: usize,
    playing: Option<u64>,
}

impl WaitSound {
    fn empty() -> Self {
        Self {
            items: Vec::new(),
            next: 0,
            playing: None,
        }
    }
}

async fn prepare_sound_document(
    ctx: &mut CallCtx,
    target: &Target,
    params: Params,
) -> Result<Vec<(Vec<i16>, u32)>, Gone> {
    let body = match ctx.fetch(target, params).await? {
        Ok(body) => body,
        Err(reason) => {
            // API.md §8.3: a failed wait-sound fetch means silence, not an error.
            warn!(?reason, "sound document fetch failed; silence instead");
            return Ok(Vec::new());
        }
    };
    let doc = match chorus_flow::parse(&body) {
        Ok(doc) => doc,
        Err(error) => {
            warn!(%error, "sound document is not valid XML; silence instead");
            return Ok(Vec::new());
        }
    };
    let rate = ctx.rate();
    let mut items = Vec::new();
    for element in doc.elements {
        match element {
            Element::Play(p) => {
                if let Some(clip) = ctx.media(&p.url).await? {
                    items.push((clip.samples.clone(), wait_loops(p.loop_count)));
                }
            }
            Element::Speak(s) => {
                let woman = !matches!(s.voice, chorus_flow::Voice::Man);
                match ctx
                    .shared
                    .prompts
                    .speech(&s.text, woman, &s.language, rate)
                    .await
                {
                    Ok(clip) => items.push((clip.samples.clone(), wait_loops(s.loop_count))),
                    Err(error) => warn!(%error, "wait sound Speak failed"),
                }
            }
            Element::Wait(w) => {
                let n = (w.length as usize) * rate as usize;
                items.push((vec![0; n.min(rate as usize * 3600)], 1));
            }
            // Everything else is ignored in a sound document (API.md §8.3).
            _ => {}
        }
    }
    Ok(items)
}

/// `loop="0"` repeats (up to the cap), like the rest of the language.
fn wait_loops(count: u32) -> u32 {
    if count == 0 {
        WAIT_LOOP_CAP
    } else {
        count.min(WAIT_LOOP_CAP)
    }
}

/// Plays the next wait-sound item (the list loops).
fn play_next_wait(ctx: &mut CallCtx, wait: &mut WaitSound) {
    if wait.items.is_empty() {
        return;
    }
    let (samples, loops) = &wait.items[wait.next % wait.items.len()];
    wait.next = (wait.next + 1) % wait.items.len();
    let (samples, loops) = (samples.clone(), *loops);
    wait.playing = Some(ctx.start_playback(&samples, loops));
}

/// The samples of an enter/exit sound.
async fn sound_samples(ctx: &mut CallCtx, sound: &Sound, params: Params) -> Result<Vec<i16>, Gone> {
    Ok(match sound {
        Sound::Beep1 => beep(8000, 1),
        Sound::Beep2 => beep(8000, 2),
        Sound::Url(url) => {
            let target = Target {
                url: url.clone(),
                method: Method::Post,
            };
            let items = prepare_sound_document(ctx, &target, params).await?;
            // Prepared at this member's rate; resampled per listener below if needed.
            let mut all = Vec::new();
            for (samples, loops) in items {
                for _ in 0..loops.min(10) {
                    all.extend_from_slice(&samples);
                }
            }
            return Ok(resample_for(&all, ctx.rate(), 8000));
        }
    })
}

/// Sound prepared at `from` Hz as 8 kHz reference audio; each listener gets it at its own
/// rate through [`at_rate`].
fn resample_for(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    chorus_media::resample::convert(samples, from, to).unwrap_or_default()
}

fn at_rate(samples8k: &[i16], rate: u32) -> Vec<i16> {
    resample_for(samples8k, 8000, rate)
}

/// Plays room sounds (enter/exit) to the members given, skipping those waiting for a
/// moderator (they hear the wait sound).
fn play_to_members(ctx: &CallCtx, members: &[Member], samples8k: &[i16], thread: usize) {
    if samples8k.is_empty() {
        return;
    }
    for m in members.iter().filter(|m| !m.waiting) {
        let samples = at_rate(samples8k, m.codec_rate);
        let id = crate::control::NEXT_PLAYBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let playback = Playback::new(id, m.codec_rate, samples, 1);
        if let Err(error) = ctx.shared.mixer.play(thread, m.leg, playback) {
            debug!(%error, "cannot play the room sound");
        }
    }
}

/// Runs the `<Conference>` verb for this call. Returns the interpreter input: the member
/// left (kick, refused …) with the call still up.
pub(crate) async fn run(ctx: &mut CallCtx, conf: Conference) -> Result<Input, Gone> {
    let key = RoomKey {
        account: ctx.account.auth_id.clone(),
        name: conf.room.clone(),
    };
    let span = info_span!("conference", room = %conf.room);
    run_inner(ctx, conf, key).instrument(span).await
}

async fn run_inner(ctx: &mut CallCtx, conf: Conference, key: RoomKey) -> Result<Input, Gone> {
    let stay_alone = conf
        .stay_alone
        .unwrap_or(ctx.shared.config.stay_alone_default);
    let max_members = conf.max_members.clamp(1, ctx.shared.config.max_members_cap);
    let callback = conf.callback_url.clone().map(|url| Target {
        url,
        method: conf.callback_method,
    });
    ctx.clear_member_commands();
    let member_id = ctx.shared.rooms.next_member_id();
    let member = member_record(
        ctx,
        member_id,
        MemberFlags {
            muted: conf.muted,
            deaf: false,
        },
    );
    let joined: Joined = match ctx.shared.rooms.join_conference(
        key.clone(),
        ctx.thread,
        member,
        conf.start_conference_on_enter,
        max_members,
    ) {
        Ok(j) => j,
        Err(JoinRefused::Full) => {
            info!(max_members, "room full; member refused, the flow goes on");
            return Ok(Input::ConferenceRefused);
        }
    };
    let conf_uuid = joined.uuid.to_string();
    let order_key = conf_uuid.clone();
    info!(member_id, conference_uuid = %conf_uuid, first = joined.first, "joined conference");

    // record="true": the room is recorded from this member's join (one XML recording per
    // room instance; its `record` callback goes to this member's callbackUrl).
    let recording = if conf.record {
        crate::recording::ensure_conference_recording(
            ctx,
            &key,
            joined.id,
            crate::recording::format_of(conf.record_file_format),
            callback.as_ref(),
            &conf_uuid,
        )
    } else {
        None
    };
    // Into the room's thread and room; then the member's flags.
    ctx.move_to(joined.thread, joined.id).await?;
    let mut waiting = !joined.started;
    let flags = |waiting: bool| MemberFlags {
        muted: conf.muted || waiting,
        deaf: waiting,
    };
    let _ = ctx
        .shared
        .mixer
        .set_flags(ctx.thread, ctx.leg, flags(waiting));

    let base_params = |action: &str, event: &str| -> Params {
        vec![
            ("ConferenceAction".to_string(), action.to_string()),
            ("Event".to_string(), event.to_string()),
            ("ConferenceName".to_string(), conf.room.clone()),
            ("ConferenceUUID".to_string(), conf_uuid.clone()),
            ("ConferenceMemberID".to_string(), member_id.to_string()),
        ]
    };

    // Enter callback (§8.1), then the floor callback for a first member who can speak.
    if let Some(cb) = &callback {
        let mut params = base_params("enter", "ConferenceEnter");
        params.push(("ConferenceFirstMember".into(), joined.first.to_string()));
        let params = ctx.with_call_params(params);
        ctx.notify(&order_key, cb, params);
        if conf.floor_event && joined.first && !conf.muted && !waiting {
            let params = ctx.with_call_params(base_params("floor", "ConferenceFloor"));
            ctx.notify(&order_key, cb, params);
        }
    }

    // A moderator arriving starts the room for those waiting.
    if joined.started_now {
        for m in &joined.others {
            let _ = m.commands.send(MemberCommand::RoomStarted);
        }
    }

    // Enter sound to the room (this member included, like FreeSWITCH's enter-sound).
    if let Some(sound) = &conf.enter_sound {
        let samples = sound_samples(ctx, sound, ctx.call_params()).await?;
        let mut everyone = joined.others.clone();
        if !waiting {
            everyone.push(member_record(ctx, member_id, MemberFlags::default()));
        }
        play_to_members(ctx, &everyone, &samples, ctx.thread);
    }

    // timeLimit: armed when the room is created, re-armed by a later explicit value.
    let limit = conf.time_limit_secs();
    if limit > 0 && (joined.first || conf.time_limit.is_some()) {
        if let Some(generation) = ctx.shared.rooms.rearm_timer(&key, joined.id) {
            let rooms = ctx.shared.rooms.clone();
            let (key, id) = (key.clone(), joined.id);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(limit.into())).await;
                let members = rooms.timer_fired(&key, id, generation);
                if !members.is_empty() {
                    info!(room = %key.name, "timeLimit reached; kicking every member");
                }
                for m in members {
                    let _ = m.commands.send(MemberCommand::Kick);
                }
            });
        }
    }

    // Wait sound while the room has not started.
    let mut wait = WaitSound::empty();
    if waiting {
        if let Some(url) = &conf.wait_sound {
            let target = Target {
                url: url.clone(),
                method: conf.wait_method,
            };
            let mut params = base_params("waitSound", "ConferenceRemoteSounds");
            // Vobiz sends these two empty on the wait-sound fetch (§8.3).
            params[3].1.clear();
            params[4].1.clear();
            wait.items = prepare_sound_document(ctx, &target, params).await?;
            // The room may have started while we fetched.
            if let Some(entry) = ctx.shared.rooms.get(&key) {
                waiting = entry.members.iter().any(|m| m.id == member_id && m.waiting);
            }
            if waiting {
                play_next_wait(ctx, &mut wait);
            } else {
                let _ = ctx
                    .shared
                    .mixer
                    .set_flags(ctx.thread, ctx.leg, flags(false));
            }
        }
    }

    let mut matcher = if callback.is_some() {
        DigitsMatcher::new(&conf.digits_match)
    } else {
        // digitsMatch only works with a callbackUrl (plivoframework, API.md §15.19).
        DigitsMatcher::new(&[])
    };
    // stayAlone="false" with nobody else here: out at once (API.md §15.3).
    let mut kicked = !stay_alone && joined.others.is_empty();
    if kicked {
        info!("alone with stayAlone=\"false\"; leaving");
    }

    let result: Result<(), Gone> = async {
        while !kicked {
            match ctx.pump(None).await? {
                Wake::Member(MemberCommand::Kick) => {
                    info!(member_id, "kicked");
                    kicked = true;
                }
                Wake::Member(MemberCommand::Hangup) => {
                    ctx.end_call(Ending::api(), 480);
                    return Err(Gone);
                }
                Wake::Member(MemberCommand::RoomStarted) if waiting => {
                    waiting = false;
                    ctx.shared
                        .rooms
                        .update_member(&key, member_id, |m| m.waiting = false);
                    if wait.playing.take().is_some() {
                        ctx.stop_playback();
                    }
                    let _ = ctx
                        .shared
                        .mixer
                        .set_flags(ctx.thread, ctx.leg, flags(false));
                    debug!("moderator arrived; joined the mix");
                }
                Wake::Member(MemberCommand::CheckAlone) => {
                    let alone = ctx
                        .shared
                        .rooms
                        .get(&key)
                        .is_some_and(|e| e.id == joined.id && e.members.len() == 1);
                    if alone && !stay_alone {
                        info!("left alone with stayAlone=\"false\"; leaving");
                        kicked = true;
                    }
                }
                Wake::PlaybackDone { id } if wait.playing == Some(id) => {
                    wait.playing = None;
                    if waiting {
                        play_next_wait(ctx, &mut wait);
                    }
                }
                Wake::Dtmf(digit) => {
                    if digit == '*' && conf.hangup_on_star {
                        info!("hangupOnStar: leaving the room");
                        kicked = true;
                        continue;
                    }
                    if let (Some(pattern), Some(cb)) = (matcher.key(digit), &callback) {
                        let mut params = base_params("digits", "ConferenceDigitsMatch");
                        params.push(("ConferenceDigitsMatch".into(), pattern));
                        let params = ctx.with_call_params(params);
                        ctx.notify(&order_key, cb, params);
                    }
                    if conf.relay_dtmf {
                        relay_digit(ctx, &key, member_id, digit);
                    }
                }
                Wake::Floor if conf.floor_event && !conf.muted && !waiting => {
                    if let Some(cb) = &callback {
                        let params = ctx.with_call_params(base_params("floor", "ConferenceFloor"));
                        ctx.notify(&order_key, cb, params);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;

    // Leaving, however it happened (API.md §7.2 step 5).
    // The exit callback is queued under the room's lock, so two members leaving at once
    // report `ConferenceLastMember` in the order they really left.
    let exit_params = callback
        .as_ref()
        .map(|_| ctx.with_call_params(base_params("exit", "ConferenceExit")));
    let remaining = ctx
        .shared
        .rooms
        .leave_conference(&key, joined.id, member_id, |left| {
            if let (Some(cb), Some(mut params)) = (&callback, exit_params) {
                params.push(("ConferenceLastMember".into(), left.is_empty().to_string()));
                ctx.notify(&order_key, cb, params);
            }
        });
    if wait.playing.is_some() {
        ctx.stop_playback();
    }
    if result.is_ok() {
        let private = ctx.private;
        let _ = ctx.move_to(private.0, private.1).await;
        let _ = ctx
            .shared
            .mixer
            .set_flags(ctx.thread, ctx.leg, MemberFlags::default());
    }
    if conf.end_conference_on_exit {
        if !remaining.is_empty() {
            info!(
                others = remaining.len(),
                "endConferenceOnExit: kicking every member"
            );
        }
        for m in &remaining {
            let _ = m.commands.send(MemberCommand::Kick);
        }
    } else {
        for m in &remaining {
            let _ = m.commands.send(MemberCommand::CheckAlone);
        }
        if let Some(sound) = &conf.exit_sound {
            if let Some(entry) = ctx.shared.rooms.get(&key) {
                let samples = match sound {
                    Sound::Beep1 => beep(8000, 1),
                    Sound::Beep2 => beep(8000, 2),
                    Sound::Url(_) if result.is_ok() => sound_samples(ctx, sound, ctx.call_params())
                        .await
                        .unwrap_or_default(),
                    Sound::Url(_) => Vec::new(),
                };
                play_to_members(ctx, &remaining, &samples, entry.thread);
            }
        }
    }
    info!(member_id, "left conference");
    result?;
    let mut params: Params = vec![
        ("ConferenceName".into(), conf.room.clone()),
        ("ConferenceUUID".into(), conf_uuid.clone()),
        ("ConferenceMemberID".into(), member_id.to_string()),
    ];
    if let Some(r) = recording {
        params.push(("RecordUrl".into(), r.url));
        params.push(("RecordingID".into(), r.id));
    }
    Ok(Input::ConferenceLeft { params })
}

/// This call as a room member (the registry's record of it).
fn member_record(ctx: &CallCtx, member_id: u64, flags: MemberFlags) -> Member {
    Member {
        id: member_id,
        leg: ctx.leg,
        call_uuid: ctx.call_uuid.clone(),
        from: ctx.from.clone(),
        to: ctx.to.clone(),
        caller_name: ctx.caller_name.clone(),
        inbound: true,
        joined: std::time::Instant::now(),
        flags,
        codec_rate: ctx.rate(),
        commands: ctx.member_tx.clone(),
        waiting: false,
    }
}

/// relayDTMF: the other (non-waiting) members hear the digit as RFC 4733 events, or in band
/// when they did not negotiate telephone-event.
fn relay_digit(ctx: &CallCtx, key: &RoomKey, member_id: u64, digit: char) {
    let Some(entry) = ctx.shared.rooms.get(key) else {
        return;
    };
    let digits = digit.to_string();
    for m in entry
        .members
        .iter()
        .filter(|m| m.id != member_id && !m.waiting)
    {
        if ctx
            .shared
            .mixer
            .send_dtmf(entry.thread, m.leg, &digits)
            .is_err()
        {
            let tones = dtmf_tones(&digits, m.codec_rate);
            let id =
                crate::control::NEXT_PLAYBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let playback = Playback::new(id, m.codec_rate, tones, 1);
            let _ = ctx.shared.mixer.play(entry.thread, m.leg, playback);
        }
    }
}
