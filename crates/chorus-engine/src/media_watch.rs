//! RTP timeouts: a call whose peer never sends media after the answer, or stops sending it,
//! is hung up with a BYE carrying a `Reason` (RFC 3326). A held call (anything but
//! `sendrecv`, or `c=0.0.0.0`) is never timed out; taking it off hold starts the clock again.
//!
//! The media thread only counts the packets it takes from the peer
//! ([`chorus_mixer::LegActivity`], one relaxed store per packet); the call task reads that
//! count a few times per timeout period here, so no timer ever runs on a media thread.

use std::sync::Arc;
use std::time::Duration;

use chorus_mixer::LegActivity;
use chorus_sip::{Direction, Negotiated, Reason};
use tokio::time::Instant;

use crate::flow::Ending;

/// The shortest and longest time between two looks at the packet count.
const MIN_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_secs(1);
/// Q.850 cause 102, "recovery on timer expiry": the call ends because a timer ran out.
const RECOVERY_ON_TIMER_EXPIRY: u16 = 102;

/// How long a call may go without RTP; `None` turns a timer off (signalling-only load tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaTimeouts {
    /// From the answer (or the end of a hold) until the first packet.
    pub no_media: Option<Duration>,
    /// After the last packet.
    pub stopped: Option<Duration>,
}

impl Default for MediaTimeouts {
    fn default() -> Self {
        Self {
            no_media: Some(Duration::from_secs(30)),
            stopped: Some(Duration::from_secs(60)),
        }
    }
}

/// Which timer ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaTimeout {
    /// Nothing came since the answer (or since the call came off hold).
    NeverReceived,
    /// Media came, then stopped.
    Stopped,
}

impl MediaTimeout {
    pub fn describe(self) -> &'static str {
        match self {
            MediaTimeout::NeverReceived => "no RTP received",
            MediaTimeout::Stopped => "RTP stopped",
        }
    }

    /// The `Reason` of the BYE.
    pub fn reason(self) -> Reason {
        Reason::q850(
            RECOVERY_ON_TIMER_EXPIRY,
            format!("Media timeout: {}", self.describe()),
        )
    }

    /// For the hangup webhook (API.md §9.2).
    pub fn ending(self) -> Ending {
        Ending {
            cause: "MEDIA_TIMEOUT",
            code: 8020,
            name: "Media Timeout",
            source: "Error",
        }
    }
}

/// Watches one call's incoming RTP.
#[derive(Debug)]
pub(crate) struct MediaWatch {
    activity: Arc<LegActivity>,
    timeouts: MediaTimeouts,
    /// Media is expected since then: the answer, or the end of the last hold. `None` before
    /// the answer.
    since: Option<Instant>,
    held: bool,
    /// The packet count at the last look, and when it last changed.
    count: u64,
    last_packet: Option<Instant>,
    next: Option<Instant>,
    fired: bool,
}

impl MediaWatch {
    pub fn new(timeouts: MediaTimeouts) -> Self {
        Self {
            activity: Arc::new(LegActivity::default()),
            timeouts,
            since: None,
            held: false,
            count: 0,
            last_packet: None,
            next: None,
            fired: false,
        }
    }

    /// What the leg's media thread counts packets into ([`chorus_mixer::LegSpec::activity`]).
    pub fn activity(&self) -> Arc<LegActivity> {
        Arc::clone(&self.activity)
    }

    /// The call was answered: media is expected from now.
    pub fn answered(&mut self, now: Instant) {
        if self.since.is_some() {
            return;
        }
        self.since = Some(now);
        self.count = self.activity.packets();
        self.last_packet = None;
        self.next = self.poll_interval().map(|p| now + p);
    }

    /// When to call [`MediaWatch::check`] next; `None` while there is nothing to watch.
    pub fn next_check(&self) -> Option<Instant> {
        self.next
    }

    /// Looks at the packet count; reports a timeout once. `negotiated` is the call's current
    /// offer/answer result (`None` while a late offer awaits its answer: media is expected).
    pub fn check(&mut self, now: Instant, negotiated: Option<&Negotiated>) -> Option<MediaTimeout> {
        let since = self.since?;
        if self.fired {
            self.next = None;
            return None;
        }
        self.next = self.poll_interval().map(|p| now + p);
        let count = self.activity.packets();
        if count != self.count {
            self.count = count;
            self.last_packet = Some(now);
        }
        let held = negotiated.is_some_and(is_held);
        if held != self.held {
            self.held = held;
            if !held {
                // Off hold: the clocks start again, as at the answer.
                self.since = Some(now);
                self.last_packet = None;
            }
            return None;
        }
        if held {
            return None;
        }
        let timeout = match self.last_packet {
            Some(last) if last >= since => self
                .timeouts
                .stopped
                .filter(|t| now.duration_since(last) >= *t)
                .map(|_| MediaTimeout::Stopped),
            _ => self
                .timeouts
                .no_media
                .filter(|t| now.duration_since(since) >= *t)
                .map(|_| MediaTimeout::NeverReceived),
        };
        if timeout.is_some() {
            self.fired = true;
            self.next = None;
        }
        timeout
    }

    /// An eighth of the shorter timeout, within [`MIN_POLL`, `MAX_POLL`]: a timeout fires at
    /// most that late. `None` when both are off.
    fn poll_interval(&self) -> Option<Duration> {
        let shortest = match (self.timeouts.no_media, self.timeouts.stopped) {
            (Some(a), Some(b)) => a.min(b),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return None,
        };
        Some((shortest / 8).clamp(MIN_POLL, MAX_POLL))
    }
}

