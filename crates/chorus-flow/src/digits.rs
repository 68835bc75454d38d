//! Sans-IO digit collection for `<GetDigits>` / `<GetInput>` / `<Gather>` (API.md §10).
//!
//! The engine feeds digits ([`Collector::digit`]) and the clock ([`Collector::poll`]) and sleeps
//! until [`Collector::deadline`]. Timing follows Plivo: the first-digit timeout (`timeout`, or
//! `executionTimeout` for the Vobiz names) starts when the prompts have finished
//! ([`Collector::prompts_done`]); a digit pressed during the prompts is taken (barge-in).
//! After the first digit, `digitTimeout` (`digitEndTimeout`) runs between digits; reaching
//! `numDigits` or pressing `finishOnKey` completes at once.

use std::time::{Duration, Instant};

use crate::ast::{DigitsDialect, GetDigits};
use crate::interp::DigitsOutcome;

/// Between-digit timeout when the document sets none (Plivo's default).
const DEFAULT_DIGIT_TIMEOUT: Duration = Duration::from_secs(2);
/// `digitEndTimeout="auto"` for the Vobiz names.
const AUTO_DIGIT_END_TIMEOUT: Duration = Duration::from_secs(5);

/// One attempt at collecting digits.
#[derive(Debug, Clone)]
pub struct Collector {
    first_timeout: Duration,
    digit_timeout: Duration,
    finish_on_key: Option<char>,
    num_digits: usize,
    valid: String,
    digits: String,
    deadline: Option<Instant>,
    outcome: Option<DigitsOutcome>,
}

impl Collector {
    pub fn new(spec: &GetDigits) -> Self {
        let (first, between) = match spec.dialect {
            DigitsDialect::GetDigits => (
                Duration::from_secs(spec.timeout.into()),
                spec.digit_timeout
                    .map_or(DEFAULT_DIGIT_TIMEOUT, |s| Duration::from_secs(s.into())),
            ),
            DigitsDialect::GetInput | DigitsDialect::Gather => (
                Duration::from_secs(spec.execution_timeout.into()),
                spec.digit_end_timeout
                    .map_or(AUTO_DIGIT_END_TIMEOUT, |s| Duration::from_secs(s.into())),
            ),
        };
        Self {
            first_timeout: first,
            digit_timeout: between,
            finish_on_key: spec.finish_on_key,
            num_digits: spec.num_digits.max(1) as usize,
            valid: spec.valid_digits.clone(),
            digits: String::new(),
            deadline: None,
            outcome: None,
        }
    }

    /// The prompts have finished playing: the first-digit timeout starts now (unless a digit
    /// already started the between-digit one).
    pub fn prompts_done(&mut self, now: Instant) {
        if self.digits.is_empty() && self.outcome.is_none() {
            self.deadline = Some(now + self.first_timeout);
        }
    }

    /// Whether any digit has been pressed (the engine stops the prompts on the first one).
    pub fn has_input(&self) -> bool {
        !self.digits.is_empty() || self.outcome.is_some()
    }

    /// A key pressed at `now`. Returns the outcome once collection is complete.
    pub fn digit(&mut self, key: char, now: Instant) -> Option<DigitsOutcome> {
        if self.outcome.is_some() {
            return self.outcome.clone();
        }
        if Some(key) == self.finish_on_key {
            return self.finish(if self.digits.is_empty() {
                DigitsOutcome::NoInput
            } else {
                DigitsOutcome::Digits(self.digits.clone())
            });
        }
        if !self.valid.contains(key) {
            return self.finish(DigitsOutcome::Invalid);
        }
        self.digits.push(key);
        if self.digits.chars().count() >= self.num_digits {
            return self.finish(DigitsOutcome::Digits(self.digits.clone()));
        }
        self.deadline = Some(now + self.digit_timeout);
        None
    }

    /// When the engine must call [`Collector::poll`] next (`None`: waiting for the prompts).
    pub fn deadline(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            None
        } else {
            self.deadline
        }
    }

    /// Checks the timeouts at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<DigitsOutcome> {
        if self.outcome.is_some() {
            return self.outcome.clone();
        }
        match self.deadline {
            Some(deadline) if now >= deadline => self.finish(if self.digits.is_empty() {
                DigitsOutcome::NoInput
            } else {
                DigitsOutcome::Digits(self.digits.clone())
            }),
            _ => None,
        }
    }

    fn finish(&mut self, outcome: DigitsOutcome) -> Option<DigitsOutcome> {
        self.outcome = Some(outcome.clone());
        self.deadline = None;
        Some(outcome)
    }
}

/// Matches a member's recent keys against `digitsMatch` patterns (API.md §7.1): the keys are
/// kept in a short buffer and a pattern matches when the buffer ends with it; the buffer is
/// then cleared so one key press fires one callback.
#[derive(Debug, Clone, Default)]
pub struct DigitsMatcher {
    patterns: Vec<String>,
    buffer: String,
    longest: usize,
}

impl DigitsMatcher {
    pub fn new(patterns: &[String]) -> Self {
        let patterns: Vec<String> = patterns
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        let longest = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        Self {
            patterns,
            buffer: String::new(),
            longest,
        }
    }

    /// Feeds a key; returns the pattern it completed.
    pub fn key(&mut self, key: char) -> Option<String> {
        if self.longest == 0 {
            return None;
        }
        self.buffer.push(key);
        while self.buffer.len() > self.longest {
            self.buffer.remove(0);
        }
        let hit = self
            .patterns
            .iter()
            .find(|p| self.buffer.ends_with(p.as_str()))
            .cloned();
        if hit.is_some() {
            self.buffer.clear();
        }
        hit
    }
}
