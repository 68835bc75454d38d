//! The interpreter and digit collector, driven step by step in virtual time.

use std::time::{Duration, Instant};

use chorus_flow::*;

fn target(url: &str) -> Target {
    Target {
        url: url.into(),
        method: Method::Post,
    }
}

fn inbound() -> Interpreter {
    Interpreter::new(target("http://app/answer"), None, true, Limits::default())
}

fn fetched(i: &mut Interpreter, xml: &str) -> Step {
    i.resume(Input::Fetched(Ok(xml.into())))
}

#[test]
fn first_step_fetches_answer_url_with_start_app_event() {
    let mut i = inbound();
    let Step::Fetch {
        target,
        kind,
        params,
    } = i.start()
    else {
        panic!("expected a fetch");
    };
    assert_eq!(target.url, "http://app/answer");
    assert_eq!(kind, FetchKind::Answer);
    assert!(params.contains(&("Event".into(), "StartApp".into())));
}

#[test]
fn inbound_call_is_answered_lazily_before_the_first_media_verb() {
    let mut i = inbound();
    i.start();
    let step = fetched(
        &mut i,
        "<Response><Wait length=\"2\"/><Speak>hi</Speak><Play>http://x/a.wav</Play></Response>",
    );
    assert!(
        matches!(step, Step::Wait(ref w) if w.length == 2),
        "{step:?}"
    );
    assert!(!i.answered(), "Wait does not answer");
    assert_eq!(i.resume(Input::Done), Step::Answer);
    assert!(matches!(i.resume(Input::Done), Step::Speak(ref s) if s.text == "hi"));
    assert!(matches!(i.resume(Input::Done), Step::Play(_)));
    assert_eq!(i.resume(Input::Done), Step::End(EndCause::EndOfXml));
}

#[test]
fn kick_resumes_with_the_next_verb() {
    let mut i = inbound();
    i.start();
    fetched(
        &mut i,
        "<Response><Conference>room</Conference><Speak>bye</Speak></Response>",
    );
    let step = i.resume(Input::Done); // the answer
    assert!(matches!(step, Step::Conference(ref c) if c.room == "room"));
    let step = i.resume(Input::ConferenceLeft { params: vec![] });
    assert!(
        matches!(step, Step::Speak(ref s) if s.text == "bye"),
        "{step:?}"
    );
}

#[test]
fn refused_conference_skips_its_action_and_runs_the_next_verb() {
    let mut i = inbound();
    i.start();
    fetched(
        &mut i,
        "<Response><Conference action=\"http://app/after\">full</Conference><Speak>sorry</Speak></Response>",
    );
    i.resume(Input::Done);
    let step = i.resume(Input::ConferenceRefused);
    assert!(
        matches!(step, Step::Speak(ref s) if s.text == "sorry"),
        "{step:?}"
    );
}

#[test]
fn conference_action_replaces_the_document() {
    let mut i = inbound();
    i.start();
    fetched(
        &mut i,
        "<Response><Conference action=\"http://app/after\" method=\"GET\">r</Conference><Speak>never</Speak></Response>",
    );
    i.resume(Input::Done);
    let params = vec![("ConferenceName".to_string(), "r".to_string())];
    let step = i.resume(Input::ConferenceLeft {
        params: params.clone(),
    });
    let Step::Fetch {
        target,
        kind,
        params: sent,
    } = step
    else {
        panic!("expected the action fetch, got {step:?}");
    };
    assert_eq!(target.method, Method::Get);
    assert_eq!(kind, FetchKind::Action);
    assert_eq!(sent, params);
    let step = fetched(&mut i, "<Response><Hangup reason=\"busy\"/></Response>");
    assert_eq!(step, Step::End(EndCause::Hangup(Some(HangupReason::Busy))));
}

#[test]
fn action_with_redirect_false_notifies_and_goes_on() {
    let mut i = inbound();
    i.start();
    fetched(
        &mut i,
        "<Response><Conference action=\"http://app/n\" redirect=\"false\">r</Conference><Wait/></Response>",
    );
    i.resume(Input::Done);
    let step = i.resume(Input::ConferenceLeft { params: vec![] });
    assert!(matches!(step, Step::Notify { ref target, .. } if target.url == "http://app/n"));
    assert!(matches!(i.resume(Input::Done), Step::Wait(_)));
}

#[test]
fn invalid_document_ends_the_call_with_invalid_xml() {
    let mut i = inbound();
    i.start();
    let step = fetched(&mut i, "<Response><Bogus/></Response>");
    let Step::End(cause) = step else {
        panic!("{step:?}")
    };
    assert!(matches!(cause, EndCause::InvalidXml(_)));
    assert_eq!(cause.code(), 8011);
    let step = fetched(&mut i, "<Response><Speak>x</Speak></Response>");
    assert!(matches!(step, Step::End(_)), "nothing runs after the end");
}

