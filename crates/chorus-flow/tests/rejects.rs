//! Documents that must be refused, each with the error that names the cause.

use chorus_flow::*;

fn bad_attribute(doc: &str) -> (String, String, String) {
    match parse(doc) {
        Err(FlowError::BadAttribute {
            element,
            attribute,
            value,
            ..
        }) => (element, attribute, value),
        other => panic!("expected BadAttribute for {doc}, got {other:?}"),
    }
}

#[test]
fn each_kind_of_bad_attribute_value_names_element_and_attribute() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // bool
        (
            r#"<Conference muted="yes">r</Conference>"#,
            "Conference",
            "muted",
            "yes",
        ),
        (
            r#"<Conference stayAlone="1">r</Conference>"#,
            "Conference",
            "stayAlone",
            "1",
        ),
        (r#"<DTMF async="maybe">1</DTMF>"#, "DTMF", "async", "maybe"),
        // integer: not a number, negative, zero where > 0, above range
        (
            r#"<Conference maxMembers="lots">r</Conference>"#,
            "Conference",
            "maxMembers",
            "lots",
        ),
        (
            r#"<Conference maxParticipants="0">r</Conference>"#,
            "Conference",
            "maxParticipants",
            "0",
        ),
        (
            r#"<Conference timeLimit="-5">r</Conference>"#,
            "Conference",
            "timeLimit",
            "-5",
        ),
        (
            r#"<Conference timeLimit="99999999999">r</Conference>"#,
            "Conference",
            "timeLimit",
            "99999999999",
        ),
        (r#"<Wait length="0"/>"#, "Wait", "length", "0"),
        (
            r#"<GetInput executionTimeout="61"/>"#,
            "GetInput",
            "executionTimeout",
            "61",
        ),
        (
            r#"<Gather digitEndTimeout="1"/>"#,
            "Gather",
            "digitEndTimeout",
            "1",
        ),
        (r#"<Speak loop="1.5">x</Speak>"#, "Speak", "loop", "1.5"),
        // enums
        (r#"<Speak voice="">x</Speak>"#, "Speak", "voice", ""),
        (
            r#"<Redirect method="PUT">https://x.test</Redirect>"#,
            "Redirect",
            "method",
            "PUT",
        ),
        (
            r#"<Conference callbackMethod="DELETE">r</Conference>"#,
            "Conference",
            "callbackMethod",
            "DELETE",
        ),
        (
            r#"<Conference recordFileFormat="ogg">r</Conference>"#,
            "Conference",
            "recordFileFormat",
            "ogg",
        ),
        (
            r#"<Record fileFormat="flac"/>"#,
            "Record",
            "fileFormat",
            "flac",
        ),
        (
            r#"<Record recordChannelType="quad"/>"#,
            "Record",
            "recordChannelType",
            "quad",
        ),
        (
            r#"<Conference transcriptionType="magic">r</Conference>"#,
            "Conference",
            "transcriptionType",
            "magic",
        ),
        (r#"<Hangup reason="tired"/>"#, "Hangup", "reason", "tired"),
        (
            r#"<GetInput inputType="video"/>"#,
            "GetInput",
            "inputType",
            "video",
        ),
        // sounds and URLs
        (
            r#"<Conference enterSound="beep:3">r</Conference>"#,
            "Conference",
            "enterSound",
            "beep:3",
        ),
        (
            r#"<Conference exitSound="ftp://x">r</Conference>"#,
            "Conference",
            "exitSound",
            "ftp://x",
        ),
        (
            r#"<Conference waitSound="/relative">r</Conference>"#,
            "Conference",
            "waitSound",
            "/relative",
        ),
        (
            r#"<Conference action="https://">r</Conference>"#,
            "Conference",
            "action",
            "https://",
        ),
        // digits and keys
        (
            r#"<Conference digitsMatch="12,,3">r</Conference>"#,
            "Conference",
            "digitsMatch",
            "12,,3",
        ),
        (
            r#"<Conference sendDigits="12x">r</Conference>"#,
            "Conference",
            "sendDigits",
            "12x",
        ),
        (
            r###"<GetDigits finishOnKey="##"/>"###,
            "GetDigits",
            "finishOnKey",
            "##",
        ),
        (
            r#"<GetDigits validDigits="12a"/>"#,
            "GetDigits",
            "validDigits",
            "12a",
        ),
        (
            r#"<Dial confirmKey="x"><Number>1</Number></Dial>"#,
            "Dial",
            "confirmKey",
            "x",
        ),
        (
            r#"<Dial sipHeaders="novalue"><Number>1</Number></Dial>"#,
            "Dial",
            "sipHeaders",
            "novalue",
        ),
        (
            r#"<Speak language="en US">x</Speak>"#,
            "Speak",
            "language",
            "en US",
        ),
    ];
    for (inner, element, attribute, value) in cases {
        let doc = format!("<Response>{inner}</Response>");
        let got = bad_attribute(&doc);
        assert_eq!(
            got,
            (
                element.to_string(),
                attribute.to_string(),
                value.to_string()
            ),
            "{doc}"
        );
    }
}

#[test]
fn bad_attribute_error_message_names_element_attribute_and_value() {
    let err = parse(r#"<Response><Conference muted="yes">r</Conference></Response>"#)
        .expect_err("bad bool");
    let text = err.to_string();
    assert!(
        text.contains("Conference") && text.contains("muted") && text.contains("yes"),
        "{text}"
    );
}

#[test]
fn unknown_element_is_rejected() {
    let err = parse("<Response><Dance/></Response>").expect_err("unknown");
    assert!(
        matches!(&err, FlowError::UnknownElement { element, parent } if element == "Dance" && parent == "Response"),
        "{err:?}"
    );
    let err = parse("<Response><GetDigits><Sing/></GetDigits></Response>").expect_err("unknown");
    assert!(
        matches!(&err, FlowError::UnknownElement { element, .. } if element == "Sing"),
        "{err:?}"
    );
    let err = parse("<Response><Speak>a<marquee/></Speak></Response>").expect_err("unknown");
    assert!(matches!(&err, FlowError::UnknownElement { .. }), "{err:?}");
}

#[test]
fn element_names_are_case_sensitive() {
    let err = parse("<Response><speak>x</speak></Response>").expect_err("lowercase");
    assert!(matches!(err, FlowError::UnknownElement { .. }), "{err:?}");
}

#[test]
fn known_element_in_wrong_place_is_misplaced() {
    for doc in [
        "<Response><GetDigits><Conference>r</Conference></GetDigits></Response>",
        "<Response><Conference><Play>u</Play>r</Conference></Response>",
        "<Response><PreAnswer><Dial><Number>1</Number></Dial></PreAnswer></Response>",
        "<Response><Number>1</Number></Response>",
        "<Response><Dial><Speak>x</Speak></Dial></Response>",
        "<Response><Response/></Response>",
    ] {
        let err = parse(doc).expect_err(doc);
        assert!(
            matches!(err, FlowError::MisplacedElement { .. }),
            "{doc}: {err:?}"
        );
    }
}

#[test]
fn missing_or_bad_content_is_rejected() {
    for doc in [
        "<Response><Conference>   </Conference></Response>",
        "<Response><Conference/></Response>",
        "<Response><Speak/></Response>",
        "<Response><Play> </Play></Response>",
        "<Response><Redirect/></Response>",
        "<Response><DTMF/></Response>",
        "<Response><Dial/></Response>",
    ] {
        let err = parse(doc).expect_err(doc);
        assert!(
            matches!(err, FlowError::MissingContent { .. }),
            "{doc}: {err:?}"
        );
    }
    for doc in [
        "<Response><Redirect>not a url</Redirect></Response>",
        "<Response><DTMF>12x</DTMF></Response>",
        "<Response><Dial><Number>12-34</Number></Dial></Response>",
        "<Response><Dial><User>alice@example.com</User></Dial></Response>",
    ] {
        let err = parse(doc).expect_err(doc);
        assert!(
            matches!(err, FlowError::BadContent { .. }),
            "{doc}: {err:?}"
        );
    }
}

#[test]
fn text_in_elements_that_take_none_is_rejected() {
    for doc in [
        "<Response>hello</Response>",
        "<Response><Wait>5</Wait></Response>",
        "<Response><Hangup>now</Hangup></Response>",
        "<Response><GetDigits>x</GetDigits></Response>",
    ] {
        let err = parse(doc).expect_err(doc);
        assert!(
            matches!(err, FlowError::UnexpectedText { .. }),
            "{doc}: {err:?}"
        );
    }
}

#[test]
fn root_other_than_response_is_rejected() {
    let err = parse("<Document><Speak>x</Speak></Document>").expect_err("wrong root");
    assert!(
        matches!(&err, FlowError::NotResponse { found } if found == "Document"),
        "{err:?}"
    );
    let err = parse("<response/>").expect_err("wrong case");
    assert!(matches!(err, FlowError::NotResponse { .. }), "{err:?}");
}

#[test]
fn malformed_xml_is_a_syntax_or_structure_error() {
    for doc in [
        "",
        "   ",
        "<Response>",
        "<Response><Speak>x</Response>",
        "<Response><Speak>x</Speak>",
        "<Response></Response><Response/>",
        "<Response/>trailing",
        "<Response a=\"1\" a=\"2\"/>",
        "<Response a=1/>",
        "<Response><Speak>&bogus;</Speak></Response>",
        "<Resp",
        "</Response>",
        "<<>>",
    ] {
        let err = parse(doc).expect_err(doc);
        assert!(
            matches!(err, FlowError::Syntax { .. } | FlowError::Malformed { .. }),
            "{doc:?}: {err:?}"
        );
    }
}

#[test]
fn deeply_nested_document_is_rejected_without_overflow() {
    let doc = format!("{}{}", "<a>".repeat(5_000), "</a>".repeat(5_000));
    let err = parse(&doc).expect_err("too deep");
    assert!(matches!(err, FlowError::Malformed { .. }), "{err:?}");
}

#[test]
fn document_over_100_kb_is_too_large() {
    let body = "<Wait/>".repeat(15_000);
    let doc = format!("<Response>{body}</Response>");
    assert!(doc.len() > MAX_DOCUMENT_BYTES);
    let err = parse(&doc).expect_err("too large");
    assert!(
        matches!(err, FlowError::TooLarge { size, limit } if size == doc.len() && limit == 100 * 1024),
        "{err:?}"
    );
}

#[test]
fn document_just_under_the_limit_is_accepted() {
    let mut doc = String::from("<Response>");
    while doc.len() + "<Wait/>".len() + "</Response>".len() <= MAX_DOCUMENT_BYTES {
        doc.push_str("<Wait/>");
    }
    doc.push_str("</Response>");
    assert!(parse(&doc).is_ok());
}
