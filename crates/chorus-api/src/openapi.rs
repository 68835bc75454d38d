//! The OpenAPI 3.0 document of the REST surface, built from the same route table the
//! dispatcher serves ([`crate::routes::ROUTES`]) so the two cannot disagree.

use serde_json::{json, Map, Value};

use crate::rest::allows_async;
use crate::routes::{placeholder, template_segments, Operation, Route, PREFIXES, ROUTES};
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
                string. With callback_url (every Conference route but Record) the request \
                answers 200 'async api spawned' and the result is sent form-encoded to \
                callback_url with api_id, status and http_status. Recordings are the \
                authenticated account's only: another account's id is 'recording not found'. \
                A recording's file is GET .../Recording/{recording_id}.mp3 (or .wav, \
                its format) with single byte ranges; while recording it is 404 'recording not \
                available yet'.",
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
        .filter_map(|s| placeholder(s).map(|(name, _)| name))
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
    let is_async = allows_async(route.operation);
    if route.operation == Operation::DownloadRecording {
        let media = match route.file_format() {
            Some("wav") => "audio/wav",
            _ => "audio/mpeg",
        };
        let file = json!({ media: { "schema": { "type": "string", "format": "binary" } } });
        let headers = json!({
            "Accept-Ranges": { "schema": { "type": "string", "enum": ["bytes"] } },
            "Content-Length": { "schema": { "type": "integer" } },
        });
        responses.insert(
            "200".into(),
            json!({ "description": "the whole file (also for several ranges, another unit or If-Range)",
                    "headers": headers, "content": file }),
        );
        responses.insert(
            "206".into(),
            json!({ "description": "the single byte range asked for (bytes=a-b, a- or -n)",
                    "headers": {
                        "Content-Range": { "schema": { "type": "string" },
                                           "description": "bytes first-last/length" },
                    },
                    "content": file }),
        );
        responses.insert(
            "416".into(),
            json!({ "description": "the range starts past the end; Content-Range: bytes */length",
                    "content": { "application/json": { "schema": reference("Error") } } }),
        );
    } else if code == "200" && is_async {
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
    if code != "200" && is_async {
        responses.insert(
            "200".into(),
            json!({ "description": "async api spawned (callback_url given)",
                    "content": { "application/json": { "schema": reference("AsyncSpawned") } } }),
        );
    }
    let not_found = match route.operation {
        Operation::ListRecordings => "an unknown route is the plain 404",
        Operation::GetRecording | Operation::DeleteRecording => {
            "recording not found, also for another account's recording (an unknown route is \
             the plain 404)"
        }
        Operation::DownloadRecording => {
            "recording not found (also another account's, or another format's); recording \
             not available yet (still recording); recording file not available"
        }
        _ => "conference or member not found (an unknown route is the plain 404)",
    };
    for (code, description) in [
        ("400", "invalid or missing parameter, or malformed body"),
        ("401", "authentication failed"),
        ("404", not_found),
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

    let operation_id = match (route.operation, route.file_format()) {
        (Operation::DownloadRecording, Some(format)) => format!(
            "{tag}_{id}_{format}{}",
            if route.method == axum::http::Method::HEAD {
                "_head"
            } else {
                ""
            }
        ),
        _ => format!("{tag}_{id}"),
    };
    let mut op = json!({
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "parameters": parameters,
        "responses": responses,
    });
    if route.method != axum::http::Method::GET && route.method != axum::http::Method::HEAD {
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
        Operation::ListRecordings => ("list_recordings", "List the account's recordings"),
        Operation::GetRecording => ("get_recording", "Retrieve a recording"),
        Operation::DeleteRecording => ("delete_recording", "Delete a recording and its file"),
        Operation::DownloadRecording => ("download_recording", "Download a recording's file"),
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
        Operation::ListRecordings => (
            "200",
            "the account's recordings, newest first",
            reference("RecordingList"),
        ),
        Operation::GetRecording => ("200", "the recording", reference("Recording")),
        Operation::DownloadRecording => ("200", "the file", json!({})),
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
        "recording_id" => "a recording id (from record start, the callback or the list)",
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
        Operation::ListRecordings => json!({
            "limit": { "type": "integer", "minimum": 1, "maximum": 20, "default": 20 },
            "offset": { "type": "integer", "minimum": 0, "default": 0 },
        }),
        _ => json!({}),
    };
    if allows_async(operation) {
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
            "RecordingList": {
                "type": "object", "required": ["api_id", "meta", "objects"],
                "properties": {
                    "api_id": string,
                    "meta": {
                        "type": "object", "required": ["count", "limit", "offset", "next", "previous"],
                        "properties": {
                            "count": { "type": "integer", "description": "all the account's recordings" },
                            "limit": { "type": "integer" },
                            "offset": { "type": "integer" },
                            "next": { "type": "string", "nullable": true,
                                      "description": "path and query of the next page" },
                            "previous": { "type": "string", "nullable": true },
                        },
                    },
                    "objects": { "type": "array", "items": reference("RecordingObject") },
                },
                "additionalProperties": false,
            },
            "Recording": {
                "allOf": [
                    reference("RecordingObject"),
                    { "type": "object", "required": ["api_id"], "properties": { "api_id": string } },
                ],
            },
            "RecordingObject": {
                "type": "object",
                "required": ["recording_id", "recording_url", "recording_format", "recording_type",
                             "conference_name", "call_uuid", "recording_duration_ms",
                             "recording_start_ms", "recording_end_ms", "add_time", "status", "recovered"],
                "properties": {
                    "recording_id": string,
                    "recording_url": { "type": "string", "description": "where the file is served" },
                    "recording_format": { "type": "string", "enum": ["mp3", "wav"] },
                    "recording_type": { "type": "string", "enum": ["conference", "normal"] },
                    "conference_name": { "type": "string", "nullable": true },
                    "call_uuid": { "type": "string", "nullable": true },
                    "recording_duration_ms": { "type": "string", "example": "345100.00000" },
                    "recording_start_ms": { "type": "string", "description": "epoch ms", "example": "1407235163907.00000" },
                    "recording_end_ms": { "type": "string", "description": "epoch ms; 0 while recording" },
                    "add_time": { "type": "string", "example": "2014-08-05 10:39:23+00:00" },
                    "status": { "type": "string", "enum": ["completed", "failed", "in-progress"] },
                    "recovered": { "type": "boolean", "description": "finished after a restart" },
                },
            },
            "RecordingStarted": {
                "type": "object", "required": ["api_id", "message", "recording_id", "url"],
                "properties": { "api_id": string, "message": string, "recording_id": string, "url": string },
                "additionalProperties": false,
            },
        },
    })
}