#[test]
fn failed_answer_fetch_tries_the_fallback_then_ends() {
    let mut i = Interpreter::new(
        target("http://app/answer"),
        Some(target("http://backup/answer")),
        true,
        Limits::default(),
    );
    i.start();
    let step = i.resume(Input::Fetched(Err(FetchFailure::Failed(
        "connection refused".into(),
    ))));
    assert!(
        matches!(step, Step::Fetch { ref target, kind: FetchKind::AnswerFallback, .. } if target.url == "http://backup/answer")
    );
    let step = i.resume(Input::Fetched(Err(FetchFailure::Failed("HTTP 500".into()))));
    assert_eq!(step, Step::End(EndCause::FetchFailed("HTTP 500".into())));
}

#[test]
fn oversized_document_is_invalid_xml_not_a_fetch_failure() {
    let mut i = Interpreter::new(
        target("http://app/answer"),
        Some(target("http://backup/answer")),
        true,
        Limits::default(),
    );
    i.start();
    let step = i.resume(Input::Fetched(Err(FetchFailure::TooLarge(
        "over 102400 bytes".into(),
    ))));
    assert!(
        matches!(step, Step::End(EndCause::InvalidXml(_))),
        "{step:?}"
    );
}

#[test]
fn redirect_loop_is_cut_off() {
    let mut i = inbound();
    let mut step = i.start();
    let mut fetches = 0;
    loop {
        if step == Step::Answer {
            step = i.resume(Input::Done);
            continue;
        }
        let Step::Fetch { .. } = step else { break };
        fetches += 1;
        assert!(fetches < 100, "never stopped");
        step = fetched(
            &mut i,
            "<Response><Redirect>http://app/again</Redirect></Response>",
        );
    }
    assert_eq!(step, Step::End(EndCause::RedirectLoop));
    assert_eq!(fetches, Limits::default().max_idle_fetches);
}

#[test]
fn redirects_with_verbs_between_are_not_a_loop() {
    let mut i = inbound();
    i.start();
    for _ in 0..50 {
        let step = fetched(
            &mut i,
            "<Response><Wait length=\"1\"/><Redirect method=\"GET\">http://app/again</Redirect></Response>",
        );
        assert!(matches!(step, Step::Wait(_)), "{step:?}");
        let mut step = i.resume(Input::Done);
        if step == Step::Answer {
            // A Redirect answers the call first (API.md §9.1), once.
            step = i.resume(Input::Done);
        }
        assert!(
            matches!(step, Step::Fetch { kind: FetchKind::Redirect, ref params, .. } if params.contains(&("Event".into(), "Redirect".into())))
        );
    }
}

#[test]
fn scheduled_hangup_continues_with_the_next_verb() {
    let mut i = inbound();
    i.start();
    let step = fetched(
        &mut i,
        "<Response><Hangup schedule=\"30\"/><Wait length=\"60\"/></Response>",
    );
    assert_eq!(step, Step::ScheduleHangup { after: 30 });
    assert!(matches!(i.resume(Input::Done), Step::Wait(_)));
}

#[test]
fn pre_answer_runs_early_media_without_answering() {
    let mut i = inbound();
    i.start();
    let step = fetched(
        &mut i,
        "<Response><PreAnswer><Speak>ringing</Speak></PreAnswer><Speak>hello</Speak></Response>",
    );
    assert_eq!(step, Step::EarlyMedia);
    assert!(matches!(i.resume(Input::Done), Step::Speak(ref s) if s.text == "ringing"));
    assert!(!i.answered());
    assert_eq!(i.resume(Input::Done), Step::Answer);
    assert!(matches!(i.resume(Input::Done), Step::Speak(ref s) if s.text == "hello"));
}

#[test]
fn get_digits_posts_digits_to_its_action() {
    let mut i = inbound();
    i.start();
    fetched(
        &mut i,
        "<Response><GetDigits action=\"http://app/digits\" numDigits=\"3\"><Speak>enter</Speak></GetDigits></Response>",
    );
    let step = i.resume(Input::Done);
    assert!(
        matches!(step, Step::GetDigits { attempt: 1, .. }),
        "{step:?}"
    );
    let step = i.resume(Input::Digits(DigitsOutcome::Digits("123".into())));
    let Step::Fetch { target, params, .. } = step else {
        panic!("{step:?}")
    };
    assert_eq!(target.url, "http://app/digits");
    assert_eq!(params, vec![("Digits".to_string(), "123".to_string())]);
}

#[test]
fn get_input_retries_then_goes_on_without_action() {
    let mut i = inbound();
    i.start();
    fetched(
        &mut i,
        "<Response><GetInput action=\"http://app/in\" retries=\"2\" invalidDigitsSound=\"http://x/bad.wav\"/><Speak>no input</Speak></Response>",
    );
    i.resume(Input::Done);
    let step = i.resume(Input::Digits(DigitsOutcome::Invalid));
    assert!(
        matches!(step, Step::GetDigits { attempt: 2, invalid_sound: Some(ref s), .. } if s == "http://x/bad.wav"),
        "{step:?}"
    );
    let step = i.resume(Input::Digits(DigitsOutcome::NoInput));
    assert!(matches!(step, Step::Speak(_)), "{step:?}");
}

