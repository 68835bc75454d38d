//! A call driven by an XML call flow (API.md §7–§10): the shell around
//! [`chorus_flow::Interpreter`]. One task per call fetches documents, answers lazily, plays
//! prompts, collects digits and runs conferences; the interpreter decides what comes next.
//!
//! The call's leg lives on a media thread from the start, in a private room of its own
//! (so prompts reach only this caller); a `<Conference>` moves it into the shared room and
//! back. Nothing here blocks a media thread: fetching, TTS and decoding run on tokio, and the
//! mixer only ever receives ready samples.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chorus_flow::{
    Collector, DigitsOutcome, EndCause, Input, Interpreter, Limits, Params, Prompt, Step, Target,
};
use chorus_mixer::{LegId, Playback, RoomId};
use chorus_sip::{CallHandle, EndReason, LocalMedia, Negotiated};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::call::{handle_reinvite_for, leg_update};
use crate::config::Account;
use crate::rooms::MemberCommand;
use crate::sip_driver::{CallEvent, SipCommand};
use crate::{LegEvent, Shared};

/// `<Speak loop="0">` repeats, but not forever.
const SPEAK_LOOP_CAP: u32 = 100;
/// How long a move between media threads may take before we carry on regardless.
const HANDOVER_WAIT: Duration = Duration::from_millis(500);

/// How the call ended, for the hangup webhook (API.md §9.2).
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    pub cause: &'static str,
    pub code: u16,
    pub name: &'static str,
    pub source: &'static str,
}

impl Ending {
    pub(crate) fn caller() -> Self {
        Self {
            cause: "NORMAL_CLEARING",
            code: 4000,
            name: "Normal Hangup",
            source: "Caller",
        }
    }

    pub(crate) fn api() -> Self {
        Self {
            cause: "NORMAL_CLEARING",
            code: 4000,
            name: "Normal Hangup",
            source: "API Request",
        }
    }

    fn scheduled() -> Self {
        Self {
            cause: "NORMAL_CLEARING",
            code: 6000,
            name: "Scheduled Hangup",
            source: "Answer XML",
        }
    }

    fn shutdown() -> Self {
        Self {
            cause: "SYSTEM_SHUTDOWN",
            code: 4000,
            name: "Normal Hangup",
            source: "Unknown",
        }
    }

    fn from_cause(cause: &EndCause) -> Self {
        Self {
            cause: cause.hangup_cause(),
            code: cause.code(),
            name: cause.name(),
            source: cause.source(),
        }
    }
}

/// The call has ended (BYE either way, or the transport died); stop running verbs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gone;

/// Something a verb waiting on the call may care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    Dtmf(char),
    PlaybackDone { id: u64 },
    Member(MemberCommand),
    Floor,
    Added { thread: usize, room: RoomId },
    Timeout,
}

/// Everything fixed at call set-up.
pub(crate) struct Setup {
    pub shared: Arc<Shared>,
    pub call: CallHandle,
    pub call_uuid: String,
    pub account: Account,
    pub answer: Target,
    pub leg: LegId,
    pub thread: usize,
    pub room: RoomId,
    pub sdp: Vec<u8>,
    pub local: LocalMedia,
    pub negotiated: Option<Negotiated>,
    pub from: String,
    pub to: String,
    pub caller_name: String,
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    pub stop: watch::Receiver<bool>,
    pub media: crate::media_watch::MediaWatch,
}

