//! The Recording API: the JSON of a recording (Plivo's Recording object), the paged list, and
//! the file download with byte ranges.
//!
//! The file is served by tower-http's `ServeFile` from the path the control returned, never
//! from one built out of the request. Before it, the client's `Range` is reduced to what
//! `ServeFile` answers correctly: one well-formed `bytes` range is passed on (206, or 416 when
//! it starts past the end); several ranges, another unit, a malformed value or an `If-Range`
//! drop the header, and the whole file is sent (200), as RFC 9110 §14.2 allows.

use axum::body::Body;
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::control::{ConferenceControl, RecordingInfo};
use crate::params::Params;
use crate::ApiError;

/// The largest (and default) page of the list, as Plivo's.
pub(crate) const MAX_LIMIT: usize = 20;

/// `limit` (1–20, default 20) and `offset` (default 0) from the query string or body.
pub(crate) fn page(params: &Params) -> Result<(usize, usize), ApiError> {
    let limit = match params.get("limit") {
        None => MAX_LIMIT,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or(ApiError::InvalidParameter {
                name: "limit",
                reason: "must be a whole number from 1 to 20",
            })?,
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .map_err(|_| ApiError::InvalidParameter {
                name: "offset",
                reason: "must be a whole number from 0",
            })?,
    };
    Ok((limit, offset))
}

/// The list body: newest first, `meta.count` is the total, `next`/`previous` are the request
/// path with the neighbouring page's query (`null` at the ends).
pub(crate) fn list_json(
    mut recordings: Vec<RecordingInfo>,
    limit: usize,
    offset: usize,
    path: &str,
    api_id: &str,
) -> Value {
    recordings.sort_by(|a, b| {
        b.start_ms
            .cmp(&a.start_ms)
            .then_with(|| a.recording_id.cmp(&b.recording_id))
    });
    let count = recordings.len();
    let objects: Vec<Value> = recordings
        .iter()
        .skip(offset)
        .take(limit)
        .map(recording_json)
        .collect();
    let link = |offset: usize| format!("{path}?limit={limit}&offset={offset}");
    let next = (offset.saturating_add(limit) < count).then(|| link(offset + limit));
    let previous = (offset > 0).then(|| link(offset.saturating_sub(limit)));
    json!({
        "api_id": api_id,
        "meta": {
            "count": count,
            "limit": limit,
            "offset": offset,
            "next": next,
            "previous": previous,
        },
        "objects": objects,
    })
}

/// Plivo's Recording object: times and durations are millisecond strings with five decimals
/// (`"345100.00000"`), `add_time` is the start in UTC.
pub(crate) fn recording_json(r: &RecordingInfo) -> Value {
    let recording_type = if r.conference_name.is_some() {
        "conference"
    } else {
        "normal"
    };
    json!({
        "recording_id": r.recording_id,
        "recording_url": r.url,
        "recording_format": r.format,
        "recording_type": recording_type,
        "conference_name": r.conference_name,
        "call_uuid": r.call_uuid,
        "recording_duration_ms": millis(r.duration_ms),
        "recording_start_ms": millis(r.start_ms),
        "recording_end_ms": millis(r.end_ms),
        "add_time": add_time(r.start_ms),
        "status": r.status,
        "recovered": r.recovered,
    })
}

fn millis(ms: u64) -> String {
    format!("{ms}.00000")
}