#[test]
fn get_input_reports_input_type() {
    let mut i = inbound();
    i.start();
    fetched(
        &mut i,
        "<Response><Gather action=\"http://app/in\" inputType=\"dtmf speech\"/></Response>",
    );
    i.resume(Input::Done);
    let Step::Fetch { params, .. } = i.resume(Input::Digits(DigitsOutcome::Digits("7".into())))
    else {
        panic!()
    };
    assert!(params.contains(&("InputType".into(), "dtmf".into())));
}

#[test]
fn unsupported_verbs_fail_the_call_clearly() {
    for xml in [
        "<Response><Dial><Number>123</Number></Dial></Response>",
        "<Response><GetInput action=\"http://a/b\" inputType=\"speech\"/></Response>",
    ] {
        let mut i = inbound();
        i.start();
        let mut step = fetched(&mut i, xml);
        if step == Step::Answer {
            step = i.resume(Input::Done);
        }
        assert!(
            matches!(step, Step::End(EndCause::Unsupported(_))),
            "{xml}: {step:?}"
        );
    }
}

#[test]
fn record_reports_to_its_action() {
    let mut i = inbound();
    i.start();
    fetched(
        &mut i,
        "<Response><Record action=\"http://app/rec\" maxLength=\"5\"/><Speak>after</Speak></Response>",
    );
    let step = i.resume(Input::Done);
    assert!(
        matches!(step, Step::Record(ref r) if r.max_length == 5),
        "{step:?}"
    );
    let params = vec![("RecordingID".to_string(), "r1".to_string())];
    let step = i.resume(Input::Recorded {
        params: Some(params.clone()),
    });
    assert!(
        matches!(step, Step::Fetch { kind: FetchKind::Action, params: ref p, .. } if *p == params),
        "{step:?}"
    );
}

#[test]
fn outbound_calls_are_never_answered_again() {
    let mut i = Interpreter::new(target("http://a/b"), None, false, Limits::default());
    i.start();
    assert!(matches!(
        fetched(&mut i, "<Response><Speak>x</Speak></Response>"),
        Step::Speak(_)
    ));
}

fn get_digits(xml: &str) -> GetDigits {
    let doc = parse(xml).expect("valid");
    match doc.elements.into_iter().next() {
        Some(Element::GetDigits(g)) => g,
        other => panic!("{other:?}"),
    }
}

#[test]
fn collector_first_digit_timeout_starts_after_prompts() {
    let g = get_digits("<Response><GetDigits timeout=\"5\"/></Response>");
    let mut c = Collector::new(&g);
    let t0 = Instant::now();
    assert_eq!(c.deadline(), None, "no timeout while prompts play");
    c.prompts_done(t0 + Duration::from_secs(3));
    assert_eq!(c.poll(t0 + Duration::from_secs(7)), None);
    assert_eq!(
        c.poll(t0 + Duration::from_secs(8)),
        Some(DigitsOutcome::NoInput)
    );
}

#[test]
fn collector_finishes_on_key_count_and_digit_timeout() {
    let t0 = Instant::now();
    let g = get_digits("<Response><GetDigits numDigits=\"4\" digitTimeout=\"3\"/></Response>");
    let mut c = Collector::new(&g);
    c.prompts_done(t0);
    assert_eq!(c.digit('1', t0 + Duration::from_secs(1)), None);
    assert_eq!(c.digit('2', t0 + Duration::from_secs(2)), None);
    assert_eq!(
        c.digit('#', t0 + Duration::from_secs(3)),
        Some(DigitsOutcome::Digits("12".into()))
    );

    let mut c = Collector::new(&g);
    c.prompts_done(t0);
    for (n, d) in "123".chars().enumerate() {
        assert_eq!(c.digit(d, t0 + Duration::from_secs(n as u64)), None);
    }
    assert_eq!(
        c.digit('4', t0 + Duration::from_secs(3)),
        Some(DigitsOutcome::Digits("1234".into()))
    );

    let mut c = Collector::new(&g);
    c.digit('9', t0); // barge-in during the prompts
    c.prompts_done(t0 + Duration::from_secs(1));
    assert_eq!(c.deadline(), Some(t0 + Duration::from_secs(3)));
    assert_eq!(
        c.poll(t0 + Duration::from_secs(3)),
        Some(DigitsOutcome::Digits("9".into()))
    );
}

#[test]
fn collector_rejects_digits_outside_valid_digits() {
    let g = get_digits("<Response><GetDigits validDigits=\"12\"/></Response>");
    let mut c = Collector::new(&g);
    assert_eq!(c.digit('3', Instant::now()), Some(DigitsOutcome::Invalid));
}

#[test]
fn digits_match_fires_once_per_pattern() {
    let mut m = DigitsMatcher::new(&["12".into(), "*9".into()]);
    assert_eq!(m.key('1'), None);
    assert_eq!(m.key('2'), Some("12".into()));
    assert_eq!(m.key('2'), None, "buffer cleared after a match");
    assert_eq!(m.key('*'), None);
    assert_eq!(m.key('9'), Some("*9".into()));
    assert_eq!(DigitsMatcher::new(&[]).key('1'), None);
}