/// A call running an XML flow.
pub(crate) struct CallCtx {
    pub shared: Arc<Shared>,
    pub call: CallHandle,
    pub call_uuid: String,
    pub account: Account,
    pub leg: LegId,
    /// Where the leg is served now.
    pub thread: usize,
    pub room: RoomId,
    /// The call's own room, for prompts outside conferences.
    pub private: (usize, RoomId),
    sdp: Vec<u8>,
    local: LocalMedia,
    negotiated: Option<Negotiated>,
    pub from: String,
    pub to: String,
    pub caller_name: String,
    events: mpsc::UnboundedReceiver<CallEvent>,
    leg_events: mpsc::UnboundedReceiver<LegEvent>,
    pub member_tx: mpsc::UnboundedSender<MemberCommand>,
    member_rx: mpsc::UnboundedReceiver<MemberCommand>,
    stop: watch::Receiver<bool>,
    /// RTP timeouts, from the answer on.
    media: crate::media_watch::MediaWatch,
    answered: bool,
    start_time: SystemTime,
    answer_time: Option<SystemTime>,
    hangup_at: Option<Instant>,
    /// Set once the call is over or being hung up; the first reason wins.
    pub ending: Option<Ending>,
    gone: bool,
    /// Digits that arrived while a verb was not listening, dropped when a new one starts.
    pending_digits: VecDeque<char>,
    /// Member commands that arrived while a conference was busy fetching or moving; handed
    /// out again by the next [`CallCtx::pump`].
    deferred: VecDeque<MemberCommand>,
    /// `<Record recordSession="true">` recordings, stopped when the call ends.
    pub session_recordings: Vec<Arc<chorus_record::Recording>>,
}

pub(crate) async fn run(setup: Setup) {
    let (leg_tx, leg_events) = mpsc::unbounded_channel();
    setup.shared.legs.insert(setup.leg.0, leg_tx);
    let (member_tx, member_rx) = mpsc::unbounded_channel();
    let mut ctx = CallCtx {
        shared: setup.shared,
        call: setup.call,
        call_uuid: setup.call_uuid,
        account: setup.account,
        leg: setup.leg,
        thread: setup.thread,
        room: setup.room,
        private: (setup.thread, setup.room),
        sdp: setup.sdp,
        local: setup.local,
        negotiated: setup.negotiated,
        from: setup.from,
        to: setup.to,
        caller_name: setup.caller_name,
        events: setup.events,
        leg_events,
        member_tx,
        member_rx,
        stop: setup.stop,
        media: setup.media,
        answered: false,
        start_time: SystemTime::now(),
        answer_time: None,
        hangup_at: None,
        ending: None,
        gone: false,
        pending_digits: VecDeque::new(),
        deferred: VecDeque::new(),
        session_recordings: Vec::new(),
    };
    let mut interp = Interpreter::new(
        setup.answer,
        ctx.account.fallback_url.clone().map(|url| Target {
            url,
            method: ctx.account.fallback_method,
        }),
        true,
        Limits::default(),
    );
    let mut step = interp.start();
    loop {
        let input = match ctx.execute(step).await {
            Ok(Some(input)) => input,
            Ok(None) | Err(Gone) => break,
        };
        step = interp.resume(input);
    }
    ctx.finish().await;
}

