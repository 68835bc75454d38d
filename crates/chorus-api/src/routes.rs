//! The REST route table (API.md §4) and the path matcher the dispatcher runs on it.
//!
//! axum's router is case-sensitive and treats `/x` and `/x/` as different routes, while
//! API.md §2 and §15.1 want the fixed segments matched case-insensitively, the trailing slash
//! optional and the conference name kept case-sensitive. So the REST surface is one fallback
//! handler that matches the raw path against [`ROUTES`] itself. The same table feeds the
//! OpenAPI document, so the two cannot drift apart.

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
}

/// A row of the route table: `template` is relative to the dialect prefix of [`PREFIXES`].
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub template: &'static str,
    pub operation: Operation,
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

macro_rules! route {
    ($method:ident, $template:expr, $op:ident) => {
        Route {
            method: Method::$method,
            template: $template,
            operation: Operation::$op,
        }
    };
}

/// Every REST route, in API.md §4 order. The dispatcher serves exactly these, under both
/// prefixes; nothing else under a prefix exists (room-wide Play/Speak in particular).
pub static ROUTES: [Route; 16] = [
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
];

/// A path that names a known resource, with its raw (still percent-encoded) captures.
#[derive(Debug)]
pub struct Matched<'p> {
    pub dialect: Dialect,
    pub auth_id: &'p str,
    pub conference_name: Option<&'p str>,
    pub member_id: Option<&'p str>,
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
/// 404. Fixed segments compare ASCII case-insensitively; a single trailing `/` is optional;
/// placeholders take one non-empty segment.
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
                Some(m) => m.routes.push(route),
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

fn match_segments<'p>(
    prefix: &'static str,
    template: &'static str,
    segments: &[&'p str],
) -> Option<Vec<(&'static str, &'p str)>> {
    let mut wanted = template_segments(prefix).chain(template_segments(template));
    let mut captures = Vec::new();
    for &segment in segments {
        let pattern = wanted.next()?;
        match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) if !segment.is_empty() => captures.push((name, segment)),
            Some(_) => return None,
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
