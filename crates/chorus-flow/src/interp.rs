//! The sans-IO call-flow interpreter: which verb runs next, which URL to fetch, and how the
//! call ends (API.md §7.2, §9, §10).
//!
//! The engine owns all IO. It asks [`Interpreter::start`] for the first [`Step`], carries it
//! out (fetches a document, plays audio, runs a conference …) and reports what happened with
//! [`Interpreter::resume`], which returns the next step, until a [`Step::End`]. Time never
//! enters here: verbs that take time are the engine's to run, and digit collection has its own
//! sans-IO core in [`crate::digits`].
//!
//! Rules kept here:
//! - A fetched document (`answer_url`, `<Redirect>`, an `action` with `redirect="true"`)
//!   **replaces** the rest of the current one; `redirect="false"` only notifies and goes on.
//! - When the document runs out the call ends (`EndOfXml`, Vobiz 4010).
//! - Fetch failures fall back to the answer fallback URL once (answer fetch only), otherwise the
//!   call ends with [`EndCause::FetchFailed`]; invalid documents end it with
//!   [`EndCause::InvalidXml`].
//! - A redirect loop (more than [`Limits::max_idle_fetches`] fetches in a row with no verb run
//!   in between) or more than [`Limits::max_fetches`] fetches in all ends the call
//!   ([`EndCause::RedirectLoop`]), so a misbehaving app cannot spin the engine.
//! - Inbound calls are answered lazily, just before the first verb that needs media
//!   ([`Step::Answer`]); `Wait`, `Hangup`, `Dial` and `PreAnswer` do not answer.

use std::collections::VecDeque;

use crate::ast::*;
use crate::FlowError;

/// Form parameters of a request: `(name, value)` in order.
pub type Params = Vec<(String, String)>;

/// Guards against runaway documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fetches in a row without any other verb in between before the call is ended as a
    /// redirect loop.
    pub max_idle_fetches: u32,
    /// Fetches per call in all (plivoframework caps redirects at 9999).
    pub max_fetches: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_idle_fetches: 10,
            max_fetches: 9_999,
        }
    }
}

/// Why a document is being fetched; decides the `Event` parameter (API.md §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    /// The first fetch of the call (`Event=StartApp`).
    Answer,
    /// The answer fallback URL after the answer fetch failed (`Event=StartApp`).
    AnswerFallback,
    /// `<Redirect>` (`Event=Redirect`).
    Redirect,
    /// The `action` of `<Conference>` or `<GetDigits>` (its own parameters, no `Event`).
    Action,
}

/// A URL and how to request it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub method: Method,
}

/// What the engine does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Fetch a document (add the call parameters to `params`) and report it with
    /// [`Input::Fetched`].
    Fetch {
        target: Target,
        kind: FetchKind,
        params: Params,
    },
    /// Request a URL and ignore the response (`redirect="false"`), then [`Input::Done`].
    Notify { target: Target, params: Params },
    /// Answer the inbound call now (lazy answer, API.md §9.1), then [`Input::Done`].
    Answer,
    /// Early media for a `<PreAnswer>` (183 with SDP), then [`Input::Done`].
    EarlyMedia,
    /// Say the text, then [`Input::Done`].
    Speak(Speak),
    /// Play the URL, then [`Input::Done`].
    Play(Play),
    /// Wait, then [`Input::Done`].
    Wait(Wait),
    /// Send the digits (RFC 4733), then [`Input::Done`].
    Dtmf(Dtmf),
    /// Arm a hangup `after` seconds from now (`<Hangup schedule>`), then [`Input::Done`].
    ScheduleHangup { after: u32 },
    /// Run the conference until the member leaves; report [`Input::ConferenceLeft`]. If the
    /// call itself ends meanwhile, stop driving the interpreter (API.md §7.2 step 7).
    Conference(Conference),
    /// Record the caller (`<Record>`), then report [`Input::Recorded`].
    Record(Record),
    /// Play the prompts and collect digits (attempt `attempt` of `retries`); report
    /// [`Input::Digits`]. `invalid_sound` is played first when the previous attempt had an
    /// invalid digit.
    GetDigits {
        spec: GetDigits,
        attempt: u32,
        invalid_sound: Option<String>,
    },
    /// End the call.
    End(EndCause),
}

