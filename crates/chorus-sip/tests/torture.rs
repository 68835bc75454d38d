//! RFC 4475 torture messages through the parser and the endpoint.
#![allow(clippy::unwrap_used)]
mod common;

use std::path::Path;
use std::time::Instant;

use chorus_sip::{check_syntax, Peer};
use common::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/rfc4475");

fn load_all() -> Vec<(String, Vec<u8>, bool)> {
    let dir = Path::new(DIR);
    let index = std::fs::read_to_string(dir.join("INDEX.md")).unwrap_or_else(|e| {
        panic!("RFC 4475 fixtures missing at {DIR} (expected shared/ beside the repo root): {e}")
    });
    let mut out = Vec::new();
    for line in index.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(file), Some(verdict)) = (cols.get(1), cols.get(3)) else {
            continue;
        };
        if !file.ends_with(".dat") {
            continue;
        }
        let data = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        out.push((file.to_string(), data, *verdict == "PARSE"));
    }
    out
}

/// What the endpoint does with each message fed as one UDP datagram.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    /// First response sent has this status.
    Status(u16),
    /// Dropped and counted (responses we never asked for, unparseable input).
    Drop,
}
use Outcome::*;

const EXPECTED: &[(&str, Outcome)] = &[
    ("wsinv.dat", Status(481)),   // has a To-tag for a dialog we don't know
    ("intmeth.dat", Status(501)), // extension method
    ("esc01.dat", Status(100)),   // INVITE accepted: 100 + IncomingCall
    ("escnull.dat", Status(405)), // REGISTER: we are not a registrar
    ("esc02.dat", Status(501)),   // RE%47IST%45R is an unknown method, not REGISTER
    ("lwsdisp.dat", Status(200)),
    ("longreq.dat", Status(100)),
    ("dblreq.dat", Status(405)), // REGISTER; the trailing INVITE is ignored
    ("semiuri.dat", Status(200)),
    ("transports.dat", Status(200)),
    ("mpart01.dat", Status(405)), // MESSAGE
    ("unreason.dat", Drop),       // response to nothing of ours
    ("noreason.dat", Drop),
    ("badinv01.dat", Status(400)),
    ("clerr.dat", Status(400)),
    ("ncl.dat", Status(400)),
    ("scalar02.dat", Status(400)),
    ("scalarlg.dat", Drop),
    ("quotbal.dat", Status(400)),
    ("ltgtruri.dat", Status(400)),
    ("lwsruri.dat", Status(400)),
    ("lwsstart.dat", Status(400)),
    ("trws.dat", Status(400)),
    ("escruri.dat", Status(100)),
    ("baddate.dat", Status(100)),
    ("regbadct.dat", Status(405)),
    ("badaspec.dat", Status(200)),
    ("baddn.dat", Status(400)), // unquoted comma splits From in two (RFC 4475 allows 400)
    ("badvers.dat", Status(505)),
    ("mismatch01.dat", Status(400)),
    ("mismatch02.dat", Status(400)),
    ("bigcode.dat", Drop),
    ("badbranch.dat", Status(200)),
    ("insuf.dat", Status(400)),
    ("unkscm.dat", Status(416)),
    ("novelsc.dat", Status(416)),
    ("unksm2.dat", Status(405)),
    ("bext01.dat", Status(420)),
    ("invut.dat", Status(415)),
    ("regaut01.dat", Status(405)),
    ("multi01.dat", Status(400)),
    ("mcl01.dat", Status(400)),
    ("bcast.dat", Drop),
    ("zeromf.dat", Status(200)),
    ("cparam01.dat", Status(405)),
    ("cparam02.dat", Status(405)),
    ("regescrt.dat", Status(405)),
    ("sdp01.dat", Status(406)),
    ("inv2543.dat", Status(400)), // no From tag: cannot form a dialog
];

/// PARSE-verdict messages our parser still refuses. Asserted exactly, so a fix
/// or a regression both show up here.
const KNOWN_PARSE_GAPS: &[&str] = &[];

fn outcome(data: &[u8]) -> (Outcome, Vec<chorus_sip::Transmit>, chorus_sip::Stats) {
    let mut ep = endpoint();
    ep.handle_input(Instant::now(), Peer::udp(addr("192.0.2.99:5060")), data);
    let sent = drain(&mut ep);
    let stats = ep.stats().clone();
    let out = match sent.first() {
        Some(t) => Status(status(t).expect("endpoint sends only responses here")),
        None => {
            assert_eq!(
                stats.parse_errors + stats.dropped_other,
                1,
                "a silent drop must be counted"
            );
            Drop
        }
    };
    (out, sent, stats)
}

#[test]
fn every_parse_verdict_message_parses_except_known_gaps() {
    let all = load_all();
    assert_eq!(all.len(), 49, "INDEX.md lists the 49 RFC 4475 messages");
    let gaps: Vec<&str> = all
        .iter()
        .filter(|(_, data, parse)| *parse && check_syntax(data).is_err())
        .map(|(f, _, _)| f.as_str())
        .collect();
    assert_eq!(gaps, KNOWN_PARSE_GAPS);
}

#[test]
fn endpoint_answers_or_counts_every_torture_message() {
    let all = load_all();
    for (file, data, parse) in &all {
        let expected = EXPECTED
            .iter()
            .find(|(f, _)| f == file)
            .map(|(_, o)| *o)
            .unwrap_or_else(|| panic!("{file} missing from EXPECTED"));
        let (got, sent, _) = outcome(data);
        assert_eq!(got, expected, "{file}");
        if !parse {
            assert!(
                matches!(got, Drop | Status(400..)),
                "{file}: REJECT verdict must be refused"
            );
        }
        for t in &sent {
            // Every response parses back and carries a Content-Length.
            assert!(
                check_syntax(&t.payload).is_ok(),
                "{file}: bad response {}",
                text(t)
            );
            assert!(header(&text(t), "Content-Length").is_some(), "{file}");
        }
    }
}

#[test]
fn bad_extension_lists_unsupported_option_tags() {
    let data = std::fs::read(Path::new(DIR).join("bext01.dat")).unwrap();
    let (_, sent, _) = outcome(&data);
    let unsupported = header(&text(&sent[0]), "Unsupported").unwrap();
    assert_eq!(
        unsupported,
        "nothingSupportsThis, nothingSupportsThisEither"
    );
}

#[test]
fn unknown_content_type_is_415_with_accept() {
    let data = std::fs::read(Path::new(DIR).join("invut.dat")).unwrap();
    let (_, sent, _) = outcome(&data);
    assert_eq!(
        header(&text(&sent[0]), "Accept").unwrap(),
        "application/sdp"
    );
}

#[test]
fn torture_messages_parse_identically_with_bare_lf() {
    for (file, data, parse) in load_all() {
        if !parse {
            continue;
        }
        // Convert only the header section; the body keeps its bytes.
        let text = String::from_utf8_lossy(&data).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let lf = format!("{}\n\n{body}", head.replace("\r\n", "\n"));
        if String::from_utf8(data.clone()).is_err() {
            continue;
        }
        assert!(check_syntax(lf.as_bytes()).is_ok(), "{file}");
    }
}
