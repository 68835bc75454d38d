//! The REST route table (API.md §4, plus the Recording API) and the path matcher the
//! dispatcher runs on it.
//!
//! axum's router is case-sensitive and treats `/x` and `/x/` as different routes, while
//! API.md §2 and §15.1 want the fixed segments matched case-insensitively, the trailing slash
//! optional and the conference name kept case-sensitive. So the REST surface is one fallback
//! handler that matches the raw path against [`ROUTES`] itself. The same table feeds the
//! OpenAPI document, so the two cannot drift apart.
//!
//! A template segment is fixed text, a placeholder `{name}` (one non-empty segment), or a
//! placeholder with a fixed suffix `{name}.mp3` (a segment ending in the suffix, in any case,
//! after a non-empty stem). When several templates match a path, the first in the table is the
//! resource: `Recording/abc.mp3` is the file of recording `abc`, not a recording named
//! `abc.mp3`.

use axum::http::Method;

use crate::Dialect;

/// One REST operation of API.md §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    ListConferences,
    HangupAllConferences,
    GetConference,
    HangupConference,
    MemberHangup,
    MemberKick,
    MemberMute,
    MemberUnmute,
    MemberDeaf,
    MemberUndeaf,
    MemberPlay,
    MemberStopPlay,
    MemberSpeak,
    MemberStopSpeak,
    RecordStart,
    RecordStop,
    ListRecordings,
    GetRecording,
    DeleteRecording,
    /// The recording's file; the format is the template's suffix ([`Route::file_format`]).
    DownloadRecording,
}

/// A row of the route table: `template` is relative to the dialect prefix of [`PREFIXES`].
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub template: &'static str,
    pub operation: Operation,
}

impl Route {
    /// `mp3` for `/Recording/{recording_id}.mp3`: the suffix after the last placeholder.
    pub fn file_format(&self) -> Option<&'static str> {
        let last = template_segments(self.template).last()?;
        let (_, suffix) = placeholder(last)?;
        suffix.strip_prefix('.').filter(|f| !f.is_empty())
    }
}

/// The dialect prefixes (API.md §2). `{auth_id}` is captured like any placeholder.
pub const PREFIXES: [(Dialect, &str); 2] = [
    (Dialect::Vobiz, "/api/v1/Account/{auth_id}"),
    (Dialect::Plivo, "/v1/Account/{auth_id}"),
];

const CONF: &str = "/Conference/";
const ROOM: &str = "/Conference/{conference_name}/";
const RECORD: &str = "/Conference/{conference_name}/Record/";
const MEMBER: &str = "/Conference/{conference_name}/Member/{member_id}/";
const KICK: &str = "/Conference/{conference_name}/Member/{member_id}/Kick/";
const MUTE: &str = "/Conference/{conference_name}/Member/{member_id}/Mute/";
const DEAF: &str = "/Conference/{conference_name}/Member/{member_id}/Deaf/";
const PLAY: &str = "/Conference/{conference_name}/Member/{member_id}/Play/";
const SPEAK: &str = "/Conference/{conference_name}/Member/{member_id}/Speak/";
const RECORDINGS: &str = "/Recording/";
const RECORDING: &str = "/Recording/{recording_id}/";
const RECORDING_MP3: &str = "/Recording/{recording_id}.mp3";
const RECORDING_WAV: &str = "/Recording/{recording_id}.wav";

macro_rules! route {
    ($method:ident, $template:expr, $op:ident) => {
        Route {
            method: Method::$method,
            template: $template,
            operation: Operation::$op,
        }
    };
}

/// Every REST route: API.md §4 in its order, then the Recording API. The dispatcher serves
/// exactly these, under both prefixes; nothing else under a prefix exists (room-wide
/// Play/Speak in particular). The file routes precede `RECORDING` so that they win.
pub static ROUTES: [Route; 23] = [
    route!(GET, CONF, ListConferences),
    route!(GET, ROOM, GetConference),
    route!(DELETE, ROOM, HangupConference),
    route!(DELETE, CONF, HangupAllConferences),
    route!(DELETE, MEMBER, MemberHangup),
    route!(POST, KICK, MemberKick),
    route!(POST, MUTE, MemberMute),
    route!(DELETE, MUTE, MemberUnmute),
    route!(POST, DEAF, MemberDeaf),
    route!(DELETE, DEAF, MemberUndeaf),
    route!(POST, PLAY, MemberPlay),
    route!(DELETE, PLAY, MemberStopPlay),
    route!(POST, SPEAK, MemberSpeak),
    route!(DELETE, SPEAK, MemberStopSpeak),
    route!(POST, RECORD, RecordStart),
    route!(DELETE, RECORD, RecordStop),
    route!(GET, RECORDINGS, ListRecordings),
    route!(GET, RECORDING_MP3, DownloadRecording),
    route!(HEAD, RECORDING_MP3, DownloadRecording),
    route!(GET, RECORDING_WAV, DownloadRecording),
    route!(HEAD, RECORDING_WAV, DownloadRecording),
    route!(GET, RECORDING, GetRecording),
    route!(DELETE, RECORDING, DeleteRecording),
];