/// The engine's report on the last [`Step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The step finished normally.
    Done,
    /// A fetched document body, or why the fetch failed.
    Fetched(Result<String, FetchFailure>),
    /// The member left the conference (kick, refused, room ended) with the call still up.
    /// `params` are the `action` parameters (API.md §8.4).
    ConferenceLeft { params: Params },
    /// The member could not join (the room is full): no `action`, the next verb runs
    /// (API.md §7.2 step 2).
    ConferenceRefused,
    /// Digit collection finished.
    Digits(DigitsOutcome),
    /// `<Record>` finished; `params` are its `action` parameters (`RecordUrl`, `RecordingID`,
    /// `RecordingDuration`, … `Digits`). `None` when the recording could not be made: the call
    /// ends (the engine has logged why).
    Recorded { params: Option<Params> },
}

/// Why a document could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    /// Unreachable, timed out, or answered with an error status.
    Failed(String),
    /// The body was larger than a document may be (API.md §9.1: 100 KB): a bad document,
    /// not a failed fetch.
    TooLarge(String),
}

/// How a digit collection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigitsOutcome {
    /// Digits entered (without the finish key).
    Digits(String),
    /// Nothing entered before the timeout.
    NoInput,
    /// A digit outside `validDigits` was pressed.
    Invalid,
}

/// Why the call ends, with the webhook fields of API.md §9.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndCause {
    /// The document ran out (Vobiz 4010).
    EndOfXml,
    /// `<Hangup>` ran.
    Hangup(Option<HangupReason>),
    /// A document was not valid call-flow XML (Vobiz 8011).
    InvalidXml(String),
    /// A document could not be fetched.
    FetchFailed(String),
    /// Too many fetches with nothing in between.
    RedirectLoop,
    /// A verb this engine does not run (yet): the call fails clearly instead of skipping it.
    Unsupported(String),
}

impl EndCause {
    /// Q.850 cause name for `HangupCause`.
    pub fn hangup_cause(&self) -> &'static str {
        match self {
            EndCause::EndOfXml | EndCause::Hangup(None) => "NORMAL_CLEARING",
            EndCause::Hangup(Some(HangupReason::Rejected)) => "CALL_REJECTED",
            EndCause::Hangup(Some(HangupReason::Busy)) => "USER_BUSY",
            EndCause::InvalidXml(_)
            | EndCause::FetchFailed(_)
            | EndCause::RedirectLoop
            | EndCause::Unsupported(_) => "NORMAL_TEMPORARY_FAILURE",
        }
    }

    /// Vobiz/Plivo `HangupCauseCode`.
    pub fn code(&self) -> u16 {
        match self {
            EndCause::EndOfXml => 4010,
            EndCause::Hangup(None) => 4000,
            EndCause::Hangup(Some(HangupReason::Rejected)) => 3020,
            EndCause::Hangup(Some(HangupReason::Busy)) => 3010,
            EndCause::InvalidXml(_) | EndCause::RedirectLoop | EndCause::Unsupported(_) => 8011,
            EndCause::FetchFailed(_) => 8001,
        }
    }

    /// `HangupCauseName`.
    pub fn name(&self) -> &'static str {
        match self {
            EndCause::EndOfXml => "End Of XML Instructions",
            EndCause::Hangup(None) => "Normal Hangup",
            EndCause::Hangup(Some(HangupReason::Rejected)) => "Rejected",
            EndCause::Hangup(Some(HangupReason::Busy)) => "Busy Line",
            EndCause::InvalidXml(_) => "Invalid Answer XML",
            EndCause::RedirectLoop => "Redirect Loop",
            EndCause::Unsupported(_) => "Unsupported XML Element",
            EndCause::FetchFailed(_) => "Answer URL Fetch Failed",
        }
    }

    /// `HangupSource`.
    pub fn source(&self) -> &'static str {
        match self {
            EndCause::EndOfXml | EndCause::Hangup(_) => "Answer XML",
            _ => "Error",
        }
    }

    /// The SIP status that refuses a call not answered yet.
    pub fn reject_status(&self) -> u16 {
        match self {
            EndCause::Hangup(Some(HangupReason::Busy)) => 486,
            EndCause::Hangup(Some(HangupReason::Rejected)) => 603,
            EndCause::Hangup(None) | EndCause::EndOfXml => 480,
            _ => 500,
        }
    }
}