impl CallCtx {
    /// Runs one step; `Ok(None)` when the flow is over.
    async fn execute(&mut self, step: Step) -> Result<Option<Input>, Gone> {
        if self.gone {
            return Err(Gone);
        }
        match step {
            Step::Fetch {
                target,
                kind,
                params,
            } => {
                debug!(url = %strip_query(&target.url), ?kind, "fetching call flow");
                let body = self.fetch(&target, params).await?;
                Ok(Some(Input::Fetched(body)))
            }
            Step::Notify { target, params } => {
                let params = self.with_call_params(params);
                self.notify(&self.call_uuid.clone(), &target, params);
                Ok(Some(Input::Done))
            }
            Step::Answer => {
                self.answer();
                Ok(Some(Input::Done))
            }
            Step::EarlyMedia => {
                let _ = self.shared.sip.send(SipCommand::Progress {
                    call: self.call,
                    sdp: self.sdp.clone(),
                });
                self.start_sending();
                Ok(Some(Input::Done))
            }
            Step::Speak(speak) => {
                self.discard_digits();
                if let Some(clip) = self.speech(&speak).await? {
                    let loops = loops(speak.loop_count, SPEAK_LOOP_CAP);
                    self.play_samples(&clip.samples, loops, false).await?;
                }
                Ok(Some(Input::Done))
            }
            Step::Play(play) => {
                self.discard_digits();
                if let Some(clip) = self.media(&play.url).await? {
                    self.play_samples(&clip.samples, play.loop_count, false)
                        .await?;
                }
                Ok(Some(Input::Done))
            }
            Step::Wait(wait) => {
                self.discard_digits();
                let length = Duration::from_secs(wait.length.into());
                if wait.silence {
                    self.wait_for_silence(length, Duration::from_millis(wait.min_silence.into()))
                        .await?;
                } else {
                    self.sleep(length).await?;
                }
                if wait.beep {
                    let beep = crate::conference::beep(self.rate(), 1);
                    self.play_samples(&beep, 1, false).await?;
                }
                Ok(Some(Input::Done))
            }
            Step::Dtmf(dtmf) => {
                self.send_digits(&dtmf.digits, dtmf.is_async).await?;
                Ok(Some(Input::Done))
            }
            Step::ScheduleHangup { after } => {
                self.hangup_at = Some(Instant::now() + Duration::from_secs(after.into()));
                Ok(Some(Input::Done))
            }
            Step::Conference(conf) => crate::conference::run(self, conf).await.map(Some),
            Step::Record(record) => {
                let params = crate::recording::record_call(self, record).await?;
                Ok(Some(Input::Recorded { params }))
            }
            Step::GetDigits {
                spec,
                attempt,
                invalid_sound,
            } => {
                debug!(attempt, "collecting digits");
                let outcome = self.get_digits(&spec, invalid_sound.as_deref()).await?;
                Ok(Some(Input::Digits(outcome)))
            }
            Step::End(cause) => {
                match &cause {
                    EndCause::EndOfXml | EndCause::Hangup(_) => {
                        info!(cause = cause.name(), "call flow ended the call")
                    }
                    EndCause::InvalidXml(reason)
                    | EndCause::FetchFailed(reason)
                    | EndCause::Unsupported(reason) => {
                        warn!(cause = cause.name(), %reason, "call flow failed; ending the call")
                    }
                    EndCause::RedirectLoop => {
                        warn!(cause = cause.name(), "redirect loop; ending the call")
                    }
                }
                self.end_call(Ending::from_cause(&cause), cause.reject_status());
                Ok(None)
            }
        }
    }

    /// The call parameters every request of this leg carries (API.md §8, §9.1).
    pub fn call_params(&self) -> Params {
        let status = if self.ending.is_some() {
            "completed"
        } else if self.answered {
            "in-progress"
        } else {
            "ringing"
        };
        vec![
            ("CallUUID".into(), self.call_uuid.clone()),
            ("From".into(), self.from.clone()),
            ("To".into(), self.to.clone()),
            ("CallerName".into(), self.caller_name.clone()),
            ("Direction".into(), "inbound".into()),
            ("CallStatus".into(), status.into()),
            ("AccountSID".into(), self.account.auth_id.clone()),
        ]
    }

    pub fn with_call_params(&self, mut params: Params) -> Params {
        let mut all = params.split_off(0);
        for (k, v) in self.call_params() {
            if !all.iter().any(|(name, _)| *name == k) {
                all.push((k, v));
            }
        }
        all
    }

    /// Fetches a document; the call may end meanwhile.
    pub async fn fetch(
        &mut self,
        target: &Target,
        params: Params,
    ) -> Result<Result<String, chorus_flow::FetchFailure>, Gone> {
        let params = self.with_call_params(params);
        let webhooks = self.shared.webhooks.clone();
        let token = self.account.auth_token.clone();
        let url = target.url.clone();
        let method = target.method;
        let fetch = async move {
            webhooks
                .fetch_xml(&url, method, &params, &token)
                .await
                .map_err(|e| match e {
                    crate::webhooks::FetchError::TooLarge { .. } => {
                        chorus_flow::FetchFailure::TooLarge(e.to_string())
                    }
                    other => chorus_flow::FetchFailure::Failed(other.to_string()),
                })
        };
        self.while_waiting(fetch).await
    }

    /// Queues a notification (ordered per `order_key`).
    pub fn notify(&self, order_key: &str, target: &Target, params: Params) {
        self.shared.webhooks.notify(
            order_key,
            &target.url,
            target.method,
            params,
            &self.account.auth_token,
        );
    }

