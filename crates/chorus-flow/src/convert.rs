//! Second pass: untyped tree to the typed [`Response`].

use crate::ast::*;
use crate::attrs::{check_dtmf, is_http_url, Attrs};
use crate::tree::{Child, Node};
use crate::FlowError;

/// SSML tags allowed inside `<Speak>` (API.md §10); their text is kept, the markup dropped.
const SSML_TAGS: &[&str] = &[
    "break", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w",
];

/// Names of every element the language defines, for telling "unknown" from "misplaced".
const KNOWN: &[&str] = &[
    "Response",
    "Conference",
    "Speak",
    "Play",
    "Wait",
    "GetDigits",
    "GetInput",
    "Gather",
    "Redirect",
    "Hangup",
    "PreAnswer",
    "DTMF",
    "Dtmf",
    "Record",
    "Dial",
    "Number",
    "User",
];

pub(crate) fn response(root: &Node) -> Result<Response, FlowError> {
    if root.name != "Response" {
        return Err(FlowError::NotResponse {
            found: root.name.clone(),
        });
    }
    no_text(root)?;
    let elements = root
        .elements()
        .map(|n| element(n, &root.name))
        .collect::<Result<_, _>>()?;
    Ok(Response { elements })
}

fn element(node: &Node, parent: &str) -> Result<Element, FlowError> {
    Ok(match node.name.as_str() {
        "Conference" => Element::Conference(conference(node)?),
        "Speak" => Element::Speak(speak(node)?),
        "Play" => Element::Play(play(node)?),
        "Wait" => Element::Wait(wait(node)?),
        "GetDigits" | "GetInput" | "Gather" => Element::GetDigits(get_digits(node)?),
        "Redirect" => Element::Redirect(redirect(node)?),
        "Hangup" => Element::Hangup(hangup(node)?),
        "PreAnswer" => Element::PreAnswer(pre_answer(node)?),
        "DTMF" | "Dtmf" => Element::Dtmf(dtmf(node)?),
        "Record" => Element::Record(record(node)?),
        "Dial" => Element::Dial(dial(node)?),
        _ => return Err(misplaced_or_unknown(node, parent)),
    })
}

fn misplaced_or_unknown(node: &Node, parent: &str) -> FlowError {
    if KNOWN.contains(&node.name.as_str()) {
        FlowError::MisplacedElement {
            element: node.name.clone(),
            parent: parent.to_owned(),
        }
    } else {
        FlowError::UnknownElement {
            element: node.name.clone(),
            parent: parent.to_owned(),
        }
    }
}

/// Rejects child elements and non-whitespace text.
fn empty(node: &Node) -> Result<(), FlowError> {
    if let Some(child) = node.elements().next() {
        return Err(misplaced_or_unknown(child, &node.name));
    }
    no_text(node)
}

fn no_text(node: &Node) -> Result<(), FlowError> {
    if node.text().trim().is_empty() {
        Ok(())
    } else {
        Err(FlowError::UnexpectedText {
            element: node.name.clone(),
        })
    }
}

/// Trimmed text of a text-only element; rejects child elements and empty text.
fn required_text(node: &Node, expected: &'static str) -> Result<String, FlowError> {
    if let Some(child) = node.elements().next() {
        return Err(misplaced_or_unknown(child, &node.name));
    }
    let text = node.text().trim().to_owned();
    if text.is_empty() {
        return Err(FlowError::MissingContent {
            element: node.name.clone(),
            expected,
        });
    }
    Ok(text)
}

fn bad_content(node: &Node, content: &str, reason: &str) -> FlowError {
    FlowError::BadContent {
        element: node.name.clone(),
        content: content.to_owned(),
        reason: reason.to_owned(),
    }
}

