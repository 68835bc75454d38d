//! The OpenAPI 3.0 document of the REST surface, built from the same route table the
//! dispatcher serves ([`crate::routes::ROUTES`]) so the two cannot disagree.

use serde_json::{json, Map, Value};

use crate::routes::{template_segments, Operation, Route, PREFIXES, ROUTES};
use crate::Dialect;

/// The document, as served at `GET /openapi.json`.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (dialect, prefix) in PREFIXES {
        for route in &ROUTES {
            let path = format!("{prefix}{}", route.template);
            let item = paths.entry(path).or_insert_with(|| json!({}));
            item[route.method.as_str().to_ascii_lowercase()] = operation(dialect, prefix, route);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Chorus conference API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Vobiz (/api/v1) and Plivo (/v1) conference REST dialects. \
                Fixed path segments match in any case and the trailing slash is optional; \
                conference names are percent-decoded and case-sensitive. Bodies may be JSON, \
                form-encoded or empty, and every body parameter may also be given in the query \
                string. With callback_url (every route but Record) the request answers 200 \
                'async api spawned' and the result is sent form-encoded to callback_url with \
                api_id, status and http_status.",
        },
        "paths": paths,
        "security": [ { "basicAuth": [] }, { "authId": [], "authToken": [] } ],
        "components": components(),
    })
}

fn operation(dialect: Dialect, prefix: &str, route: &Route) -> Value {
    let tag = match dialect {
        Dialect::Vobiz => "vobiz",
        Dialect::Plivo => "plivo",
    };
    let (id, summary) = describe(route.operation);
    let mut parameters: Vec<Value> = template_segments(prefix)
        .chain(template_segments(route.template))
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(path_parameter)
        .collect();
    let body = body_schema(route.operation);
    if let Some(Value::Object(props)) = body.get("properties") {
        // Every body parameter is read from the query string too (API.md §4.3).
        for (name, schema) in props {
            parameters.push(json!({
                "name": name, "in": "query", "required": false, "schema": schema,
            }));
        }
    }

    let mut responses = Map::new();
    let (code, description, schema) = success(dialect, route.operation);
    let is_record = matches!(
        route.operation,
        Operation::RecordStart | Operation::RecordStop
    );
    if code == "200" && !is_record {
        responses.insert(
            code.into(),
            json!({ "description": format!("{description}; or async api spawned (callback_url given)"),
                    "content": { "application/json": { "schema": { "oneOf": [ schema, reference("AsyncSpawned") ] } } } }),
        );
    } else if code == "204" {
        responses.insert(code.into(), json!({ "description": description }));
    } else {
        responses.insert(
            code.into(),
            json!({ "description": description,
                    "content": { "application/json": { "schema": schema } } }),
        );
    }
    if code != "200" && !is_record {
        responses.insert(
            "200".into(),
            json!({ "description": "async api spawned (callback_url given)",
                    "content": { "application/json": { "schema": reference("AsyncSpawned") } } }),
        );
    }
    for (code, description) in [
        ("400", "invalid or missing parameter, or malformed body"),
        ("401", "authentication failed"),
        (
            "404",
            "conference or member not found (an unknown route is the plain 404)",
        ),
        ("405", "method not allowed (see the Allow header)"),
        ("413", "request body too large"),
        ("500", "internal error"),
        ("503", "not available now"),
    ] {
        responses.insert(
            code.into(),
            json!({ "description": description,
                    "content": { "application/json": { "schema": reference("Error") } } }),
        );
    }

    let mut op = json!({
        "operationId": format!("{tag}_{id}"),
        "summary": summary,
        "tags": [tag],
        "parameters": parameters,
        "responses": responses,
    });
    if route.method != axum::http::Method::GET {
        op["requestBody"] = json!({
            "required": false,
            "content": {
                "application/json": { "schema": body },
                "application/x-www-form-urlencoded": { "schema": body },
            },
        });
    }
    op
}

fn describe(operation: Operation) -> (&'static str, &'static str) {
    match operation {
        Operation::ListConferences => ("list_conferences", "List running conferences"),
        Operation::HangupAllConferences => ("hangup_all_conferences", "Hang up all conferences"),
        Operation::GetConference => ("get_conference", "Retrieve a conference"),
        Operation::HangupConference => ("hangup_conference", "Hang up a conference"),
        Operation::MemberHangup => ("member_hangup", "Hang up members"),
        Operation::MemberKick => ("member_kick", "Kick members"),
        Operation::MemberMute => ("member_mute", "Mute members"),
        Operation::MemberUnmute => ("member_unmute", "Unmute members"),
        Operation::MemberDeaf => ("member_deaf", "Deafen members"),
        Operation::MemberUndeaf => ("member_undeaf", "Undeafen members"),
        Operation::MemberPlay => ("member_play", "Play audio to members"),
        Operation::MemberStopPlay => ("member_stop_play", "Stop playing audio to members"),
        Operation::MemberSpeak => ("member_speak", "Speak text to members"),
        Operation::MemberStopSpeak => ("member_stop_speak", "Stop speaking to members"),
        Operation::RecordStart => ("record_start", "Start recording a conference"),
        Operation::RecordStop => ("record_stop", "Stop recording a conference"),
    }
}

