//! The typed call-flow document produced by [`parse`](crate::parse).
//!
//! Every attribute listed in API.md §7.1 and §10 has a typed field with its documented
//! default already applied; absent optional values are `None`.

/// A whole `<Response>` document: elements run in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub elements: Vec<Element>,
}

/// One verb of the call-flow language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    Conference(Conference),
    Speak(Speak),
    Play(Play),
    Wait(Wait),
    /// From `<GetDigits>` (Plivo), `<GetInput>` or `<Gather>` (Vobiz).
    GetDigits(GetDigits),
    Redirect(Redirect),
    Hangup(Hangup),
    PreAnswer(PreAnswer),
    Dtmf(Dtmf),
    Record(Record),
    Dial(Dial),
}

/// HTTP method for a URL the engine fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    Get,
    #[default]
    Post,
}

/// Recording file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordFormat {
    #[default]
    Mp3,
    Wav,
}

/// A sound played to the room on enter or exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sound {
    /// `beep:1`: one tone.
    Beep1,
    /// `beep:2`: two tones.
    Beep2,
    /// A URL returning Play / Speak / Wait XML.
    Url(String),
}

/// Transcription mode of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscriptionType {
    Auto,
    Hybrid,
    Manual,
}

/// `<Conference attr…>RoomName</Conference>` (API.md §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conference {
    /// Room name, trimmed, never empty.
    pub room: String,
    pub muted: bool,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    /// `None` when absent: the engine applies its `stay_alone_default` (`true`, API.md §15.3).
    pub stay_alone: Option<bool>,
    pub wait_sound: Option<String>,
    pub wait_method: Method,
    /// From `maxParticipants`, else `maxMembers`; default 200 (API.md §15.4).
    pub max_members: u32,
    /// `None` when `enterSound` is absent or empty and `beep` is not `true`.
    pub enter_sound: Option<Sound>,
    pub exit_sound: Option<Sound>,
    /// Seconds; 0 = no limit. `None` when absent: [`Conference::DEFAULT_TIME_LIMIT`] applies
    /// and, unlike an explicit value, does not reset a running room timer (API.md §15.5).
    pub time_limit: Option<u32>,
    pub hangup_on_star: bool,
    pub record: bool,
    pub record_file_format: RecordFormat,
    pub record_file_path: Option<String>,
    pub record_file_name: Option<String>,
    pub record_when_alone: bool,
    pub transcription_type: Option<TranscriptionType>,
    pub transcription_url: Option<String>,
    pub transcription_method: Method,
    pub action: Option<String>,
    pub method: Method,
    pub redirect: bool,
    pub callback_url: Option<String>,
    pub callback_method: Method,
    /// Digit patterns from the comma list `digitsMatch`.
    pub digits_match: Vec<String>,
    pub floor_event: bool,
    /// Default `true` (Plivo cloud).
    pub relay_dtmf: bool,
    pub send_digits: Option<String>,
}

impl Conference {
    /// `timeLimit` when the attribute is absent (Vobiz, API.md §15.5).
    pub const DEFAULT_TIME_LIMIT: u32 = 14_400;

    /// The effective `timeLimit` in seconds (0 = none).
    pub fn time_limit_secs(&self) -> u32 {
        self.time_limit.unwrap_or(Self::DEFAULT_TIME_LIMIT)
    }
}

/// Text-to-speech voice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Voice {
    #[default]
    Woman,
    Man,
    /// A TTS engine voice name such as `Polly.Joanna`.
    Named(String),
}

/// `<Speak>text</Speak>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speak {
    /// The text; SSML markup inside is flattened to its text for now.
    pub text: String,
    pub voice: Voice,
    /// Default `en-US`.
    pub language: String,
    /// Times to say it; 0 = repeat up to the engine cap. Default 1.
    pub loop_count: u32,
}

/// `<Play>url</Play>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    pub url: String,
    /// 0 = repeat up to the engine cap. Default 1.
    pub loop_count: u32,
}

/// `<Wait/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// Seconds, default 1.
    pub length: u32,
    pub silence: bool,
    /// Milliseconds of silence that end a `silence` wait; default 2000.
    pub min_silence: u32,
    pub beep: bool,
}

/// Which element name a [`GetDigits`] came from; callbacks differ slightly per dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitsDialect {
    GetDigits,
    GetInput,
    Gather,
}

/// What a `<GetInput>` listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputType {
    #[default]
    Dtmf,
    Speech,
    DtmfSpeech,
}