fn conference(node: &Node) -> Result<Conference, FlowError> {
    let room = required_text(node, "a room name")?;
    let a = Attrs::new(&node.name, &node.attrs);
    // API.md §15.4: accept both spellings; maxParticipants wins.
    let max_members = match a.opt_u32("maxParticipants", 1..=u32::MAX)? {
        Some(n) => n,
        None => a.u32("maxMembers", 200, 1..=u32::MAX)?,
    };
    // API.md §15.11: Vobiz `beep="true"` stands in for unset enter/exit sounds.
    let beep = a.opt_bool("beep")?.unwrap_or(false);
    let fallback = beep.then_some(Sound::Beep1);
    let enter_sound = match a.raw("enterSound") {
        Some(_) => a.sound("enterSound")?,
        None => fallback.clone(),
    };
    let exit_sound = match a.raw("exitSound") {
        Some(_) => a.sound("exitSound")?,
        None => fallback,
    };
    Ok(Conference {
        room,
        muted: a.bool("muted", false)?,
        start_conference_on_enter: a.bool("startConferenceOnEnter", true)?,
        end_conference_on_exit: a.bool("endConferenceOnExit", false)?,
        stay_alone: a.opt_bool("stayAlone")?,
        wait_sound: a.url("waitSound")?,
        wait_method: a.method("waitMethod")?,
        max_members,
        enter_sound,
        exit_sound,
        time_limit: a.opt_u32("timeLimit", 0..=u32::MAX)?,
        hangup_on_star: a.bool("hangupOnStar", false)?,
        record: a.bool("record", false)?,
        record_file_format: a.record_format("recordFileFormat")?,
        record_file_path: a.string("recordFilePath"),
        record_file_name: a.string("recordFileName"),
        record_when_alone: a.bool("recordWhenAlone", false)?,
        transcription_type: a.transcription_type("transcriptionType")?,
        transcription_url: a.url("transcriptionUrl")?,
        transcription_method: a.method("transcriptionMethod")?,
        action: a.url("action")?,
        method: a.method("method")?,
        redirect: a.bool("redirect", true)?,
        callback_url: a.url("callbackUrl")?,
        callback_method: a.method("callbackMethod")?,
        digits_match: a.patterns("digitsMatch")?,
        floor_event: a.bool("floorEvent", false)?,
        relay_dtmf: a.bool("relayDTMF", true)?,
        send_digits: a.digits("sendDigits")?,
    })
}

fn speak(node: &Node) -> Result<Speak, FlowError> {
    let mut text = String::new();
    collect_speech(node, &mut text)?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(FlowError::MissingContent {
            element: node.name.clone(),
            expected: "text to speak",
        });
    }
    let a = Attrs::new(&node.name, &node.attrs);
    let voice = match a.raw("voice") {
        None => Voice::Woman,
        Some(v) if v.trim().eq_ignore_ascii_case("WOMAN") => Voice::Woman,
        Some(v) if v.trim().eq_ignore_ascii_case("MAN") => Voice::Man,
        Some(v) if !v.trim().is_empty() && !v.chars().any(char::is_control) => {
            Voice::Named(v.trim().to_owned())
        }
        Some(v) => return Err(a.bad("voice", v, "expected WOMAN, MAN or a TTS voice name")),
    };
    Ok(Speak {
        text,
        voice,
        language: language(&a)?,
        loop_count: a.u32("loop", 1, 0..=u32::MAX)?,
    })
}

fn language(a: &Attrs<'_>) -> Result<String, FlowError> {
    match a.raw("language") {
        None => Ok("en-US".to_owned()),
        Some(v) => {
            let t = v.trim();
            if !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                Ok(t.to_owned())
            } else {
                Err(a.bad("language", v, "expected a language tag such as en-US"))
            }
        }
    }
}

fn collect_speech(node: &Node, out: &mut String) -> Result<(), FlowError> {
    for child in &node.children {
        match child {
            Child::Text(t) => out.push_str(t),
            Child::Element(n) if SSML_TAGS.contains(&n.name.as_str()) => {
                // Keep words on either side of e.g. <break/> apart.
                out.push(' ');
                collect_speech(n, out)?;
                out.push(' ');
            }
            Child::Element(n) => return Err(misplaced_or_unknown(n, &node.name)),
        }
    }
    Ok(())
}

fn play(node: &Node) -> Result<Play, FlowError> {
    let url = required_text(node, "a URL to play")?;
    let a = Attrs::new(&node.name, &node.attrs);
    Ok(Play {
        url,
        loop_count: a.u32("loop", 1, 0..=u32::MAX)?,
    })
}

fn wait(node: &Node) -> Result<Wait, FlowError> {
    empty(node)?;
    let a = Attrs::new(&node.name, &node.attrs);
    Ok(Wait {
        length: a.u32("length", 1, 1..=86_400)?,
        silence: a.bool("silence", false)?,
        min_silence: a.u32("minSilence", 2_000, 0..=86_400_000)?,
        beep: a.bool("beep", false)?,
    })
}