fn success(dialect: Dialect, operation: Operation) -> (&'static str, &'static str, Value) {
    match operation {
        Operation::ListConferences => (
            "200",
            "running conference names",
            reference("ConferenceList"),
        ),
        Operation::GetConference => ("200", "the conference", reference("Conference")),
        Operation::MemberKick
        | Operation::MemberMute
        | Operation::MemberDeaf
        | Operation::MemberPlay
        | Operation::MemberSpeak => (
            "202",
            "action applied to the members present",
            reference("MemberAction"),
        ),
        Operation::RecordStart => match dialect {
            Dialect::Vobiz => ("200", "recording started", reference("AsyncSpawned")),
            Dialect::Plivo => ("202", "recording started", reference("RecordingStarted")),
        },
        _ => ("204", "done (empty body)", json!({})),
    }
}

fn path_parameter(name: &str) -> Value {
    let description = match name {
        "auth_id" => "the authenticated account",
        "conference_name" => "room name, percent-encoded, case-sensitive",
        "member_id" => "a member id, a comma list of ids, or `all`",
        _ => "",
    };
    json!({
        "name": name, "in": "path", "required": true,
        "description": description, "schema": { "type": "string" },
    })
}

fn body_schema(operation: Operation) -> Value {
    let callback = json!({
        "callback_url": { "type": "string", "format": "uri",
                          "description": "async mode: the result is sent here" },
        "callback_method": { "type": "string", "enum": ["POST", "GET"], "default": "POST" },
    });
    let mut props = match operation {
        Operation::MemberPlay => json!({
            "url": { "type": "string", "format": "uri", "description": "mp3 or wav over http(s); required" },
        }),
        Operation::MemberSpeak => json!({
            "text": { "type": "string", "description": "required" },
            "voice": { "type": "string", "enum": ["WOMAN", "MAN"], "default": "WOMAN" },
            "language": { "type": "string", "default": "en-US" },
        }),
        Operation::RecordStart => json!({
            "file_format": { "type": "string", "enum": ["mp3", "wav"], "default": "mp3" },
            "callback_url": { "type": "string", "format": "uri",
                              "description": "recording-complete callback (not async mode)" },
            "callback_method": { "type": "string", "enum": ["POST", "GET"], "default": "POST" },
            "time_limit": { "type": "integer", "minimum": 0, "description": "seconds" },
        }),
        _ => json!({}),
    };
    let is_record = matches!(operation, Operation::RecordStart | Operation::RecordStop);
    if !is_record {
        if let (Value::Object(props), Value::Object(callback)) = (&mut props, callback) {
            props.extend(callback);
        }
    }
    json!({ "type": "object", "properties": props })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn components() -> Value {
    let string = json!({ "type": "string" });
    json!({
        "securitySchemes": {
            "basicAuth": { "type": "http", "scheme": "basic",
                           "description": "auth_id:auth_token (Plivo style)" },
            "authId": { "type": "apiKey", "in": "header", "name": "X-Auth-ID" },
            "authToken": { "type": "apiKey", "in": "header", "name": "X-Auth-Token" },
        },
        "schemas": {
            "Error": {
                "type": "object", "required": ["error", "api_id"],
                "properties": { "error": string, "api_id": string },
            },
            "NotFound": {
                "type": "object", "required": ["message"],
                "properties": { "message": string },
            },
            "AsyncSpawned": {
                "type": "object", "required": ["api_id", "message"],
                "properties": { "api_id": string, "message": { "type": "string", "enum": ["async api spawned"] } },
                "additionalProperties": false,
            },
            "MemberAction": {
                "type": "object", "required": ["message", "member_id", "api_id"],
                "properties": {
                    "message": string,
                    "member_id": { "type": "array", "items": string,
                                   "description": "the requested ids; `all` stays `[\"all\"]`" },
                    "api_id": string,
                },
                "additionalProperties": false,
            },
            "ConferenceList": {
                "type": "object", "required": ["api_id", "conferences"],
                "properties": { "api_id": string, "conferences": { "type": "array", "items": string } },
                "additionalProperties": false,
            },
            "Conference": {
                "type": "object",
                "required": ["conference_name", "conference_run_time", "conference_member_count", "members", "api_id"],
                "properties": {
                    "conference_name": string,
                    "conference_run_time": { "type": "string", "description": "whole seconds since the room started" },
                    "conference_member_count": { "type": "string", "description": "integer" },
                    "members": { "type": "array", "items": reference("Member") },
                    "api_id": string,
                },
                "additionalProperties": false,
            },
            "Member": {
                "type": "object",
                "required": ["muted", "member_id", "deaf", "from", "to", "caller_name", "direction", "call_uuid", "join_time"],
                "properties": {
                    "muted": { "type": "boolean" },
                    "member_id": string,
                    "deaf": { "type": "boolean" },
                    "from": string,
                    "to": string,
                    "caller_name": string,
                    "direction": { "type": "string", "enum": ["inbound", "outbound"] },
                    "call_uuid": string,
                    "join_time": { "type": "string", "description": "whole seconds since the member joined" },
                },
                "additionalProperties": false,
            },
            "RecordingStarted": {
                "type": "object", "required": ["api_id", "message", "recording_id", "url"],
                "properties": { "api_id": string, "message": string, "recording_id": string, "url": string },
                "additionalProperties": false,
            },
        },
    })
}
