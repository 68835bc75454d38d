//! The REST dispatcher: one fallback handler that matches the path against the route table,
//! authenticates, parses the parameters into a [`Command`], and runs it against the engine —
//! at once, or in the background with the result sent to `callback_url` (API.md §6). Record
//! and the Recording API always answer at once (`callback_url` is the recording callback, or
//! means nothing); a recording file is streamed by [`recording::download`].

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::callback::{CallbackMethod, CallbackRequest};
use crate::control::{
    ConferenceControl, ConferenceInfo, MemberAction, MemberSelector, RecordRequest, Voice,
};
use crate::params::Params;
use crate::recording;
use crate::routes::{self, Operation, Route};
use crate::{new_api_id, ApiError, ApiState, Dialect};

/// Larger bodies get 413; the biggest legitimate body (Speak text) is far smaller.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A parsed, validated request.
#[derive(Debug)]
enum Command {
    List,
    HangupAll,
    Get {
        name: String,
    },
    Hangup {
        name: String,
    },
    Member {
        name: String,
        /// The ids as requested, echoed in the response (API.md §4.1).
        requested: Vec<String>,
        selector: MemberSelector,
        action: MemberAction,
        /// The 202 message; `None` answers 204.
        message: Option<&'static str>,
    },
    RecordStart {
        name: String,
        request: RecordRequest,
    },
    RecordStop {
        name: String,
    },
    ListRecordings {
        limit: usize,
        offset: usize,
        /// The request path, for the `next`/`previous` links.
        path: String,
    },
    GetRecording {
        id: String,
    },
    DeleteRecording {
        id: String,
    },
    DownloadRecording {
        id: String,
        format: &'static str,
    },
}

/// A successful result, before it becomes a response or a callback.
struct Outcome {
    status: StatusCode,
    body: Option<Value>,
}

impl Outcome {
    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
        }
    }

    fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        match self.body {
            Some(body) => (self.status, Json(body)).into_response(),
            None => self.status.into_response(),
        }
    }
}

/// API.md §4: an unknown route gets the gateway's plain 404, unlike an unknown room.
pub(crate) fn plain_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "message": "Not Found" })),
    )
        .into_response()
}

/// The fallback handler: everything that is not `/healthz`, `/readyz` or `/openapi.json`.
pub(crate) async fn dispatch(State(state): State<ApiState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(matched) = routes::resolve(parts.uri.path()) else {
        return plain_not_found();
    };
    let api_id = new_api_id();
    let route = match matched.route_for(&parts.method) {
        Ok(route) => route,
        Err(allow) => return ApiError::MethodNotAllowed { allow }.response(&api_id),
    };
    let dialect = matched.dialect;
    let target = Target {
        auth_id: matched.auth_id.to_owned(),
        conference_name: matched.conference_name.map(str::to_owned),
        member_id: matched.member_id.map(str::to_owned),
        recording_id: matched.recording_id.map(str::to_owned),
        file_format: route.file_format(),
    };
    let span = tracing::info_span!(
        "request",
        method = %parts.method,
        matched_path = %full_template(dialect, route),
        %api_id,
    );
    async move {
        match handle(
            &state,
            dialect,
            route.operation,
            &parts,
            body,
            target,
            &api_id,
        )
        .await
        {
            Ok(response) => {
                tracing::debug!(status = response.status().as_u16(), "request served");
                response
            }
            Err(e) => {
                tracing::debug!(error = %e, "request refused");
                e.response(&api_id)
            }
        }
    }
    .instrument(span)
    .await
}

/// The raw captures of the matched path.
struct Target {
    auth_id: String,
    conference_name: Option<String>,
    member_id: Option<String>,
    recording_id: Option<String>,
    /// The file route's format (`mp3`, `wav`).
    file_format: Option<&'static str>,
}

/// The decoded captures a command is built from.
struct Resource<'a> {
    name: Option<String>,
    member_id: Option<&'a str>,
    recording_id: Option<String>,
    file_format: Option<&'static str>,
    path: &'a str,
}