fn get_digits(node: &Node) -> Result<GetDigits, FlowError> {
    no_text(node)?;
    let prompts = node
        .elements()
        .map(|n| match n.name.as_str() {
            "Speak" => speak(n).map(Prompt::Speak),
            "Play" => play(n).map(Prompt::Play),
            "Wait" => wait(n).map(Prompt::Wait),
            _ => Err(misplaced_or_unknown(n, &node.name)),
        })
        .collect::<Result<_, _>>()?;
    let dialect = match node.name.as_str() {
        "GetInput" => DigitsDialect::GetInput,
        "Gather" => DigitsDialect::Gather,
        _ => DigitsDialect::GetDigits,
    };
    let a = Attrs::new(&node.name, &node.attrs);
    let input_type = match a.raw("inputType") {
        None => InputType::Dtmf,
        Some(v) => {
            let words: Vec<String> = v.split_whitespace().map(str::to_ascii_lowercase).collect();
            let has = |w: &str| words.iter().any(|x| x == w);
            if words.is_empty() || words.iter().any(|w| w != "dtmf" && w != "speech") {
                return Err(a.bad("inputType", v, "expected dtmf, speech or \"dtmf speech\""));
            }
            match (has("dtmf"), has("speech")) {
                (true, true) => InputType::DtmfSpeech,
                (false, true) => InputType::Speech,
                _ => InputType::Dtmf,
            }
        }
    };
    Ok(GetDigits {
        dialect,
        action: a.url("action")?,
        method: a.method("method")?,
        timeout: a.u32("timeout", 5, 1..=3_600)?,
        digit_timeout: a.opt_u32("digitTimeout", 1..=3_600)?,
        finish_on_key: a.key("finishOnKey", Some('#'))?,
        num_digits: a.u32("numDigits", 99, 1..=99)?,
        retries: a.u32("retries", 1, 1..=100)?,
        play_beep: a.bool("playBeep", false)?,
        valid_digits: a.keys("validDigits", "0123456789*#")?,
        invalid_digits_sound: a.url("invalidDigitsSound")?,
        redirect: a.bool("redirect", true)?,
        log: a.bool("log", true)?,
        input_type,
        execution_timeout: a.u32("executionTimeout", 15, 5..=60)?,
        digit_end_timeout: a.auto_u32("digitEndTimeout", 2..=10)?,
        speech_end_timeout: a.auto_u32("speechEndTimeout", 2..=10)?,
        speech_model: a.string("speechModel"),
        hints: a.string("hints"),
        language: language(&a)?,
        interim_speech_results_callback: a.url("interimSpeechResultsCallback")?,
        interim_speech_results_callback_method: a.method("interimSpeechResultsCallbackMethod")?,
        profanity_filter: a.bool("profanityFilter", false)?,
        prompts,
    })
}

fn redirect(node: &Node) -> Result<Redirect, FlowError> {
    let url = required_text(node, "a URL")?;
    if !is_http_url(&url) {
        return Err(bad_content(
            node,
            &url,
            "expected an absolute http:// or https:// URL",
        ));
    }
    let a = Attrs::new(&node.name, &node.attrs);
    Ok(Redirect {
        url,
        method: a.method("method")?,
    })
}

fn hangup(node: &Node) -> Result<Hangup, FlowError> {
    empty(node)?;
    let a = Attrs::new(&node.name, &node.attrs);
    let reason = match a.raw("reason") {
        None => None,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" => None,
            "rejected" => Some(HangupReason::Rejected),
            "busy" => Some(HangupReason::Busy),
            _ => return Err(a.bad("reason", v, "expected rejected or busy")),
        },
    };
    Ok(Hangup {
        reason,
        schedule: a.u32("schedule", 0, 0..=u32::MAX)?,
    })
}

fn pre_answer(node: &Node) -> Result<PreAnswer, FlowError> {
    no_text(node)?;
    let elements = node
        .elements()
        .map(|n| match n.name.as_str() {
            "Speak" | "Play" | "Wait" | "GetDigits" | "GetInput" | "Gather" | "Redirect" => {
                element(n, &node.name)
            }
            _ => Err(misplaced_or_unknown(n, &node.name)),
        })
        .collect::<Result<_, _>>()?;
    Ok(PreAnswer { elements })
}