/// `YYYY-MM-DD HH:MM:SS+00:00` for epoch milliseconds.
fn add_time(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Serves the account's recording `id` as `format` (GET or HEAD).
pub(crate) async fn download(
    control: &dyn ConferenceControl,
    account: &str,
    id: &str,
    format: &str,
    parts: &Parts,
) -> Result<Response, ApiError> {
    // The file route of another format names no file: `rec.wav` of an mp3 recording is 404.
    let info = control
        .recording(account, id)
        .filter(|r| r.format.eq_ignore_ascii_case(format))
        .ok_or(ApiError::RecordingNotFound)?;
    if info.status == "in-progress" {
        return Err(ApiError::RecordingNotReady);
    }
    let path = info.path.ok_or(ApiError::RecordingFileMissing)?;
    let content_type = if format.eq_ignore_ascii_case("wav") {
        "audio/wav"
    } else {
        "audio/mpeg"
    };

    let mut builder = Request::builder().method(parts.method.clone()).uri("/");
    for name in [header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE] {
        if let Some(value) = parts.headers.get(&name) {
            builder = builder.header(name, value);
        }
    }
    // The length only shapes the Range passed on; ServeFile reads the file's own.
    let length = match tokio::fs::metadata(&path).await {
        Ok(meta) if meta.is_file() => meta.len(),
        _ => return Err(ApiError::RecordingFileMissing),
    };
    if let Some(range) = single_byte_range(&parts.headers, length) {
        builder = builder.header(header::RANGE, range);
    }
    let request = builder
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(format!("building the file request: {e}")))?;
    let response = match ServeFile::new(&path).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };

    let (mut head, body) = response.into_parts();
    match head.status {
        StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
            head.headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            Ok(Response::from_parts(head, Body::new(body)))
        }
        StatusCode::NOT_MODIFIED | StatusCode::PRECONDITION_FAILED => {
            Ok(Response::from_parts(head, Body::empty()))
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let length = head
                .headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes */"))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| ApiError::Internal("416 without the file length".into()))?;
            Err(ApiError::RangeNotSatisfiable { length })
        }
        // Gone between the lookup and the open (deleted), or unreadable.
        StatusCode::NOT_FOUND => Err(ApiError::RecordingFileMissing),
        status => Err(ApiError::Internal(format!(
            "serving recording {id} from {}: {status}",
            path.display()
        ))),
    }
}

/// The `Range` to pass on: one syntactically valid `bytes` range (`a-b`, `a-`, `-n`), unit in
/// any case; anything else is ignored and the whole file is sent. A suffix longer than the
/// file means the whole file (RFC 9110 §14.1.3), which ServeFile would refuse, so it becomes
/// `0-`.
fn single_byte_range(headers: &HeaderMap, length: u64) -> Option<String> {
    if headers.contains_key(header::IF_RANGE) {
        // Honouring If-Range needs the validator compared; sending everything is always right.
        return None;
    }
    let mut values = headers.get_all(header::RANGE).iter();
    let value = values.next()?.to_str().ok()?.trim();
    if values.next().is_some() {
        return None;
    }
    let (unit, spec) = value.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => match number(last)? {
            suffix if suffix > length && length > 0 => Some("bytes=0-".to_owned()),
            suffix => Some(format!("bytes=-{suffix}")),
        },
        (false, true) => Some(format!("bytes={}-", number(first)?)),
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            (a <= b).then(|| format!("bytes={a}-{b}"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn range(values: &[&str]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::RANGE, HeaderValue::from_str(v).unwrap());
        }
        single_byte_range(&headers, 1000)
    }

    #[test]
    fn one_well_formed_byte_range_is_passed_on_normalised() {
        assert_eq!(range(&["bytes=0-99"]).unwrap(), "bytes=0-99");
        assert_eq!(range(&["Bytes = 5- "]).unwrap(), "bytes=5-");
        assert_eq!(range(&["bytes=-100"]).unwrap(), "bytes=-100");
        assert_eq!(range(&["bytes=-0"]).unwrap(), "bytes=-0");
        assert_eq!(range(&["bytes=99999-"]).unwrap(), "bytes=99999-");
        assert_eq!(range(&["bytes=-1000"]).unwrap(), "bytes=-1000");
        assert_eq!(range(&["bytes=-1001"]).unwrap(), "bytes=0-", "whole file");
    }

    #[test]
    fn several_ranges_other_units_and_malformed_values_are_ignored() {
        for v in [
            "bytes=0-1,5-6",
            "items=0-5",
            "bytes=5-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=0-99999999999999999999999",
            "bytes",
            "",
        ] {
            assert_eq!(range(&[v]), None, "{v:?}");
        }
        assert_eq!(range(&["bytes=0-1", "bytes=2-3"]), None);
        assert_eq!(range(&[]), None);
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        headers.insert(header::IF_RANGE, HeaderValue::from_static("\"x\""));
        assert_eq!(single_byte_range(&headers, 1000), None);
    }

    #[test]
    fn add_time_is_the_utc_start_to_the_second() {
        assert_eq!(add_time(0), "1970-01-01 00:00:00+00:00");
        assert_eq!(add_time(1_407_235_163_907), "2014-08-05 10:39:23+00:00");
        assert_eq!(add_time(951_782_400_000), "2000-02-29 00:00:00+00:00");
        assert_eq!(add_time(4_102_444_799_999), "2099-12-31 23:59:59+00:00");
    }
}