fn full_template(dialect: Dialect, route: &Route) -> String {
    let prefix = routes::PREFIXES
        .iter()
        .find(|(d, _)| *d == dialect)
        .map_or("", |(_, p)| p);
    format!("{prefix}{}", route.template)
}

async fn handle(
    state: &ApiState,
    dialect: Dialect,
    operation: Operation,
    parts: &Parts,
    body: Body,
    target: Target,
    api_id: &str,
) -> Result<Response, ApiError> {
    let account = decode(&target.auth_id)
        .and_then(|id| state.accounts.authenticate(&parts.headers, &id))
        .map(|credential| credential.auth_id.clone())
        .ok_or(ApiError::Unauthorized { dialect })?;
    // A name that is not UTF-8 cannot name any room (rooms come from XML text).
    let name = match &target.conference_name {
        Some(raw) => Some(decode(raw).ok_or(ApiError::ConferenceNotFound)?),
        None => None,
    };
    // Likewise an id that is not UTF-8 names no recording.
    let recording_id = match &target.recording_id {
        Some(raw) => Some(decode(raw).ok_or(ApiError::RecordingNotFound)?),
        None => None,
    };
    let bytes = read_body(body).await?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let params = Params::parse(content_type, &bytes, parts.uri.query())?;
    let resource = Resource {
        name,
        member_id: target.member_id.as_deref(),
        recording_id,
        file_format: target.file_format,
        path: parts.uri.path(),
    };
    let command = build(operation, resource, &params)?;

    if let Command::DownloadRecording { id, format } = &command {
        return recording::download(&*state.control, &account, id, format, parts).await;
    }
    let callback = if allows_async(operation) {
        async_target(&params)?
    } else {
        None
    };
    let Some((url, method)) = callback else {
        return Ok(
            match execute(&*state.control, &account, dialect, command, api_id).await {
                Ok(outcome) => outcome.into_response(),
                Err(e) => e.response(api_id),
            },
        );
    };

    let control = state.control.clone();
    let sink = state.callbacks.clone();
    let task_api_id = api_id.to_owned();
    tokio::spawn(
        async move {
            let api_id = task_api_id;
            let (status, body) = match execute(&*control, &account, dialect, command, &api_id).await
            {
                Ok(outcome) => (outcome.status, outcome.body),
                Err(e) => {
                    if let ApiError::Internal(detail) = &e {
                        tracing::error!(detail = %detail, "engine failed an async request");
                    }
                    (e.status(), Some(e.body(&api_id)))
                }
            };
            let fields = callback_fields(&api_id, status, body);
            sink.deliver(CallbackRequest {
                url,
                method,
                fields,
            })
            .await;
        }
        .in_current_span(),
    );
    Ok(async_spawned(api_id).into_response())
}

/// API.md §6 async mode: the conference routes but Record (whose `callback_url` is the
/// recording callback). The Recording API answers at once.
pub(crate) fn allows_async(operation: Operation) -> bool {
    !matches!(
        operation,
        Operation::RecordStart
            | Operation::RecordStop
            | Operation::ListRecordings
            | Operation::GetRecording
            | Operation::DeleteRecording
            | Operation::DownloadRecording
    )
}

fn async_spawned(api_id: &str) -> Outcome {
    Outcome::json(
        StatusCode::OK,
        json!({ "api_id": api_id, "message": "async api spawned" }),
    )
}

/// Standard percent-decoding (`+` stays `+`); `None` when the bytes are not UTF-8.
fn decode(raw: &str) -> Option<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            if e.into_inner().is::<http_body_util::LengthLimitError>() {
                ApiError::BodyTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                ApiError::BodyUnreadable
            }
        })
}

/// `callback_url` (and `callback_method`) turn a request into async mode.
fn async_target(params: &Params) -> Result<Option<(String, CallbackMethod)>, ApiError> {
    let Some(url) = params.get("callback_url") else {
        return Ok(None);
    };
    let url = http_url(url, "callback_url")?;
    Ok(Some((url, callback_method(params)?)))
}