fn dtmf(node: &Node) -> Result<Dtmf, FlowError> {
    let digits = required_text(node, "digits to send")?;
    check_dtmf(&digits).map_err(|reason| bad_content(node, &digits, reason))?;
    let a = Attrs::new(&node.name, &node.attrs);
    Ok(Dtmf {
        digits,
        is_async: a.bool("async", true)?,
    })
}

fn record(node: &Node) -> Result<Record, FlowError> {
    empty(node)?;
    let a = Attrs::new(&node.name, &node.attrs);
    Ok(Record {
        action: a.url("action")?,
        method: a.method("method")?,
        file_format: a.record_format("fileFormat")?,
        redirect: a.bool("redirect", true)?,
        timeout: a.u32("timeout", 15, 0..=86_400)?,
        max_length: a.u32("maxLength", 60, 1..=86_400)?,
        play_beep: a.bool("playBeep", true)?,
        finish_on_key: a.keys("finishOnKey", "1234567890*#")?,
        record_session: a.bool("recordSession", false)?,
        start_on_dial_answer: a.bool("startOnDialAnswer", false)?,
        callback_url: a.url("callbackUrl")?,
        callback_method: a.method("callbackMethod")?,
        transcription_type: a.transcription_type("transcriptionType")?,
        transcription_url: a.url("transcriptionUrl")?,
        transcription_method: a.method("transcriptionMethod")?,
        record_channel_type: a.channel_type("recordChannelType")?,
    })
}

fn dial(node: &Node) -> Result<Dial, FlowError> {
    no_text(node)?;
    let targets: Vec<DialTarget> = node
        .elements()
        .map(|n| match n.name.as_str() {
            "Number" => number(n).map(DialTarget::Number),
            "User" => user(n).map(DialTarget::User),
            _ => Err(misplaced_or_unknown(n, &node.name)),
        })
        .collect::<Result<_, _>>()?;
    if targets.is_empty() {
        return Err(FlowError::MissingContent {
            element: node.name.clone(),
            expected: "at least one <Number> or <User>",
        });
    }
    let a = Attrs::new(&node.name, &node.attrs);
    Ok(Dial {
        action: a.url("action")?,
        method: a.method("method")?,
        timeout: a.opt_u32("timeout", 1..=86_400)?,
        time_limit: a.u32("timeLimit", 14_400, 0..=u32::MAX)?,
        caller_id: a.string("callerId"),
        caller_name: a.string("callerName"),
        confirm_sound: a.url("confirmSound")?,
        confirm_key: a.key("confirmKey", None)?,
        dial_music: a.string("dialMusic"),
        hangup_on_star: a.bool("hangupOnStar", false)?,
        redirect: a.bool("redirect", true)?,
        callback_url: a.url("callbackUrl")?,
        callback_method: a.method("callbackMethod")?,
        digits_match: a.patterns("digitsMatch")?,
        digits_match_b_leg: a.patterns("digitsMatchBLeg")?,
        sip_headers: a.sip_headers("sipHeaders")?,
        targets,
    })
}

fn number(node: &Node) -> Result<Number, FlowError> {
    let number = required_text(node, "a phone number")?;
    let digits = number.strip_prefix('+').unwrap_or(&number);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad_content(
            node,
            &number,
            "expected digits with an optional leading +",
        ));
    }
    let a = Attrs::new(&node.name, &node.attrs);
    Ok(Number {
        number,
        send_digits: a.digits("sendDigits")?,
        send_on_preanswer: a.bool("sendOnPreanswer", false)?,
    })
}

fn user(node: &Node) -> Result<User, FlowError> {
    let uri = required_text(node, "a SIP URI")?;
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("sip:") || lower.starts_with("sips:"))
        || uri.chars().any(char::is_whitespace)
    {
        return Err(bad_content(node, &uri, "expected a sip: or sips: URI"));
    }
    let a = Attrs::new(&node.name, &node.attrs);
    Ok(User {
        uri,
        send_digits: a.digits("sendDigits")?,
        send_on_preanswer: a.bool("sendOnPreanswer", false)?,
        sip_headers: a.sip_headers("sipHeaders")?,
    })
}
