//! Why SIP input was dropped without an answer: a small, fixed set of reasons, so metrics
//! can export one counter per reason (low-cardinality labels).

/// Why a message (or a datagram, or a stream) was dropped without being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Larger than the configured maximum message size (UDP datagram or TCP framing).
    Oversize,
    /// Did not parse far enough to be answered, or broke TCP framing.
    Malformed,
    /// A `User-Agent` of a known scanner (friendly-scanner, sipvicious, …).
    Scanner,
    /// From a source outside the allow-list (global, or the called account's).
    NotAllowed,
    /// Over the source's request rate; this request started a ban (or, without bans, was
    /// simply over the rate).
    RateLimited,
    /// From a source serving a ban.
    Banned,
    /// Parsed but belonging nowhere: no Via, a stray ACK, an unmatched response.
    Stray,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 7] = [
        DropReason::Oversize,
        DropReason::Malformed,
        DropReason::Scanner,
        DropReason::NotAllowed,
        DropReason::RateLimited,
        DropReason::Banned,
        DropReason::Stray,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Oversize => "oversize",
            DropReason::Malformed => "malformed",
            DropReason::Scanner => "scanner",
            DropReason::NotAllowed => "not_allowed",
            DropReason::RateLimited => "rate_limited",
            DropReason::Banned => "banned",
            DropReason::Stray => "stray",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A counter per [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    pub fn add(&mut self, reason: DropReason) {
        self.add_n(reason, 1);
    }

    pub fn add_n(&mut self, reason: DropReason, n: u64) {
        if let Some(count) = self.0.get_mut(reason.index()) {
            *count += n;
        }
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0.get(reason.index()).copied().unwrap_or(0)
    }

    /// Adds every counter of `other` to this one.
    pub fn merge(&mut self, other: &DropCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// `(reason, count)` for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.get(r)))
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter_and_label() {
        let mut counts = DropCounts::default();
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                counts.add(r);
            }
        }
        for (i, (r, n)) in counts.iter().enumerate() {
            assert_eq!(n, i as u64 + 1, "{r:?}");
        }
        let labels: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
        let mut doubled = counts;
        doubled.merge(&counts);
        assert_eq!(doubled.total(), 2 * counts.total());
    }
}
