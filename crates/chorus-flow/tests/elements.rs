//! One fixture per element with every attribute set, plus defaults and unknown attributes.

use chorus_flow::*;

fn only(doc: &str) -> Element {
    let mut response = parse(doc).expect("fixture parses");
    assert_eq!(response.elements.len(), 1, "fixture has one element");
    response.elements.remove(0)
}

#[test]
fn conference_with_every_attribute_is_typed() {
    let doc = r#"<Response><Conference muted="TRUE" startConferenceOnEnter="false"
        endConferenceOnExit="true" stayAlone="false" waitSound="https://x.test/wait"
        waitMethod="GET" maxMembers="50" maxParticipants="7" enterSound="beep:2"
        exitSound="https://x.test/bye" beep="true" timeLimit="0" hangupOnStar="true" record="true"
        recordFileFormat="wav" recordFilePath="/tmp" recordFileName="r1" recordWhenAlone="true"
        transcriptionType="auto" transcriptionUrl="https://x.test/tr" transcriptionMethod="GET"
        action="https://x.test/after" method="GET" redirect="false"
        callbackUrl="https://x.test/cb" callbackMethod="GET" digitsMatch="12, *9,#"
        floorEvent="true" relayDTMF="false" sendDigits="12w3">
          room-1
        </Conference></Response>"#;
    let Element::Conference(c) = only(doc) else {
        panic!("expected Conference")
    };
    let expected = Conference {
        room: "room-1".into(),
        muted: true,
        start_conference_on_enter: false,
        end_conference_on_exit: true,
        stay_alone: Some(false),
        wait_sound: Some("https://x.test/wait".into()),
        wait_method: Method::Get,
        max_members: 7,
        enter_sound: Some(Sound::Beep2),
        exit_sound: Some(Sound::Url("https://x.test/bye".into())),
        time_limit: Some(0),
        hangup_on_star: true,
        record: true,
        record_file_format: RecordFormat::Wav,
        record_file_path: Some("/tmp".into()),
        record_file_name: Some("r1".into()),
        record_when_alone: true,
        transcription_type: Some(TranscriptionType::Auto),
        transcription_url: Some("https://x.test/tr".into()),
        transcription_method: Method::Get,
        action: Some("https://x.test/after".into()),
        method: Method::Get,
        redirect: false,
        callback_url: Some("https://x.test/cb".into()),
        callback_method: Method::Get,
        digits_match: vec!["12".into(), "*9".into(), "#".into()],
        floor_event: true,
        relay_dtmf: false,
        send_digits: Some("12w3".into()),
    };
    assert_eq!(c, expected);
}

#[test]
fn conference_defaults_follow_api_section_15() {
    let Element::Conference(c) = only("<Response><Conference>r</Conference></Response>") else {
        panic!("expected Conference")
    };
    assert_eq!(c.room, "r");
    assert!(!c.muted);
    assert!(c.start_conference_on_enter);
    assert!(!c.end_conference_on_exit);
    assert_eq!(c.stay_alone, None);
    assert_eq!(c.max_members, 200);
    assert_eq!(c.time_limit, None);
    assert_eq!(c.time_limit_secs(), 14_400);
    assert_eq!(c.enter_sound, None);
    assert_eq!(c.exit_sound, None);
    assert_eq!(c.record_file_format, RecordFormat::Mp3);
    assert_eq!(c.method, Method::Post);
    assert_eq!(c.callback_method, Method::Post);
    assert_eq!(c.wait_method, Method::Post);
    assert!(c.redirect);
    assert!(c.relay_dtmf);
    assert!(c.digits_match.is_empty());
    assert_eq!(c.action, None);
}