    fn answer(&mut self) {
        if !self.answered {
            self.answered = true;
            self.answer_time = Some(SystemTime::now());
            self.media.answered(Instant::now());
            let _ = self.shared.sip.send(SipCommand::Answer {
                call: self.call,
                sdp: self.sdp.clone(),
            });
            self.start_sending();
            info!("call answered");
        }
    }

    /// The caller has our SDP now: media may flow both ways (as negotiated). A late-offer
    /// call starts sending when the answer arrives in the ACK.
    fn start_sending(&self) {
        if let Some(n) = &self.negotiated {
            if let Err(error) = self
                .shared
                .mixer
                .update_leg(self.thread, self.leg, leg_update(n))
            {
                warn!(%error, "cannot update leg");
            }
        }
    }

    /// The sample rate the leg's codec runs at: prompts are prepared at it.
    pub fn rate(&self) -> u32 {
        self.negotiated
            .as_ref()
            .map_or(8000, |n| crate::call::to_mixer_codec(n).encoding.rate())
    }

    async fn speech(
        &mut self,
        speak: &chorus_flow::Speak,
    ) -> Result<Option<Arc<crate::prompts::Clip>>, Gone> {
        let woman = !matches!(speak.voice, chorus_flow::Voice::Man);
        let rate = self.rate();
        let shared = self.shared.clone();
        let text = speak.text.clone();
        let language = speak.language.clone();
        let result = self
            .while_waiting(
                async move { shared.prompts.speech(&text, woman, &language, rate).await },
            )
            .await?;
        match result {
            Ok(clip) => Ok(Some(clip)),
            Err(error) => {
                warn!(%error, "Speak failed; going on with the next verb");
                Ok(None)
            }
        }
    }

    pub async fn media(&mut self, url: &str) -> Result<Option<Arc<crate::prompts::Clip>>, Gone> {
        let rate = self.rate();
        let shared = self.shared.clone();
        let url_owned = url.to_owned();
        let result = self
            .while_waiting(async move { shared.prompts.url(&url_owned, rate).await })
            .await?;
        match result {
            Ok(clip) => Ok(Some(clip)),
            Err(error) => {
                warn!(%error, url = %strip_query(url), "Play failed; going on with the next verb");
                Ok(None)
            }
        }
    }