/// A prompt nested in `<GetDigits>` / `<GetInput>` / `<Gather>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Speak(Speak),
    Play(Play),
    Wait(Wait),
}

/// `<GetDigits>`, `<GetInput>` or `<Gather>` (API.md §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetDigits {
    pub dialect: DigitsDialect,
    pub action: Option<String>,
    pub method: Method,
    /// Seconds to wait for the first digit; default 5.
    pub timeout: u32,
    pub digit_timeout: Option<u32>,
    /// `None` when `finishOnKey` is `none` or empty. Default `#`.
    pub finish_on_key: Option<char>,
    /// Default 99.
    pub num_digits: u32,
    /// Default 1.
    pub retries: u32,
    pub play_beep: bool,
    /// Default `0123456789*#`.
    pub valid_digits: String,
    pub invalid_digits_sound: Option<String>,
    pub redirect: bool,
    pub log: bool,
    pub input_type: InputType,
    /// Seconds, 5–60; default 15.
    pub execution_timeout: u32,
    /// Seconds, 2–10; `None` = auto.
    pub digit_end_timeout: Option<u32>,
    /// Seconds, 2–10; `None` = auto.
    pub speech_end_timeout: Option<u32>,
    pub speech_model: Option<String>,
    pub hints: Option<String>,
    /// Default `en-US`.
    pub language: String,
    pub interim_speech_results_callback: Option<String>,
    pub interim_speech_results_callback_method: Method,
    pub profanity_filter: bool,
    pub prompts: Vec<Prompt>,
}

/// `<Redirect>url</Redirect>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub url: String,
    pub method: Method,
}

/// `reason` of `<Hangup>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupReason {
    /// CALL_REJECTED.
    Rejected,
    /// USER_BUSY.
    Busy,
}

/// `<Hangup/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hangup {
    pub reason: Option<HangupReason>,
    /// Seconds; 0 = now, N = hang up after N seconds and continue with the next element.
    pub schedule: u32,
}

/// `<PreAnswer>`: early-media elements (Speak, Play, Wait, GetDigits, Redirect).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreAnswer {
    pub elements: Vec<Element>,
}

/// `<DTMF>digits</DTMF>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf {
    /// `0-9`, `*`, `#`, `A-D`, and `w`/`W` pauses.
    pub digits: String,
    /// Default `true`.
    pub is_async: bool,
}

/// Audio channel layout of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelType {
    Mono,
    Stereo,
}

/// `<Record/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub action: Option<String>,
    pub method: Method,
    pub file_format: RecordFormat,
    pub redirect: bool,
    /// Seconds of silence that end the recording; default 15.
    pub timeout: u32,
    /// Seconds; default 60.
    pub max_length: u32,
    /// Default `true`.
    pub play_beep: bool,
    /// Keys that end the recording; default `1234567890*#`; empty = none.
    pub finish_on_key: String,
    pub record_session: bool,
    pub start_on_dial_answer: bool,
    pub callback_url: Option<String>,
    pub callback_method: Method,
    pub transcription_type: Option<TranscriptionType>,
    pub transcription_url: Option<String>,
    pub transcription_method: Method,
    pub record_channel_type: Option<ChannelType>,
}

/// A SIP header given in `sipHeaders="name=value,…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipHeader {
    pub name: String,
    pub value: String,
}

/// A `<Number>` or `<User>` inside `<Dial>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialTarget {
    Number(Number),
    User(User),
}

/// `<Number>+15551234567</Number>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    pub number: String,
    pub send_digits: Option<String>,
    pub send_on_preanswer: bool,
}

/// `<User>sip:alice@example.com</User>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uri: String,
    pub send_digits: Option<String>,
    pub send_on_preanswer: bool,
    pub sip_headers: Vec<SipHeader>,
}

/// `<Dial>`: at least one [`DialTarget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    pub action: Option<String>,
    pub method: Method,
    /// Ring timeout in seconds.
    pub timeout: Option<u32>,
    /// Seconds; 0 = none; default 14400.
    pub time_limit: u32,
    pub caller_id: Option<String>,
    pub caller_name: Option<String>,
    pub confirm_sound: Option<String>,
    pub confirm_key: Option<char>,
    pub dial_music: Option<String>,
    pub hangup_on_star: bool,
    pub redirect: bool,
    pub callback_url: Option<String>,
    pub callback_method: Method,
    pub digits_match: Vec<String>,
    pub digits_match_b_leg: Vec<String>,
    pub sip_headers: Vec<SipHeader>,
    pub targets: Vec<DialTarget>,
}