/// What the interpreter is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Nothing,
    Fetch(FetchKind),
    /// A verb that just reports `Done`.
    Verb,
    Conference {
        action: Option<Target>,
        redirect: bool,
    },
    GetDigits {
        spec: Box<GetDigits>,
        attempt: u32,
    },
    Record {
        action: Option<Target>,
        redirect: bool,
    },
    Ended,
}

/// One call's interpreter.
#[derive(Debug)]
pub struct Interpreter {
    limits: Limits,
    answer: Target,
    fallback: Option<Target>,
    inbound: bool,
    answered: bool,
    /// Verbs left in the current document (nested `PreAnswer` verbs are spliced in front).
    queue: VecDeque<Queued>,
    pending: Pending,
    fetches: u32,
    idle_fetches: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Queued {
    Verb(Box<Element>),
    /// Start of a `<PreAnswer>` block's early media.
    EarlyMedia,
    /// End of a `<PreAnswer>` block: verbs after it may answer again.
    EndPreAnswer,
}

/// Whether a verb needs the call answered before it runs (API.md §9.1: `Wait`, `PreAnswer`,
/// `Hangup` and `Dial` don't, as plivoframework's `NO_ANSWER_ELEMENTS`; a `Redirect` inside
/// `<PreAnswer>` doesn't either, because the block keeps the call unanswered).
fn needs_answer(element: &Element) -> bool {
    !matches!(
        element,
        Element::Wait(_) | Element::Hangup(_) | Element::PreAnswer(_) | Element::Dial(_)
    )
}

impl Interpreter {
    /// An interpreter that starts by fetching `answer` (with `fallback` if that fails).
    /// `inbound` calls are answered lazily; outbound calls are up already.
    pub fn new(answer: Target, fallback: Option<Target>, inbound: bool, limits: Limits) -> Self {
        Self {
            limits,
            answer,
            fallback,
            inbound,
            answered: !inbound,
            queue: VecDeque::new(),
            pending: Pending::Nothing,
            fetches: 0,
            idle_fetches: 0,
        }
    }

    /// Whether [`Step::Answer`] has been issued (or the call was outbound).
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// The first step: fetch the answer URL.
    pub fn start(&mut self) -> Step {
        let target = self.answer.clone();
        self.fetch(target, FetchKind::Answer, Vec::new())
    }

    /// Starts from a document already in hand (tests, or an app that gave XML inline).
    pub fn start_with_document(&mut self, xml: &str) -> Step {
        self.pending = Pending::Fetch(FetchKind::Answer);
        self.resume(Input::Fetched(Ok(xml.to_owned())))
    }

    /// Reports the outcome of the last step and returns the next one.
    pub fn resume(&mut self, input: Input) -> Step {
        let pending = std::mem::replace(&mut self.pending, Pending::Nothing);
        match (pending, input) {
            (Pending::Ended, _) => self.end_again(),
            (Pending::Fetch(kind), Input::Fetched(result)) => self.fetched(kind, result),
            (Pending::Verb, Input::Done) => self.next(),
            (Pending::Conference { action, redirect }, Input::ConferenceLeft { params }) => {
                self.after_action(action, redirect, params)
            }
            (Pending::Conference { .. }, Input::ConferenceRefused) => self.next(),
            (
                Pending::Record { action, redirect },
                Input::Recorded {
                    params: Some(params),
                },
            ) => self.after_action(action, redirect, params),
            (Pending::Record { .. }, Input::Recorded { params: None }) => self.end(
                EndCause::Unsupported("the recording could not be made".into()),
            ),
            (Pending::GetDigits { spec, attempt }, Input::Digits(outcome)) => {
                self.after_digits(*spec, attempt, outcome)
            }
            (pending, input) => {
                // An engine bug, not network input: say so and end the call rather than run
                // the flow in a state nobody expects.
                self.end(EndCause::Unsupported(format!(
                    "interpreter got {input:?} while waiting for {pending:?}"
                )))
            }
        }
    }