/// A path that names a known resource, with its raw (still percent-encoded) captures.
#[derive(Debug)]
pub struct Matched<'p> {
    pub dialect: Dialect,
    pub auth_id: &'p str,
    pub conference_name: Option<&'p str>,
    pub member_id: Option<&'p str>,
    /// The recording id; for a file route, without the file suffix.
    pub recording_id: Option<&'p str>,
    /// The rows serving this path, one per method; never empty.
    pub routes: Vec<&'static Route>,
}

impl Matched<'_> {
    /// The row for `method`, or the methods the path does allow.
    pub fn route_for(&self, method: &Method) -> Result<&'static Route, Vec<Method>> {
        self.routes
            .iter()
            .find(|r| r.method == *method)
            .copied()
            .ok_or_else(|| self.routes.iter().map(|r| r.method.clone()).collect())
    }
}

/// Matches a raw request path against the table. `None` means no such resource: the plain
/// 404. Fixed segments and suffixes compare ASCII case-insensitively; a single trailing `/` is
/// optional; placeholders take one non-empty segment (or its non-empty stem). The first
/// template that matches decides; its rows are the methods.
pub fn resolve(path: &str) -> Option<Matched<'_>> {
    let path = path.strip_prefix('/')?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    for (dialect, prefix) in PREFIXES {
        let mut found: Option<Matched<'_>> = None;
        for route in &ROUTES {
            let Some(captures) = match_segments(prefix, route.template, &segments) else {
                continue;
            };
            match &mut found {
                Some(m) if m.routes[0].template == route.template => m.routes.push(route),
                Some(_) => {}
                None => {
                    let capture = |name: &str| {
                        captures
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, value)| *value)
                    };
                    found = Some(Matched {
                        dialect,
                        auth_id: capture("auth_id").unwrap_or_default(),
                        conference_name: capture("conference_name"),
                        member_id: capture("member_id"),
                        recording_id: capture("recording_id"),
                        routes: vec![route],
                    });
                }
            }
        }
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The segments of a template (`/a/{b}/` → `a`, `{b}`).
pub fn template_segments(template: &str) -> impl Iterator<Item = &str> {
    template.split('/').filter(|s| !s.is_empty())
}

/// `{name}` → (`name`, ``); `{name}.mp3` → (`name`, `.mp3`); fixed text → `None`.
pub fn placeholder(segment: &str) -> Option<(&str, &str)> {
    segment.strip_prefix('{')?.split_once('}')
}