    /// Awaits `work` while keeping the call serviced (re-INVITEs, BYE, digits).
    async fn while_waiting<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Gone> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                wake = self.pump_live() => match wake? {
                    Wake::Dtmf(d) => self.pending_digits.push_back(d),
                    Wake::Member(MemberCommand::Hangup) => {
                        self.end_call(Ending::api(), 480);
                        return Err(Gone);
                    }
                    Wake::Member(other) => self.deferred.push_back(other),
                    _ => {}
                },
            }
        }
    }

    /// Starts `samples` in the member's ear; returns its playback id.
    pub fn start_playback(&mut self, samples: &[i16], loops: u32) -> u64 {
        let id = crate::control::NEXT_PLAYBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let playback = Playback::new(id, self.rate(), samples.to_vec(), loops);
        if let Err(error) = self.shared.mixer.play(self.thread, self.leg, playback) {
            warn!(%error, "cannot start playback");
        }
        id
    }

    pub fn stop_playback(&self) {
        let _ = self.shared.mixer.stop_play(self.thread, self.leg);
    }

    /// Plays and waits for the end. With `stop_on_digit`, a key press stops it and is
    /// returned.
    async fn play_samples(
        &mut self,
        samples: &[i16],
        loops: u32,
        stop_on_digit: bool,
    ) -> Result<Option<char>, Gone> {
        if samples.is_empty() {
            return Ok(None);
        }
        let id = self.start_playback(samples, loops);
        loop {
            match self.pump(None).await? {
                Wake::PlaybackDone { id: done } if done == id => return Ok(None),
                Wake::Dtmf(d) if stop_on_digit => {
                    self.stop_playback();
                    return Ok(Some(d));
                }
                Wake::Member(MemberCommand::Hangup) => {
                    self.end_call(Ending::api(), 480);
                    return Err(Gone);
                }
                _ => {}
            }
        }
    }

    /// Plays `samples` once to this caller and waits for the end.
    pub async fn play_and_wait(&mut self, samples: &[i16]) -> Result<(), Gone> {
        self.play_samples(samples, 1, false).await.map(|_| ())
    }

    async fn sleep(&mut self, length: Duration) -> Result<(), Gone> {
        let deadline = Instant::now() + length;
        loop {
            match self.pump(Some(deadline)).await? {
                Wake::Timeout => return Ok(()),
                Wake::Member(MemberCommand::Hangup) => {
                    self.end_call(Ending::api(), 480);
                    return Err(Gone);
                }
                _ => {}
            }
        }
    }

    /// `<Wait silence="true">`: ends as soon as the caller has been silent for `min_silence`
    /// (after at least that much audio), else after `length`. The caller's audio is watched
    /// by a listen-only tap on the call's room.
    async fn wait_for_silence(
        &mut self,
        length: Duration,
        min_silence: Duration,
    ) -> Result<(), Gone> {
        let watch = Arc::new(crate::silence::Levels::default());
        let tap_id = crate::silence::next_tap_id();
        let (thread, room) = (self.thread, self.room);
        let tapped = self
            .shared
            .mixer
            .add_tap(
                thread,
                room,
                tap_id,
                Box::new(crate::silence::LevelTap::new(watch.clone())),
            )
            .is_ok();
        let deadline = Instant::now() + length;
        let result = loop {
            if tapped && watch.silent_for(min_silence) {
                debug!(?min_silence, "Wait: silence detected");
                break Ok(());
            }
            let next = (Instant::now() + Duration::from_millis(50)).min(deadline);
            match self.pump(Some(next)).await {
                Err(Gone) => break Err(Gone),
                Ok(Wake::Timeout) if Instant::now() >= deadline => break Ok(()),
                Ok(Wake::Member(MemberCommand::Hangup)) => {
                    self.end_call(Ending::api(), 480);
                    break Err(Gone);
                }
                Ok(_) => {}
            }
        };
        if tapped {
            let _ = self.shared.mixer.remove_tap(thread, room, tap_id);
        }
        result
    }

    async fn send_digits(&mut self, digits: &str, is_async: bool) -> Result<(), Gone> {
        let digits: String = digits
            .chars()
            .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'w' | 'W'))
            .collect();
        match self.shared.mixer.send_dtmf(self.thread, self.leg, &digits) {
            Ok(()) => {
                if !is_async {
                    self.sleep(dtmf_duration(&digits)).await?;
                }
            }
            Err(error) => {
                // No telephone-event negotiated: send the tones in band instead.
                debug!(%error, "sending DTMF in band");
                let tones = crate::conference::dtmf_tones(&digits, self.rate());
                if is_async {
                    self.start_playback(&tones, 1);
                } else {
                    self.play_samples(&tones, 1, false).await?;
                }
            }
        }
        Ok(())
    }

    fn discard_digits(&mut self) {
        self.pending_digits.clear();
    }

    async fn get_digits(
        &mut self,
        spec: &chorus_flow::GetDigits,
        invalid_sound: Option<&str>,
    ) -> Result<DigitsOutcome, Gone> {
        self.discard_digits();
        let mut collector = Collector::new(spec);
        if let Some(url) = invalid_sound {
            if let Some(clip) = self.media(url).await? {
                self.play_samples(&clip.samples, 1, false).await?;
            }
        }
        self.discard_digits();
        // Prompts, interrupted by the first key (barge-in).
        let mut pressed = None;
        for prompt in &spec.prompts {
            let samples = match prompt {
                Prompt::Speak(s) => self
                    .speech(s)
                    .await?
                    .map(|c| (c, loops(s.loop_count, SPEAK_LOOP_CAP))),
                Prompt::Play(p) => self.media(&p.url).await?.map(|c| (c, p.loop_count)),
                Prompt::Wait(w) => {
                    let deadline = Instant::now() + Duration::from_secs(w.length.into());
                    loop {
                        match self.pump(Some(deadline)).await? {
                            Wake::Timeout => break,
                            Wake::Dtmf(d) => {
                                pressed = Some(d);
                                break;
                            }
                            _ => {}
                        }
                    }
                    None
                }
            };
            if pressed.is_none() {
                if let Some(d) = self.pending_digits.pop_front() {
                    pressed = Some(d);
                }
            }
            if pressed.is_some() {
                break;
            }
            if let Some((clip, loops)) = samples {
                pressed = self.play_samples(&clip.samples, loops, true).await?;
                if pressed.is_some() {
                    break;
                }
            }
        }
        if pressed.is_none() && spec.play_beep {
            let beep = crate::conference::beep(self.rate(), 1);
            pressed = self.play_samples(&beep, 1, true).await?;
        }
        let now = std::time::Instant::now();
        if let Some(d) = pressed {
            if let Some(outcome) = collector.digit(d, now) {
                return Ok(outcome);
            }
        }
        while let Some(d) = self.pending_digits.pop_front() {
            if let Some(outcome) = collector.digit(d, std::time::Instant::now()) {
                return Ok(outcome);
            }
        }
        collector.prompts_done(std::time::Instant::now());
        loop {
            let deadline = collector.deadline().map(|d| {
                let left = d.saturating_duration_since(std::time::Instant::now());
                Instant::now() + left
            });
            match self.pump(deadline).await? {
                Wake::Dtmf(d) => {
                    if let Some(outcome) = collector.digit(d, std::time::Instant::now()) {
                        return Ok(outcome);
                    }
                }
                Wake::Timeout => {
                    if let Some(outcome) = collector.poll(std::time::Instant::now()) {
                        return Ok(outcome);
                    }
                }
                Wake::Member(MemberCommand::Hangup) => {
                    self.end_call(Ending::api(), 480);
                    return Err(Gone);
                }
                _ => {}
            }
        }
    }

    /// Moves the leg to `room` on `thread` and waits (bounded) until that thread has it, so
    /// commands sent there next cannot overtake the handover.
    pub async fn move_to(&mut self, thread: usize, room: RoomId) -> Result<(), Gone> {
        if (thread, room) == (self.thread, self.room) {
            return Ok(());
        }
        if let Err(error) = self
            .shared
            .mixer
            .move_leg(self.thread, self.leg, thread, room)
        {
            warn!(%error, "cannot move the leg");
            return Ok(());
        }
        self.thread = thread;
        self.room = room;
        let deadline = Instant::now() + HANDOVER_WAIT;
        let mut deferred = Vec::new();
        let result = loop {
            match self.pump_live_until(Some(deadline)).await {
                Err(Gone) => break Err(Gone),
                Ok(Wake::Added { room: r, .. }) if r == room => break Ok(()),
                Ok(Wake::Timeout) => {
                    warn!("leg handover not confirmed in time");
                    break Ok(());
                }
                Ok(other) => self.defer(other, &mut deferred),
            }
        };
        self.deferred.extend(deferred);
        result
    }

    fn defer(&mut self, wake: Wake, deferred: &mut Vec<MemberCommand>) {
        match wake {
            Wake::Dtmf(d) => self.pending_digits.push_back(d),
            Wake::Member(cmd) => deferred.push(cmd),
            _ => {}
        }
    }

    /// Forgets member commands meant for an earlier conference of this call.
    pub fn clear_member_commands(&mut self) {
        self.deferred.clear();
        while self.member_rx.try_recv().is_ok() {}
    }

    /// [`CallCtx::pump`] without deferred commands (they stay deferred).
    async fn pump_live(&mut self) -> Result<Wake, Gone> {
        self.pump_live_until(None).await
    }

    async fn pump_live_until(&mut self, deadline: Option<Instant>) -> Result<Wake, Gone> {
        self.pump_inner(deadline, false).await
    }

    /// Waits for the next event of interest, servicing SIP in-dialog events itself.
    /// Returns `Err(Gone)` once the call has ended.
    pub async fn pump(&mut self, deadline: Option<Instant>) -> Result<Wake, Gone> {
        self.pump_inner(deadline, true).await
    }

    /// Cancel-safe: dropping it loses nothing (only channel receives and timers are awaited).
    async fn pump_inner(
        &mut self,
        deadline: Option<Instant>,
        deferred: bool,
    ) -> Result<Wake, Gone> {
        loop {
            if self.gone {
                return Err(Gone);
            }
            if deferred {
                if let Some(command) = self.deferred.pop_front() {
                    return Ok(Wake::Member(command));
                }
            }
            let hangup_at = self.hangup_at;
            let stopping = self.ending.is_some();
            let watch_at = self.media.next_check();
            tokio::select! {
                _ = crate::media_watch::sleep_until(watch_at), if watch_at.is_some() && !stopping => {
                    if let Some(timeout) = self.media.check(Instant::now(), self.negotiated.as_ref()) {
                        warn!(timeout = timeout.describe(), "RTP timeout; hanging up");
                        self.ending = Some(timeout.ending());
                        let (call, reason) = (self.call, timeout.reason());
                        let _ = self.shared.sip.send(SipCommand::HangupWithReason { call, reason });
                    }
                }
                event = self.events.recv() => match event {
                    Some(CallEvent::Confirmed { sdp }) | Some(CallEvent::ReInviteConfirmed { sdp }) => {
                        if let Some(answer) = sdp {
                            self.on_answer_sdp(&answer);
                        }
                    }
                    Some(CallEvent::ReInvite { sdp }) => {
                        let shared = self.shared.clone();
                        let (thread, leg) = (self.thread, self.leg);
                        handle_reinvite_for(
                            &shared,
                            self.call,
                            &mut self.local,
                            sdp,
                            &mut self.negotiated,
                            &|n: &Negotiated| {
                                if let Err(error) = shared.mixer.update_leg(thread, leg, leg_update(n)) {
                                    warn!(%error, "cannot update leg");
                                }
                            },
                        );
                    }
                    Some(CallEvent::Dtmf { digit, duration_ms }) => {
                        debug!(%digit, duration_ms, "DTMF by SIP INFO");
                        return Ok(Wake::Dtmf(digit));
                    }
                    Some(CallEvent::Ended(reason)) => {
                        self.on_ended(reason);
                        return Err(Gone);
                    }
                    None => {
                        self.on_ended(EndReason::TransportError);
                        return Err(Gone);
                    }
                },
                Some(event) = self.leg_events.recv() => match event {
                    LegEvent::Dtmf { digit, duration_ms } => {
                        debug!(%digit, duration_ms, "DTMF (RFC 4733)");
                        return Ok(Wake::Dtmf(digit));
                    }
                    LegEvent::PlaybackDone { id, .. } => return Ok(Wake::PlaybackDone { id }),
                    LegEvent::Floor => return Ok(Wake::Floor),
                    LegEvent::Added { thread, room } => return Ok(Wake::Added { thread, room }),
                },
                Some(command) = self.member_rx.recv() => return Ok(Wake::Member(command)),
                changed = self.stop.changed(), if !stopping => {
                    if changed.is_err() || *self.stop.borrow() {
                        self.end_call(Ending::shutdown(), 503);
                    }
                }
                _ = sleep_until_opt(hangup_at), if hangup_at.is_some() && !stopping => {
                    info!("scheduled hangup");
                    self.hangup_at = None;
                    self.end_call(Ending::scheduled(), 480);
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => return Ok(Wake::Timeout),
            }
        }
    }

    fn on_answer_sdp(&mut self, answer: &[u8]) {
        match chorus_sip::parse_sdp(answer).and_then(|r| chorus_sip::negotiate(&r, &self.local)) {
            Ok(n) => {
                if let Err(error) =
                    self.shared
                        .mixer
                        .update_leg(self.thread, self.leg, leg_update(&n))
                {
                    warn!(%error, "cannot update leg");
                }
                self.negotiated = Some(n);
            }
            Err(error) => {
                info!(%error, "unusable answer in ACK; hanging up");
                self.end_call(
                    Ending::from_cause(&EndCause::Unsupported(String::new())),
                    488,
                );
            }
        }
    }

    fn on_ended(&mut self, reason: EndReason) {
        debug!(?reason, "call ended");
        self.gone = true;
        if self.ending.is_none() {
            self.ending = Some(match reason {
                // No session refresh came (RFC 4028 §10): the endpoint sent the BYE.
                EndReason::SessionExpired => Ending {
                    cause: "RECOVERY_ON_TIMER_EXPIRE",
                    code: 8021,
                    name: "Session Timer Expired",
                    source: "Error",
                },
                _ => Ending::caller(),
            });
        }
    }

    /// Hangs the call up (BYE) or refuses it if not answered yet; the call ends when the
    /// SIP side confirms.
    pub fn end_call(&mut self, ending: Ending, reject_status: u16) {
        if self.ending.is_some() {
            return;
        }
        self.ending = Some(ending);
        if self.answered {
            let _ = self.shared.sip.send(SipCommand::Hangup { call: self.call });
        } else {
            let _ = self.shared.sip.send(SipCommand::Reject {
                call: self.call,
                status: reject_status,
            });
        }
    }

    /// After the flow: make sure the call is over, free the leg, send the hangup webhook.
    async fn finish(mut self) {
        if !self.gone {
            if self.ending.is_none() {
                self.end_call(
                    Ending::from_cause(&EndCause::EndOfXml),
                    EndCause::EndOfXml.reject_status(),
                );
            }
            // Bounded: the SIP endpoint ends every dialog within its transaction timeout.
            let _ = tokio::time::timeout(Duration::from_secs(40), async {
                while let Some(event) = self.events.recv().await {
                    if let CallEvent::Ended(_) = event {
                        break;
                    }
                }
            })
            .await;
        }
        for recording in self.session_recordings.drain(..) {
            recording.stop();
        }
        self.shared.legs.remove(&self.leg.0);
        if let Err(error) = self.shared.mixer.remove_leg(self.thread, self.leg) {
            warn!(%error, "cannot remove leg");
        }
        let ending = self.ending.clone().unwrap_or_else(Ending::caller);
        info!(cause = ending.cause, source = ending.source, "call ended");
        let hangup_url = self
            .account
            .hangup_url
            .clone()
            .map(|u| (u, self.account.hangup_method))
            .or_else(|| {
                self.shared
                    .config
                    .hangup_url
                    .clone()
                    .map(|u| (u, self.shared.config.hangup_method))
            });
        if let Some((url, method)) = hangup_url {
            let end = SystemTime::now();
            let duration = self
                .answer_time
                .and_then(|a| end.duration_since(a).ok())
                .map_or(0, |d| d.as_secs_f64().ceil() as u64);
            let mut params = self.call_params();
            params.extend([
                ("Event".to_string(), "Hangup".to_string()),
                ("HangupCause".into(), ending.cause.into()),
                ("HangupCauseCode".into(), ending.code.to_string()),
                ("HangupCauseName".into(), ending.name.into()),
                ("HangupSource".into(), ending.source.into()),
                ("Duration".into(), duration.to_string()),
                ("BillDuration".into(), duration.to_string()),
                ("StartTime".into(), format_time(self.start_time)),
                (
                    "AnswerTime".into(),
                    self.answer_time.map(format_time).unwrap_or_default(),
                ),
                ("EndTime".into(), format_time(end)),
                ("TotalCost".into(), "0.00000".into()),
            ]);
            self.notify(&self.call_uuid.clone(), &Target { url, method }, params);
        }
    }
}

fn loops(count: u32, cap: u32) -> u32 {
    if count == 0 {
        cap
    } else {
        count
    }
}

/// How long RFC 4733 digits take to send (100 ms tone, 60 ms gap; `w` 0.5 s, `W` 1 s).
fn dtmf_duration(digits: &str) -> Duration {
    digits
        .chars()
        .map(|c| match c {
            'w' => Duration::from_millis(500),
            'W' => Duration::from_secs(1),
            _ => Duration::from_millis(160),
        })
        .sum()
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A URL for logs: the query string may carry secrets.
pub(crate) fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as Plivo's webhooks show times.
pub(crate) fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc_civil_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_time(t), "2023-11-14 22:13:20");
        assert_eq!(format_time(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_time(leap), "2000-02-29 00:00:00");
    }
}