    fn end(&mut self, cause: EndCause) -> Step {
        self.pending = Pending::Ended;
        self.queue.clear();
        Step::End(cause)
    }

    fn end_again(&mut self) -> Step {
        self.pending = Pending::Ended;
        Step::End(EndCause::EndOfXml)
    }

    fn fetch(&mut self, target: Target, kind: FetchKind, mut params: Params) -> Step {
        self.fetches += 1;
        self.idle_fetches += 1;
        if self.fetches > self.limits.max_fetches
            || self.idle_fetches > self.limits.max_idle_fetches
        {
            return self.end(EndCause::RedirectLoop);
        }
        match kind {
            FetchKind::Answer | FetchKind::AnswerFallback => {
                params.push(("Event".into(), "StartApp".into()))
            }
            FetchKind::Redirect => params.push(("Event".into(), "Redirect".into())),
            FetchKind::Action => {}
        }
        self.pending = Pending::Fetch(kind);
        Step::Fetch {
            target,
            kind,
            params,
        }
    }

    fn fetched(&mut self, kind: FetchKind, result: Result<String, FetchFailure>) -> Step {
        let body = match result {
            Ok(body) => body,
            Err(FetchFailure::TooLarge(reason)) => return self.end(EndCause::InvalidXml(reason)),
            Err(FetchFailure::Failed(reason)) => {
                if kind == FetchKind::Answer {
                    if let Some(fallback) = self.fallback.clone() {
                        // The fallback is a second try, not a loop.
                        self.idle_fetches -= 1;
                        return self.fetch(fallback, FetchKind::AnswerFallback, Vec::new());
                    }
                }
                return self.end(EndCause::FetchFailed(reason));
            }
        };
        match crate::parse(&body) {
            Ok(doc) => {
                // The new document replaces whatever was left of the old one.
                self.queue = doc
                    .elements
                    .into_iter()
                    .map(|e| Queued::Verb(Box::new(e)))
                    .collect();
                self.next()
            }
            Err(error) => self.end(invalid(error)),
        }
    }

    fn next(&mut self) -> Step {
        loop {
            let Some(item) = self.queue.pop_front() else {
                return self.end(EndCause::EndOfXml);
            };
            let element = match item {
                Queued::EarlyMedia => {
                    self.pending = Pending::Verb;
                    return Step::EarlyMedia;
                }
                Queued::EndPreAnswer => continue,
                Queued::Verb(element) => *element,
            };
            if !matches!(element, Element::Redirect(_)) {
                self.idle_fetches = 0;
            }
            if self.inbound && !self.answered && needs_answer(&element) && !self.in_pre_answer() {
                self.answered = true;
                self.queue.push_front(Queued::Verb(Box::new(element)));
                self.pending = Pending::Verb;
                return Step::Answer;
            }
            return self.run(element);
        }
    }

    /// Whether the verbs at the head of the queue came from a `<PreAnswer>` block.
    fn in_pre_answer(&self) -> bool {
        self.queue.iter().any(|q| *q == Queued::EndPreAnswer)
    }