#[test]
fn max_members_is_used_when_max_participants_is_absent() {
    let Element::Conference(c) =
        only(r#"<Response><Conference maxMembers="20">r</Conference></Response>"#)
    else {
        panic!("expected Conference")
    };
    assert_eq!(c.max_members, 20);
}

#[test]
fn beep_true_fills_unset_enter_and_exit_sounds_only() {
    let Element::Conference(c) =
        only(r#"<Response><Conference beep="true" exitSound="">r</Conference></Response>"#)
    else {
        panic!("expected Conference")
    };
    assert_eq!(c.enter_sound, Some(Sound::Beep1));
    assert_eq!(c.exit_sound, None);
}

#[test]
fn unknown_attributes_are_ignored() {
    let Element::Conference(c) = only(
        r#"<Response><Conference deaf="true" fooBar="?!" muted="true">r</Conference></Response>"#,
    ) else {
        panic!("expected Conference")
    };
    assert!(c.muted);
    let Element::Wait(w) = only(r#"<Response><Wait whatever="x"/></Response>"#) else {
        panic!("expected Wait")
    };
    assert_eq!(w.length, 1);
}

#[test]
fn speak_with_every_attribute_is_typed() {
    let Element::Speak(s) = only(
        r#"<Response><Speak voice="man" language="fr-FR" loop="3"> Bonjour &amp; bienvenue </Speak></Response>"#,
    ) else {
        panic!("expected Speak")
    };
    assert_eq!(
        s,
        Speak {
            text: "Bonjour & bienvenue".into(),
            voice: Voice::Man,
            language: "fr-FR".into(),
            loop_count: 3
        }
    );
}

#[test]
fn speak_defaults_and_named_voice() {
    let Element::Speak(s) = only("<Response><Speak>hi</Speak></Response>") else {
        panic!("expected Speak")
    };
    assert_eq!(s.voice, Voice::Woman);
    assert_eq!(s.language, "en-US");
    assert_eq!(s.loop_count, 1);
    let Element::Speak(s) = only(r#"<Response><Speak voice="Polly.Joanna">hi</Speak></Response>"#)
    else {
        panic!("expected Speak")
    };
    assert_eq!(s.voice, Voice::Named("Polly.Joanna".into()));
}

#[test]
fn speak_ssml_markup_is_flattened_to_text() {
    let Element::Speak(s) = only(
        r#"<Response><Speak>Hello<break time="1s"/><emphasis>world</emphasis></Speak></Response>"#,
    ) else {
        panic!("expected Speak")
    };
    assert!(s.text.starts_with("Hello"));
    assert!(s.text.contains("world"));
}

#[test]
fn play_with_every_attribute_is_typed() {
    let Element::Play(p) =
        only(r#"<Response><Play loop="0"> https://x.test/a.mp3 </Play></Response>"#)
    else {
        panic!("expected Play")
    };
    assert_eq!(
        p,
        Play {
            url: "https://x.test/a.mp3".into(),
            loop_count: 0
        }
    );
}

#[test]
fn wait_with_every_attribute_and_defaults() {
    let Element::Wait(w) = only(
        r#"<Response><Wait length="10" silence="true" minSilence="500" beep="true"/></Response>"#,
    ) else {
        panic!("expected Wait")
    };
    assert_eq!(
        w,
        Wait {
            length: 10,
            silence: true,
            min_silence: 500,
            beep: true
        }
    );
    let Element::Wait(w) = only("<Response><Wait></Wait></Response>") else {
        panic!("expected Wait")
    };
    assert_eq!(
        (w.length, w.silence, w.min_silence, w.beep),
        (1, false, 2000, false)
    );
}

#[test]
fn get_digits_with_every_attribute_and_nested_prompts() {
    let doc = r#"<Response><GetDigits action="https://x.test/d" method="GET" timeout="7"
        digitTimeout="3" finishOnKey="*" numDigits="4" retries="2" playBeep="true"
        validDigits="123" invalidDigitsSound="https://x.test/bad" redirect="false" log="false">
        <Speak>Enter PIN</Speak><Play>https://x.test/p.wav</Play><Wait length="2"/>
        </GetDigits></Response>"#;
    let Element::GetDigits(g) = only(doc) else {
        panic!("expected GetDigits")
    };
    assert_eq!(g.dialect, DigitsDialect::GetDigits);
    assert_eq!(g.action.as_deref(), Some("https://x.test/d"));
    assert_eq!(g.method, Method::Get);
    assert_eq!(g.timeout, 7);
    assert_eq!(g.digit_timeout, Some(3));
    assert_eq!(g.finish_on_key, Some('*'));
    assert_eq!(g.num_digits, 4);
    assert_eq!(g.retries, 2);
    assert!(g.play_beep);
    assert_eq!(g.valid_digits, "123");
    assert_eq!(
        g.invalid_digits_sound.as_deref(),
        Some("https://x.test/bad")
    );
    assert!(!g.redirect);
    assert!(!g.log);
    assert_eq!(g.prompts.len(), 3);
    assert!(matches!(&g.prompts[0], Prompt::Speak(s) if s.text == "Enter PIN"));
    assert!(matches!(&g.prompts[1], Prompt::Play(_)));
    assert!(matches!(&g.prompts[2], Prompt::Wait(w) if w.length == 2));
}

#[test]
fn get_input_vobiz_attributes_are_typed() {
    let doc = r#"<Response><GetInput action="https://x.test/i" inputType="dtmf speech"
        executionTimeout="30" digitEndTimeout="auto" speechEndTimeout="4" finishOnKey="none"
        speechModel="phone_call" hints="yes,no" language="en-GB"
        interimSpeechResultsCallback="https://x.test/interim"
        interimSpeechResultsCallbackMethod="GET" profanityFilter="true">
        <Speak>Say something</Speak></GetInput></Response>"#;
    let Element::GetDigits(g) = only(doc) else {
        panic!("expected GetDigits")
    };
    assert_eq!(g.dialect, DigitsDialect::GetInput);
    assert_eq!(g.input_type, InputType::DtmfSpeech);
    assert_eq!(g.execution_timeout, 30);
    assert_eq!(g.digit_end_timeout, None);
    assert_eq!(g.speech_end_timeout, Some(4));
    assert_eq!(g.finish_on_key, None);
    assert_eq!(g.speech_model.as_deref(), Some("phone_call"));
    assert_eq!(g.hints.as_deref(), Some("yes,no"));
    assert_eq!(g.language, "en-GB");
    assert_eq!(
        g.interim_speech_results_callback.as_deref(),
        Some("https://x.test/interim")
    );
    assert_eq!(g.interim_speech_results_callback_method, Method::Get);
    assert!(g.profanity_filter);
}

#[test]
fn gather_defaults_match_get_digits_defaults() {
    let Element::GetDigits(g) = only("<Response><Gather/></Response>") else {
        panic!("expected GetDigits")
    };
    assert_eq!(g.dialect, DigitsDialect::Gather);
    assert_eq!(g.method, Method::Post);
    assert_eq!(g.timeout, 5);
    assert_eq!(g.finish_on_key, Some('#'));
    assert_eq!(g.num_digits, 99);
    assert_eq!(g.retries, 1);
    assert_eq!(g.valid_digits, "0123456789*#");
    assert_eq!(g.input_type, InputType::Dtmf);
    assert_eq!(g.execution_timeout, 15);
    assert!(g.redirect);
    assert!(g.prompts.is_empty());
}

#[test]
fn redirect_hangup_dtmf_are_typed() {
    let Element::Redirect(r) =
        only(r#"<Response><Redirect method="GET">http://x.test/next</Redirect></Response>"#)
    else {
        panic!("expected Redirect")
    };
    assert_eq!(
        r,
        Redirect {
            url: "http://x.test/next".into(),
            method: Method::Get
        }
    );
    let Element::Hangup(h) = only(r#"<Response><Hangup reason="busy" schedule="30"/></Response>"#)
    else {
        panic!("expected Hangup")
    };
    assert_eq!(
        h,
        Hangup {
            reason: Some(HangupReason::Busy),
            schedule: 30
        }
    );
    let Element::Hangup(h) = only("<Response><Hangup/></Response>") else {
        panic!("expected Hangup")
    };
    assert_eq!(h, Hangup::default());
    let Element::Dtmf(d) = only(r#"<Response><DTMF async="false">12w#*</DTMF></Response>"#) else {
        panic!("expected Dtmf")
    };
    assert_eq!(
        d,
        Dtmf {
            digits: "12w#*".into(),
            is_async: false
        }
    );
}

#[test]
fn pre_answer_holds_early_media_elements() {
    let Element::PreAnswer(p) = only(
        "<Response><PreAnswer><Speak>ringing</Speak><Play>https://x.test/r.mp3</Play><Wait/></PreAnswer></Response>",
    ) else {
        panic!("expected PreAnswer")
    };
    assert_eq!(p.elements.len(), 3);
}

#[test]
fn record_with_every_attribute_and_defaults() {
    let doc = r##"<Response><Record action="https://x.test/rec" method="GET" fileFormat="wav"
        redirect="false" timeout="5" maxLength="120" playBeep="false" finishOnKey="#"
        recordSession="true" startOnDialAnswer="true" callbackUrl="https://x.test/rcb"
        callbackMethod="GET" transcriptionType="hybrid" transcriptionUrl="https://x.test/t"
        transcriptionMethod="GET" recordChannelType="mono"/></Response>"##;
    let Element::Record(r) = only(doc) else {
        panic!("expected Record")
    };
    assert_eq!(
        r,
        Record {
            action: Some("https://x.test/rec".into()),
            method: Method::Get,
            file_format: RecordFormat::Wav,
            redirect: false,
            timeout: 5,
            max_length: 120,
            play_beep: false,
            finish_on_key: "#".into(),
            record_session: true,
            start_on_dial_answer: true,
            callback_url: Some("https://x.test/rcb".into()),
            callback_method: Method::Get,
            transcription_type: Some(TranscriptionType::Hybrid),
            transcription_url: Some("https://x.test/t".into()),
            transcription_method: Method::Get,
            record_channel_type: Some(ChannelType::Mono),
        }
    );
    let Element::Record(r) = only("<Response><Record/></Response>") else {
        panic!("expected Record")
    };
    assert_eq!((r.timeout, r.max_length, r.play_beep), (15, 60, true));
    assert_eq!(r.finish_on_key, "1234567890*#");
    assert_eq!(r.file_format, RecordFormat::Mp3);
    assert!(r.redirect);
}

#[test]
fn dial_with_every_attribute_and_targets() {
    let doc = r#"<Response><Dial action="https://x.test/dial" method="GET" timeout="20"
        timeLimit="600" callerId="+15550001" callerName="Desk" confirmSound="https://x.test/c"
        confirmKey="5" dialMusic="real" hangupOnStar="true" redirect="false"
        callbackUrl="https://x.test/dcb" callbackMethod="GET" digitsMatch="99"
        digitsMatchBLeg="*1" sipHeaders="X-A=1,X_B=two">
        <Number sendDigits="ww12" sendOnPreanswer="true">+15551234567</Number>
        <User sipHeaders="X-C=3">sip:alice@example.com</User>
        </Dial></Response>"#;
    let Element::Dial(d) = only(doc) else {
        panic!("expected Dial")
    };
    assert_eq!(d.action.as_deref(), Some("https://x.test/dial"));
    assert_eq!(d.method, Method::Get);
    assert_eq!(d.timeout, Some(20));
    assert_eq!(d.time_limit, 600);
    assert_eq!(d.caller_id.as_deref(), Some("+15550001"));
    assert_eq!(d.caller_name.as_deref(), Some("Desk"));
    assert_eq!(d.confirm_sound.as_deref(), Some("https://x.test/c"));
    assert_eq!(d.confirm_key, Some('5'));
    assert_eq!(d.dial_music.as_deref(), Some("real"));
    assert!(d.hangup_on_star);
    assert!(!d.redirect);
    assert_eq!(d.callback_url.as_deref(), Some("https://x.test/dcb"));
    assert_eq!(d.callback_method, Method::Get);
    assert_eq!(d.digits_match, vec!["99".to_string()]);
    assert_eq!(d.digits_match_b_leg, vec!["*1".to_string()]);
    assert_eq!(
        d.sip_headers,
        vec![
            SipHeader {
                name: "X-A".into(),
                value: "1".into()
            },
            SipHeader {
                name: "X_B".into(),
                value: "two".into()
            }
        ]
    );
    assert_eq!(
        d.targets,
        vec![
            DialTarget::Number(Number {
                number: "+15551234567".into(),
                send_digits: Some("ww12".into()),
                send_on_preanswer: true
            }),
            DialTarget::User(User {
                uri: "sip:alice@example.com".into(),
                send_digits: None,
                send_on_preanswer: false,
                sip_headers: vec![SipHeader {
                    name: "X-C".into(),
                    value: "3".into()
                }]
            })
        ]
    );
}

#[test]
fn dial_time_limit_defaults_to_14400() {
    let Element::Dial(d) = only("<Response><Dial><Number>123</Number></Dial></Response>") else {
        panic!("expected Dial")
    };
    assert_eq!(d.time_limit, 14_400);
    assert_eq!(d.timeout, None);
}

#[test]
fn elements_keep_document_order() {
    let r = parse(
        "<?xml version=\"1.0\"?><!-- hi --><Response><Speak>a</Speak><Wait/><Conference>r</Conference><Hangup/></Response>",
    )
    .expect("parses");
    assert!(matches!(
        r.elements.as_slice(),
        [
            Element::Speak(_),
            Element::Wait(_),
            Element::Conference(_),
            Element::Hangup(_)
        ]
    ));
}

#[test]
fn empty_response_has_no_elements() {
    assert_eq!(parse("<Response/>").expect("parses"), Response::default());
}
