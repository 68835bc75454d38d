//! What the SIP driver decides about a new INVITE before any call task, RTP port or media leg
//! exists: the called account's allow-list and, for accounts with SIP credentials, digest
//! authentication. Also the counters `/metrics` exports for SIP drops, bans and auth.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chorus_sip::auth::{DigestAuth, DigestRequest, Rejection};
use chorus_sip::{DropCounts, DropReason, IncomingCall};
use tracing::{debug, info};

use crate::config::{route_call, Account, EngineConfig};

/// Outcomes of digest authentication, as metric labels.
pub(crate) const AUTH_OUTCOMES: [&str; 7] = [
    "ok",
    "missing",
    "malformed",
    "unknown_nonce",
    "failed",
    "stale",
    "replayed",
];

/// SIP counters read at scrape time. The driver stores drop and ban totals after each input;
/// auth outcomes are added as they happen.
#[derive(Debug, Default)]
pub(crate) struct SipCounters {
    drops: [AtomicU64; DropReason::ALL.len()],
    bans: AtomicU64,
    auth: [AtomicU64; AUTH_OUTCOMES.len()],
}

impl SipCounters {
    pub fn store_drops(&self, drops: &DropCounts, bans: u64) {
        for (slot, (_, n)) in self.drops.iter().zip(drops.iter()) {
            slot.store(n, Ordering::Relaxed);
        }
        self.bans.store(bans, Ordering::Relaxed);
    }

    /// `(label, count)` per drop reason.
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .zip(&self.drops)
            .map(|(r, n)| (r.as_str(), n.load(Ordering::Relaxed)))
    }

    pub fn bans(&self) -> u64 {
        self.bans.load(Ordering::Relaxed)
    }

    /// `(label, count)` per auth outcome.
    pub fn auth(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        AUTH_OUTCOMES
            .iter()
            .zip(&self.auth)
            .map(|(l, n)| (*l, n.load(Ordering::Relaxed)))
    }

    fn count_auth(&self, outcome: &str) {
        if let Some(i) = AUTH_OUTCOMES.iter().position(|l| *l == outcome) {
            if let Some(n) = self.auth.get(i) {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What happens to a new INVITE.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// On to a call task.
    Admit,
    /// 401 with these `WWW-Authenticate` values.
    Challenge(Vec<String>),
    /// Dropped unanswered: the source is not allowed to call the account.
    Discard,
}

/// The accounts' admission rules and the digest verifier (its nonce table); owned by the
/// SIP driver.
pub(crate) struct Admission {
    accounts: Vec<Account>,
    auth: DigestAuth,
}

impl Admission {
    pub fn new(config: &EngineConfig, now: Instant) -> Self {
        Self {
            accounts: config.accounts.clone(),
            auth: DigestAuth::new(config.sip_security.digest.clone(), now),
        }
    }

    pub fn decide(
        &mut self,
        now: Instant,
        incoming: &IncomingCall,
        counters: &SipCounters,
    ) -> Decision {
        let Some(account) = route_call(
            &self.accounts,
            incoming.request_user.as_deref(),
            &incoming.request_host,
        ) else {
            // The call task refuses calls that route nowhere.
            return Decision::Admit;
        };
        let source: IpAddr = incoming.source.addr.ip().to_canonical();
        if !account.sip_allow_from.is_empty()
            && !account.sip_allow_from.iter().any(|n| n.contains(&source))
        {
            info!(%source, account = %account.auth_id, "INVITE from a source the account does not allow: dropped");
            return Decision::Discard;
        }
        if account.sip_users.is_empty() {
            return Decision::Admit;
        }
        let request = DigestRequest {
            method: "INVITE",
            authorization: &incoming.authorization,
        };
        let users = &account.sip_users;
        let verdict = self.auth.verify(now, &request, |name| {
            users
                .iter()
                .find(|u| u.username == name)
                .map(|u| u.password.as_str())
        });
        match verdict {
            Ok(ok) => {
                counters.count_auth("ok");
                debug!(username = %ok.username, algorithm = ok.algorithm.name(), account = %account.auth_id, "INVITE authenticated");
                Decision::Admit
            }
            Err(rejection) => {
                counters.count_auth(rejection.as_str());
                if rejection != Rejection::Missing {
                    info!(%source, account = %account.auth_id, outcome = rejection.as_str(), "INVITE authentication failed");
                }
                Decision::Challenge(self.auth.challenge(now, rejection.stale()))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::SipUser;
    use chorus_sip::auth::authorization;
    use chorus_sip::{CallHandle, Peer};

    fn incoming(source: &str, auth: Vec<String>) -> IncomingCall {
        IncomingCall {
            call: CallHandle(1),
            call_id: "c".into(),
            from: "sip:a@h".into(),
            from_display: None,
            to: "sip:room@h".into(),
            request_uri: "sip:room@127.0.0.1".into(),
            request_user: Some("room".into()),
            request_host: "127.0.0.1".into(),
            authorization: auth,
            sdp: None,
            source: Peer::udp(source.parse().unwrap()),
        }
    }

    fn config() -> EngineConfig {
        let mut config = EngineConfig::loopback(5060, (20000, 20100));
        let mut secured = Account::new("MA_SECURE", "t");
        secured.sip_users = vec![SipUser {
            username: "alice".into(),
            password: "pw".into(),
        }];
        secured.sip_allow_from = vec!["127.0.0.0/8".parse().unwrap()];
        config.accounts = vec![secured];
        config
    }

    #[test]
    fn accounts_with_credentials_challenge_then_admit_the_right_password() {
        let now = Instant::now();
        let counters = SipCounters::default();
        let mut admission = Admission::new(&config(), now);
        let Decision::Challenge(challenge) =
            admission.decide(now, &incoming("127.0.0.1:5062", vec![]), &counters)
        else {
            panic!("no challenge");
        };
        assert!(challenge[0].contains("SHA-256") && challenge[1].contains("MD5"));
        let answer = |password: &str, nc| {
            authorization(
                &challenge[1],
                "INVITE",
                "sip:room@127.0.0.1",
                "alice",
                password,
                "0a4f113b",
                nc,
            )
            .unwrap()
        };
        let wrong = admission.decide(
            now,
            &incoming("127.0.0.1:5062", vec![answer("x", 1)]),
            &counters,
        );
        assert!(matches!(wrong, Decision::Challenge(_)));
        let right = admission.decide(
            now,
            &incoming("127.0.0.1:5062", vec![answer("pw", 2)]),
            &counters,
        );
        assert_eq!(right, Decision::Admit);
        let counts: Vec<_> = counters.auth().filter(|(_, n)| *n > 0).collect();
        assert_eq!(counts, [("ok", 1), ("missing", 1), ("failed", 1)]);
    }

    #[test]
    fn sources_outside_the_account_allow_list_are_discarded_before_auth() {
        let now = Instant::now();
        let counters = SipCounters::default();
        let mut admission = Admission::new(&config(), now);
        let decision = admission.decide(now, &incoming("192.0.2.1:5060", vec![]), &counters);
        assert_eq!(decision, Decision::Discard);
        assert_eq!(counters.auth().map(|(_, n)| n).sum::<u64>(), 0);
    }

    #[test]
    fn accounts_without_credentials_admit_everyone() {
        let now = Instant::now();
        let counters = SipCounters::default();
        let mut admission = Admission::new(&EngineConfig::loopback(5060, (20000, 20100)), now);
        let decision = admission.decide(now, &incoming("192.0.2.1:5060", vec![]), &counters);
        assert_eq!(decision, Decision::Admit);
    }
}