fn callback_method(params: &Params) -> Result<CallbackMethod, ApiError> {
    params
        .get("callback_method")
        .map_or(Some(CallbackMethod::Post), CallbackMethod::parse)
        .ok_or(ApiError::InvalidParameter {
            name: "callback_method",
            reason: "must be GET or POST",
        })
}

fn http_url(url: &str, name: &'static str) -> Result<String, ApiError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(url.to_owned())
        }
        _ => Err(ApiError::InvalidParameter {
            name,
            reason: "must be an http(s) URL",
        }),
    }
}

fn build(
    operation: Operation,
    resource: Resource<'_>,
    params: &Params,
) -> Result<Command, ApiError> {
    let Resource {
        name,
        member_id,
        recording_id,
        file_format,
        path,
    } = resource;
    let name = || name.clone().unwrap_or_default();
    let id = || recording_id.clone().unwrap_or_default();
    let member = |action: MemberAction, message: Option<&'static str>| {
        let (requested, selector) = members(member_id.unwrap_or_default());
        Command::Member {
            name: name(),
            requested,
            selector,
            action,
            message,
        }
    };
    Ok(match operation {
        Operation::ListConferences => Command::List,
        Operation::HangupAllConferences => Command::HangupAll,
        Operation::GetConference => Command::Get { name: name() },
        Operation::HangupConference => Command::Hangup { name: name() },
        Operation::MemberHangup => member(MemberAction::Hangup, None),
        Operation::MemberKick => member(MemberAction::Kick, Some("kicked")),
        Operation::MemberMute => member(MemberAction::Mute, Some("muted")),
        Operation::MemberUnmute => member(MemberAction::Unmute, None),
        Operation::MemberDeaf => member(MemberAction::Deaf, Some("deaf")),
        Operation::MemberUndeaf => member(MemberAction::Undeaf, None),
        Operation::MemberPlay => {
            let url = params.get("url").ok_or(ApiError::MissingParameter("url"))?;
            member(
                MemberAction::Play {
                    url: url.to_owned(),
                },
                Some("play queued into conference"),
            )
        }
        Operation::MemberStopPlay => member(MemberAction::StopPlay, None),
        Operation::MemberSpeak => {
            let text = params
                .get("text")
                .ok_or(ApiError::MissingParameter("text"))?;
            let voice = match params.get("voice") {
                None => Voice::Woman,
                Some(v) if v.eq_ignore_ascii_case("WOMAN") => Voice::Woman,
                Some(v) if v.eq_ignore_ascii_case("MAN") => Voice::Man,
                Some(_) => {
                    return Err(ApiError::InvalidParameter {
                        name: "voice",
                        reason: "must be WOMAN or MAN",
                    })
                }
            };
            let language = params.get("language").unwrap_or("en-US").to_owned();
            member(
                MemberAction::Speak {
                    text: text.to_owned(),
                    voice,
                    language,
                },
                Some("speak queued into conference"),
            )
        }
        Operation::MemberStopSpeak => member(MemberAction::StopSpeak, None),
        Operation::RecordStart => Command::RecordStart {
            name: name(),
            request: record_request(params)?,
        },
        Operation::RecordStop => Command::RecordStop { name: name() },
        Operation::ListRecordings => {
            let (limit, offset) = recording::page(params)?;
            Command::ListRecordings {
                limit,
                offset,
                path: path.to_owned(),
            }
        }
        Operation::GetRecording => Command::GetRecording { id: id() },
        Operation::DeleteRecording => Command::DeleteRecording { id: id() },
        Operation::DownloadRecording => Command::DownloadRecording {
            id: id(),
            format: file_format.unwrap_or("mp3"),
        },
    })
}