fn match_segments<'p>(
    prefix: &'static str,
    template: &'static str,
    segments: &[&'p str],
) -> Option<Vec<(&'static str, &'p str)>> {
    let mut wanted = template_segments(prefix).chain(template_segments(template));
    let mut captures = Vec::new();
    for &segment in segments {
        let pattern = wanted.next()?;
        match placeholder(pattern) {
            Some((name, suffix)) => {
                let cut = segment.len().checked_sub(suffix.len())?;
                let stem = segment.get(..cut).filter(|stem| !stem.is_empty())?;
                let tail = segment.get(cut..)?;
                if !tail.eq_ignore_ascii_case(suffix) {
                    return None;
                }
                captures.push((name, stem));
            }
            None if pattern.eq_ignore_ascii_case(segment) => {}
            None => return None,
        }
    }
    wanted.next().is_none().then_some(captures)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn fixed_segments_match_in_any_case_and_the_name_keeps_its_case() {
        let m = resolve("/API/V1/account/MA_X/conference/My%20Room/MEMBER/10,11/kick").unwrap();
        assert_eq!(m.dialect, Dialect::Vobiz);
        assert_eq!(m.auth_id, "MA_X");
        assert_eq!(m.conference_name, Some("My%20Room"));
        assert_eq!(m.member_id, Some("10,11"));
        assert_eq!(m.routes.len(), 1);
        assert_eq!(m.routes[0].operation, Operation::MemberKick);
    }

    #[test]
    fn trailing_slash_is_optional_but_empty_segments_are_not_names() {
        assert!(resolve("/v1/Account/MA/Conference").is_some());
        assert!(resolve("/v1/Account/MA/Conference/").is_some());
        assert!(resolve("/v1/Account/MA/Conference//").is_none());
        assert!(resolve("/v1/Account//Conference/").is_none());
        assert!(resolve("/v1/Account/MA/Conference//Record/").is_none());
    }

    #[test]
    fn a_path_lists_every_method_it_serves() {
        let m = resolve("/v1/Account/MA/Conference/room/Member/all/Mute/").unwrap();
        let methods: Vec<_> = m.routes.iter().map(|r| r.method.clone()).collect();
        assert_eq!(methods, vec![Method::POST, Method::DELETE]);
        assert_eq!(m.route_for(&Method::GET).unwrap_err(), methods);
    }

    #[test]
    fn room_wide_play_and_speak_do_not_exist() {
        assert!(resolve("/api/v1/Account/MA/Conference/room/Play/").is_none());
        assert!(resolve("/api/v1/Account/MA/Conference/room/Speak/").is_none());
        assert!(resolve("/api/v1/Account/MA/Conference/room/Member/").is_none());
        assert!(resolve("/v2/Account/MA/Conference/").is_none());
        assert!(resolve("").is_none());
    }

    #[test]
    fn a_recording_segment_with_a_known_suffix_is_the_file() {
        let m = resolve("/v1/Account/MA/recording/rec-1.MP3").unwrap();
        assert_eq!(m.recording_id, Some("rec-1"));
        let methods: Vec<_> = m.routes.iter().map(|r| r.method.clone()).collect();
        assert_eq!(methods, vec![Method::GET, Method::HEAD]);
        assert_eq!(m.routes[0].operation, Operation::DownloadRecording);
        assert_eq!(m.routes[0].file_format(), Some("mp3"));
        let m = resolve("/api/v1/Account/MA/Recording/rec-1.wav/").unwrap();
        assert_eq!(m.routes[0].file_format(), Some("wav"));

        for (path, id) in [
            ("/v1/Account/MA/Recording/rec-1/", "rec-1"),
            ("/v1/Account/MA/Recording/.mp3", ".mp3"),
            ("/v1/Account/MA/Recording/rec-1.ogg", "rec-1.ogg"),
            ("/v1/Account/MA/Recording/mp3", "mp3"),
        ] {
            let m = resolve(path).unwrap();
            assert_eq!(m.recording_id, Some(id), "{path}");
            let ops: Vec<_> = m.routes.iter().map(|r| r.operation).collect();
            assert_eq!(
                ops,
                vec![Operation::GetRecording, Operation::DeleteRecording],
                "{path}"
            );
            assert_eq!(m.routes[0].file_format(), None);
        }
        assert!(resolve("/v1/Account/MA/Recording/").is_some());
        assert!(resolve("/v1/Account/MA/Recording/rec-1/x").is_none());
        assert!(resolve("/v1/Account/MA/Recording//").is_none());
    }

    #[test]
    fn every_template_pair_is_distinct() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    a.template != b.template || a.method != b.method,
                    "{a:?} duplicates {b:?}"
                );
            }
        }
    }

    #[test]
    fn random_paths_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let alphabet: Vec<char> = "/%aAcCv1{}, é\u{0}?#+".chars().collect();
        let words = [
            "/api",
            "/v1",
            "/Account",
            "/MA",
            "/Conference",
            "/Member",
            "/Kick",
            "/Recording",
            ".mp3",
            ".wAv",
            "é.mp3",
            "/",
        ];
        for _ in 0..20_000 {
            let mut path = String::new();
            for _ in 0..rng.gen_range(0..12) {
                if rng.gen_bool(0.5) {
                    path.push_str(words[rng.gen_range(0..words.len())]);
                } else {
                    path.push(alphabet[rng.gen_range(0..alphabet.len())]);
                }
            }
            let _ = resolve(&path);
        }
    }
}