    fn run(&mut self, element: Element) -> Step {
        match element {
            Element::Speak(s) => self.verb(Step::Speak(s)),
            Element::Play(p) => self.verb(Step::Play(p)),
            Element::Wait(w) => self.verb(Step::Wait(w)),
            Element::Dtmf(d) => self.verb(Step::Dtmf(d)),
            Element::Hangup(h) if h.schedule > 0 => {
                self.verb(Step::ScheduleHangup { after: h.schedule })
            }
            Element::Hangup(h) => self.end(EndCause::Hangup(h.reason)),
            Element::Redirect(r) => self.fetch(
                Target {
                    url: r.url,
                    method: r.method,
                },
                FetchKind::Redirect,
                Vec::new(),
            ),
            Element::PreAnswer(p) => {
                if self.answered {
                    // Early media after the answer is just media (plivoframework runs the
                    // nested verbs either way).
                    for e in p.elements.into_iter().rev() {
                        self.queue.push_front(Queued::Verb(Box::new(e)));
                    }
                } else {
                    self.queue.push_front(Queued::EndPreAnswer);
                    for e in p.elements.into_iter().rev() {
                        self.queue.push_front(Queued::Verb(Box::new(e)));
                    }
                    self.queue.push_front(Queued::EarlyMedia);
                }
                self.next()
            }
            Element::Conference(c) => {
                self.pending = Pending::Conference {
                    action: c.action.clone().map(|url| Target {
                        url,
                        method: c.method,
                    }),
                    redirect: c.redirect,
                };
                Step::Conference(c)
            }
            Element::GetDigits(g) => {
                if g.input_type == InputType::Speech {
                    return self.end(EndCause::Unsupported(
                        "speech input (inputType=\"speech\") is not supported; use dtmf".into(),
                    ));
                }
                self.get_digits(g, 1, None)
            }
            Element::Record(r) => {
                self.pending = Pending::Record {
                    action: r.action.clone().map(|url| Target {
                        url,
                        method: r.method,
                    }),
                    redirect: r.redirect,
                };
                Step::Record(r)
            }
            Element::Dial(_) => self.end(EndCause::Unsupported(
                "<Dial> (outbound legs) is not supported by this engine".into(),
            )),
        }
    }

    fn verb(&mut self, step: Step) -> Step {
        self.pending = Pending::Verb;
        step
    }

    fn get_digits(&mut self, spec: GetDigits, attempt: u32, invalid_sound: Option<String>) -> Step {
        self.pending = Pending::GetDigits {
            spec: Box::new(spec.clone()),
            attempt,
        };
        Step::GetDigits {
            spec,
            attempt,
            invalid_sound,
        }
    }

    fn after_digits(&mut self, spec: GetDigits, attempt: u32, outcome: DigitsOutcome) -> Step {
        match outcome {
            DigitsOutcome::Digits(digits) if !digits.is_empty() => {
                let action = spec.action.clone().map(|url| Target {
                    url,
                    method: spec.method,
                });
                let mut params = Vec::new();
                if spec.dialect != DigitsDialect::GetDigits {
                    params.push(("InputType".into(), "dtmf".into()));
                }
                params.push(("Digits".into(), digits));
                self.after_action(action, spec.redirect, params)
            }
            DigitsOutcome::Invalid if attempt < spec.retries.max(1) => {
                let sound = spec.invalid_digits_sound.clone();
                self.get_digits(spec, attempt + 1, sound)
            }
            DigitsOutcome::NoInput | DigitsOutcome::Digits(_) if attempt < spec.retries.max(1) => {
                self.get_digits(spec, attempt + 1, None)
            }
            // No input after every attempt: no action request, the next element runs.
            _ => self.next(),
        }
    }

    /// After a verb with an `action`: fetch it and replace the document, or just notify it
    /// (`redirect="false"`), or go on when there is none.
    fn after_action(&mut self, action: Option<Target>, redirect: bool, params: Params) -> Step {
        match action {
            Some(target) if redirect => self.fetch(target, FetchKind::Action, params),
            Some(target) => {
                self.pending = Pending::Verb;
                Step::Notify { target, params }
            }
            None => self.next(),
        }
    }
}

fn invalid(error: FlowError) -> EndCause {
    EndCause::InvalidXml(error.to_string())
}