/// API.md §4.1: one id, a comma list, or `all`; the requested list (split on `,`, trimmed) is
/// what the response echoes.
fn members(raw: &str) -> (Vec<String>, MemberSelector) {
    let decoded = decode(raw).unwrap_or_default();
    let ids: Vec<String> = decoded
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if let [only] = ids.as_slice() {
        if only.eq_ignore_ascii_case("all") {
            return (vec!["all".to_owned()], MemberSelector::All);
        }
    }
    (ids.clone(), MemberSelector::Ids(ids))
}

fn record_request(params: &Params) -> Result<RecordRequest, ApiError> {
    let file_format = match params.get("file_format") {
        None => "mp3".to_owned(),
        Some(f) if f.eq_ignore_ascii_case("mp3") || f.eq_ignore_ascii_case("wav") => {
            f.to_ascii_lowercase()
        }
        Some(_) => {
            return Err(ApiError::InvalidParameter {
                name: "file_format",
                reason: "must be mp3 or wav",
            })
        }
    };
    let callback_url = params
        .get("callback_url")
        .map(|u| http_url(u, "callback_url"))
        .transpose()?;
    let callback_method = match callback_method(params)? {
        CallbackMethod::Get => "GET",
        CallbackMethod::Post => "POST",
    };
    let time_limit = params
        .get("time_limit")
        .map(|t| {
            t.parse::<u64>().map_err(|_| ApiError::InvalidParameter {
                name: "time_limit",
                reason: "must be a whole number of seconds",
            })
        })
        .transpose()?;
    Ok(RecordRequest {
        file_format,
        callback_url,
        callback_method: callback_method.to_owned(),
        time_limit,
    })
}

async fn execute(
    control: &dyn ConferenceControl,
    account: &str,
    dialect: Dialect,
    command: Command,
    api_id: &str,
) -> Result<Outcome, ApiError> {
    Ok(match command {
        Command::List => {
            let mut conferences = control.list(account);
            conferences.sort();
            Outcome::json(
                StatusCode::OK,
                json!({ "api_id": api_id, "conferences": conferences }),
            )
        }
        Command::HangupAll => {
            control.hangup_all(account).await?;
            Outcome::no_content()
        }
        Command::Get { name } => {
            let info = control
                .get(account, &name)
                .ok_or(ApiError::ConferenceNotFound)?;
            Outcome::json(StatusCode::OK, conference_json(&info, api_id))
        }
        Command::Hangup { name } => {
            control.hangup_conference(account, &name).await?;
            Outcome::no_content()
        }
        Command::Member {
            name,
            requested,
            selector,
            action,
            message,
        } => {
            if matches!(&selector, MemberSelector::Ids(ids) if ids.is_empty()) {
                return Err(ApiError::MemberNotFound);
            }
            control
                .member_action(account, &name, selector, action)
                .await?;
            match message {
                Some(message) => Outcome::json(
                    StatusCode::ACCEPTED,
                    json!({ "message": message, "member_id": requested, "api_id": api_id }),
                ),
                None => Outcome::no_content(),
            }
        }
        Command::RecordStart { name, request } => {
            let started = control.record_start(account, &name, request).await?;
            match dialect {
                // API.md §15.10: Vobiz answers like its docs, Plivo with the recording.
                Dialect::Vobiz => async_spawned(api_id),
                Dialect::Plivo => Outcome::json(
                    StatusCode::ACCEPTED,
                    json!({
                        "api_id": api_id,
                        "message": "conference recording started",
                        "recording_id": started.recording_id,
                        "url": started.url,
                    }),
                ),
            }
        }
        Command::RecordStop { name } => {
            control.record_stop(account, &name).await?;
            Outcome::no_content()
        }
        Command::ListRecordings {
            limit,
            offset,
            path,
        } => Outcome::json(
            StatusCode::OK,
            recording::list_json(control.recordings(account), limit, offset, &path, api_id),
        ),
        Command::GetRecording { id } => {
            let info = control
                .recording(account, &id)
                .ok_or(ApiError::RecordingNotFound)?;
            let mut body = recording::recording_json(&info);
            body["api_id"] = json!(api_id);
            Outcome::json(StatusCode::OK, body)
        }
        Command::DeleteRecording { id } => {
            control.delete_recording(account, &id).await?;
            Outcome::no_content()
        }
        Command::DownloadRecording { .. } => {
            return Err(ApiError::Internal(
                "a download reached the JSON executor".into(),
            ))
        }
    })
}