/// The peer sends nothing, or expects nothing, by design (RFC 3264 §8.4): `sendonly`,
/// `recvonly`, `inactive`, or no address.
fn is_held(n: &Negotiated) -> bool {
    n.local_direction != Direction::SendRecv || n.remote_addr.is_none()
}

/// Sleeps until `at`, forever when `None` (for a `select!` branch).
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_MEDIA: Duration = Duration::from_secs(30);
    const STOPPED: Duration = Duration::from_secs(60);

    fn watch() -> MediaWatch {
        MediaWatch::new(MediaTimeouts {
            no_media: Some(NO_MEDIA),
            stopped: Some(STOPPED),
        })
    }

    fn negotiated(direction: Direction) -> Negotiated {
        let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let remote = chorus_sip::parse_sdp(offer.as_bytes()).expect("a valid offer");
        let local = chorus_sip::LocalMedia {
            addr: "192.0.2.1:20000".parse().expect("an address"),
            session_id: 1,
            session_version: 1,
            codecs: vec![chorus_sip::Codec::Pcmu],
            telephone_event: false,
        };
        let mut n = chorus_sip::negotiate(&remote, &local).expect("PCMU is common");
        n.local_direction = direction;
        n
    }

    /// Steps `w` every `step` from `from` to `to` (seconds after `t0`), with packets counted
    /// while `sending`; returns when (seconds after `t0`) it fired.
    fn run(
        w: &mut MediaWatch,
        t0: Instant,
        (from, to): (f64, f64),
        sending: bool,
        n: Option<&Negotiated>,
    ) -> Option<(f64, MediaTimeout)> {
        let mut t = from;
        while t <= to {
            if sending {
                w.activity.set_packets(w.activity.packets() + 50);
            }
            let now = t0 + Duration::from_secs_f64(t);
            if let Some(timeout) = w.check(now, n) {
                return Some((t, timeout));
            }
            t += 0.5;
        }
        None
    }

    #[test]
    fn a_peer_that_never_sends_times_out_after_the_no_media_timeout() {
        let mut w = watch();
        let t0 = Instant::now();
        assert_eq!(w.next_check(), None, "nothing to watch before the answer");
        w.answered(t0);
        assert_eq!(w.next_check(), Some(t0 + Duration::from_secs(1)));
        let n = negotiated(Direction::SendRecv);
        assert_eq!(
            run(&mut w, t0, (0.5, 100.0), false, Some(&n)),
            Some((30.0, MediaTimeout::NeverReceived))
        );
        assert_eq!(w.next_check(), None, "it fires once");
        assert_eq!(w.check(t0 + Duration::from_secs(200), Some(&n)), None);
    }

    #[test]
    fn media_that_stops_times_out_after_the_stopped_timeout() {
        let mut w = watch();
        let t0 = Instant::now();
        w.answered(t0);
        let n = negotiated(Direction::SendRecv);
        assert_eq!(run(&mut w, t0, (0.5, 40.0), true, Some(&n)), None);
        assert_eq!(
            run(&mut w, t0, (40.5, 200.0), false, Some(&n)),
            Some((100.0, MediaTimeout::Stopped))
        );
    }

    #[test]
    fn a_held_call_never_times_out_and_the_clock_restarts_off_hold() {
        for direction in [
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            let mut w = watch();
            let t0 = Instant::now();
            w.answered(t0);
            let held = negotiated(direction);
            assert_eq!(run(&mut w, t0, (0.5, 10.0), true, Some(&held)), None);
            assert_eq!(run(&mut w, t0, (10.5, 500.0), false, Some(&held)), None);
            let unheld = negotiated(Direction::SendRecv);
            assert_eq!(
                run(&mut w, t0, (500.5, 700.0), false, Some(&unheld)),
                Some((530.5, MediaTimeout::NeverReceived)),
                "{direction:?}"
            );
        }
        let mut w = watch();
        let t0 = Instant::now();
        w.answered(t0);
        let mut no_address = negotiated(Direction::SendRecv);
        no_address.remote_addr = None;
        assert_eq!(
            run(&mut w, t0, (0.5, 500.0), false, Some(&no_address)),
            None
        );
    }

    #[test]
    fn timeouts_that_are_off_never_fire() {
        let mut w = MediaWatch::new(MediaTimeouts {
            no_media: None,
            stopped: None,
        });
        let t0 = Instant::now();
        w.answered(t0);
        assert_eq!(w.next_check(), None);
        let mut only_stopped = MediaWatch::new(MediaTimeouts {
            no_media: None,
            stopped: Some(Duration::from_secs(2)),
        });
        only_stopped.answered(t0);
        assert_eq!(
            only_stopped.next_check(),
            Some(t0 + Duration::from_millis(250))
        );
        let n = negotiated(Direction::SendRecv);
        assert_eq!(
            run(&mut only_stopped, t0, (0.5, 100.0), false, Some(&n)),
            None
        );
    }

    #[test]
    fn the_reason_is_a_q850_timer_expiry() {
        assert_eq!(
            MediaTimeout::Stopped.reason().to_string(),
            "Q.850;cause=102;text=\"Media timeout: RTP stopped\""
        );
        let ending = MediaTimeout::NeverReceived.ending();
        assert_eq!((ending.cause, ending.source), ("MEDIA_TIMEOUT", "Error"));
    }
}
