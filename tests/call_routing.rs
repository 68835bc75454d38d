//! Inbound calls are routed to accounts by configuration (config/chorus.toml, `[[accounts]]`
//! with `numbers` and `domains`): a call belongs to the first account whose domain matches the
//! Request-URI host (case-insensitively, port ignored) or whose number pattern matches the
//! dialled user part, else to the first account. Checked end to end: after every call, each
//! account's conference list (API.md §5.1) holds exactly the rooms routed to it so far.

mod common;

use common::json::Json;
use common::rest::{http_request, Credentials};
use common::{toml_account, Call, CallOptions, Engine, EngineOptions, Source};

/// First account: claims nothing, so it takes every call nobody else claims.
const ID_A: &str = "MATEST0000000000000A";
const TOKEN_A: &str = "tokA";
/// Claims the dialled numbers starting with `acct2-`.
const ID_B: &str = "MATEST0000000000000B";
const TOKEN_B: &str = "tokB";
/// Claims the calls to the domain `c.example.test`.
const ID_C: &str = "MATEST0000000000000C";
const TOKEN_C: &str = "tokC";
const DOMAIN_C: &str = "c.example.test";

const ACCOUNTS: [(&str, &str); 3] = [(ID_A, TOKEN_A), (ID_B, TOKEN_B), (ID_C, TOKEN_C)];

fn config() -> String {
    [
        toml_account(ID_A, TOKEN_A, &[], &[]),
        toml_account(ID_B, TOKEN_B, &["^acct2-"], &[]),
        toml_account(ID_C, TOKEN_C, &[], &[DOMAIN_C]),
    ]
    .join("\n")
}

/// The account's live rooms (`GET /v1/Account/{id}/Conference/`), sorted.
fn rooms_of(engine: &Engine, id: &str, token: &str) -> Vec<String> {
    let path = format!("/v1/Account/{id}/Conference/");
    let response = http_request(
        engine.http,
        "GET",
        &path,
        Credentials::Basic(id, token),
        &[],
        None,
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", engine.logs()));
    assert_eq!(response.status, 200, "GET {path}:\n{response}");
    let mut rooms = response
        .json()
        .get("conferences")
        .and_then(Json::as_str_vec)
        .unwrap_or_else(|| panic!("no conferences array in\n{response}"));
    rooms.sort();
    rooms
}

/// Dials `room`, with `request_host` (None = the engine's address) as the Request-URI and To
/// host; the INVITE always goes to the engine. Panics unless answered.
fn dial(engine: &Engine, room: &str, request_host: Option<&str>) -> Call {
    let mut options = CallOptions::new(room, Source::tone(440.0));
    options.request_host = request_host.map(str::to_owned);
    let uri = format!(
        "sip:{room}@{}",
        request_host.map_or_else(|| engine.sip.to_string(), str::to_owned)
    );
    match Call::dial_with(engine.sip, options) {
        Ok(Ok(call)) => call,
        Ok(Err(response)) => panic!("INVITE {uri} rejected:\n{response}\n{}", engine.logs()),
        Err(e) => panic!("INVITE {uri} failed: {e:#}\n{}", engine.logs()),
    }
}

#[test]
fn calls_are_routed_to_accounts_by_number_pattern_and_domain() {
    let engine = Engine::start_with_config(&config(), EngineOptions::default());

    // (room dialled, Request-URI host, the account it must belong to, why)
    let cases: [(&str, Option<&str>, &str, &str); 6] = [
        (
            "acct2-x",
            None,
            ID_B,
            "the user part matches B's number pattern",
        ),
        (
            "room",
            Some(DOMAIN_C),
            ID_C,
            "the Request-URI host is C's domain",
        ),
        ("plain", None, ID_A, "nobody claims it: the first account"),
        (
            "room-upper",
            Some("C.Example.TEST:5999"),
            ID_C,
            "domains match case-insensitively and ignore the port",
        ),
        (
            "x-acct2-z",
            None,
            ID_A,
            "B's pattern is anchored at the start: nobody claims it",
        ),
        (
            "acct2-y",
            Some(DOMAIN_C),
            ID_B,
            "both B (number) and C (domain) claim it: the first of them, B",
        ),
    ];

    let mut calls = Vec::new();
    let mut expected: Vec<(&str, Vec<String>)> =
        ACCOUNTS.iter().map(|(id, _)| (*id, Vec::new())).collect();
    for (room, host, owner, why) in cases {
        calls.push(dial(&engine, room, host));
        for (id, rooms) in &mut expected {
            if *id == owner {
                rooms.push(room.to_owned());
                rooms.sort();
            }
        }
        let actual: Vec<(&str, Vec<String>)> = ACCOUNTS
            .iter()
            .map(|(id, token)| (*id, rooms_of(&engine, id, token)))
            .collect();
        assert_eq!(
            actual,
            expected,
            "after the call to sip:{room}@{} ({why}: it belongs to {owner}), the accounts' \
             conference lists are wrong\n{}",
            host.unwrap_or("<engine address>"),
            engine.logs()
        );
    }

    // Every call is still up, each alone in its room.
    for call in &calls {
        assert!(
            call.bye_received().is_none(),
            "the call into {} was hung up\n{}",
            call.room,
            engine.logs()
        );
    }
}