/// API.md §5.2: exactly these keys at both levels; counts and times are strings.
fn conference_json(info: &ConferenceInfo, api_id: &str) -> Value {
    let members: Vec<Value> = info
        .members
        .iter()
        .map(|m| {
            json!({
                "muted": m.muted,
                "member_id": m.member_id,
                "deaf": m.deaf,
                "from": m.from.strip_prefix('+').unwrap_or(&m.from),
                "to": m.to,
                "caller_name": m.caller_name,
                "direction": m.direction,
                "call_uuid": m.call_uuid,
                "join_time": m.join_time.to_string(),
            })
        })
        .collect();
    json!({
        "conference_name": info.name,
        "conference_run_time": info.run_time.to_string(),
        "conference_member_count": info.members.len().to_string(),
        "members": members,
        "api_id": api_id,
    })
}

/// API.md §6 [DECISION]: the synchronous body's fields (arrays of scalars joined with `,`,
/// anything deeper as JSON text), then `api_id`, `status` and `http_status`.
fn callback_fields(api_id: &str, status: StatusCode, body: Option<Value>) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    if let Some(Value::Object(map)) = body {
        for (key, value) in map {
            if key == "api_id" {
                continue;
            }
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s,
                Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
                    items
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                }
                other => other.to_string(),
            };
            fields.push((key, text));
        }
    }
    let outcome = if status.is_success() {
        "success"
    } else {
        "failure"
    };
    fields.push(("api_id".to_owned(), api_id.to_owned()));
    fields.push(("status".to_owned(), outcome.to_owned()));
    fields.push(("http_status".to_owned(), status.as_u16().to_string()));
    fields
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn member_forms_split_trim_and_keep_all_literal() {
        assert_eq!(
            members("10"),
            (vec!["10".into()], MemberSelector::Ids(vec!["10".into()]))
        );
        let (echo, selector) = members("10,11,%2012");
        assert_eq!(echo, vec!["10", "11", "12"]);
        assert_eq!(selector, MemberSelector::Ids(echo.clone()));
        assert_eq!(members("all"), (vec!["all".into()], MemberSelector::All));
        assert_eq!(members("ALL").1, MemberSelector::All);
        assert_eq!(members(",").1, MemberSelector::Ids(vec![]));
        assert_eq!(members("%ff").1, MemberSelector::Ids(vec![]));
    }

    #[test]
    fn callback_fields_flatten_arrays_and_report_status() {
        let fields = callback_fields(
            "X",
            StatusCode::ACCEPTED,
            Some(json!({"message": "muted", "member_id": ["1", "2"], "api_id": "X"})),
        );
        assert_eq!(
            fields,
            vec![
                ("member_id".to_owned(), "1,2".to_owned()),
                ("message".to_owned(), "muted".to_owned()),
                ("api_id".to_owned(), "X".to_owned()),
                ("status".to_owned(), "success".to_owned()),
                ("http_status".to_owned(), "202".to_owned()),
            ]
        );
        let fields = callback_fields("Y", StatusCode::NO_CONTENT, None);
        assert_eq!(fields.len(), 3);
    }

    #[test]
    fn percent_decoding_keeps_plus_and_refuses_bad_utf8() {
        assert_eq!(decode("My%20Conf+Room").unwrap(), "My Conf+Room");
        assert_eq!(decode("%C3%A9").unwrap(), "é");
        assert!(decode("%C3").is_none());
        assert_eq!(decode("100%").unwrap(), "100%");
    }
}
