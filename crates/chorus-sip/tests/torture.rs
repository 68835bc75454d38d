//! RFC 4475 torture messages through the parser and the endpoint.
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

#[test]
fn print_verdicts() {
    for (file, data, parse) in load_all() {
        let syntax = check_syntax(&data);
        let mut ep = endpoint();
        let before = ep.stats().clone();
        ep.handle_input(Instant::now(), Peer::udp(addr("192.0.2.99:5060")), &data);
        let sent: Vec<_> = drain(&mut ep).iter().map(|t| status(t)).collect();
        let ev = events(&mut ep);
        println!("{file:16} {} syntax={:?} sent={sent:?} events={} stats={:?}", if parse {"PARSE"} else {"REJECT"}, syntax.as_ref().err(), ev.len(), (ep.stats().parse_errors - before.parse_errors, ep.stats().dropped_other));
    }
}
