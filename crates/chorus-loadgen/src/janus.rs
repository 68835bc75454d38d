//! Janus AudioBridge through its plain-HTTP REST API: one session; one handle that creates
//! (and at the end destroys) the rooms; one handle per participant that `join`s with a plain
//! RTP endpoint. Janus answers a `join` with an `ack` and delivers the `joined` event, which
//! carries Janus' own RTP address, through the session's long poll (`GET /janus/<session>`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::audio::Codec;
use crate::http::{request, Url};

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Janus {
    base: Url,
    session: u64,
    admin: u64,
    transactions: u64,
    /// `joined` events seen on the long poll, by handle: Janus' RTP address and payload type.
    joined: HashMap<u64, (SocketAddr, Option<u8>)>,
    /// Plugin errors seen on the long poll, by handle.
    errors: HashMap<u64, String>,
    pub rooms: Vec<u64>,
}

impl Janus {
    pub fn connect(base: &str) -> anyhow::Result<Janus> {
        let base = Url::parse(base)?;
        let mut j = Janus {
            base,
            session: 0,
            admin: 0,
            transactions: 0,
            joined: HashMap::new(),
            errors: HashMap::new(),
            rooms: Vec::new(),
        };
        let r = j.post("", json!({"janus": "create"}))?;
        j.session = id_of(&r).context("session id in Janus' create answer")?;
        j.admin = j.attach()?;
        Ok(j)
    }

    fn post(&mut self, path: &str, mut body: Value) -> anyhow::Result<Value> {
        self.transactions += 1;
        body["transaction"] = json!(format!("lg{}", self.transactions));
        let url = self.base.join(path);
        let (status, text) = request("POST", &url, Some(&body.to_string()), TIMEOUT)?;
        if status != 200 {
            bail!("Janus answered HTTP {status}: {text}");
        }
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("Janus JSON: {text}"))?;
        if v["janus"] == "error" {
            bail!("Janus error: {}", v["error"]);
        }
        Ok(v)
    }

    pub fn attach(&mut self) -> anyhow::Result<u64> {
        let r = self.post(
            &format!("/{}", self.session),
            json!({"janus": "attach", "plugin": "janus.plugin.audiobridge"}),
        )?;
        id_of(&r).context("handle id in Janus' attach answer")
    }

    fn message(&mut self, handle: u64, body: Value) -> anyhow::Result<Value> {
        self.post(
            &format!("/{}/{}", self.session, handle),
            json!({"janus": "message", "body": body}),
        )
    }

    pub fn create_room(&mut self, room: u64, codec: Codec) -> anyhow::Result<()> {
        let r = self.message(
            self.admin,
            json!({
                "request": "create",
                "room": room,
                "description": format!("loadgen {room}"),
                "sampling_rate": codec.rate(),
                "record": false,
                "permanent": false,
                "audiolevel_event": false,
                "allow_rtp_participants": true,
            }),
        )?;
        let data = &r["plugindata"]["data"];
        if data["audiobridge"] != "created" {
            bail!("creating room {room}: {r}");
        }
        self.rooms.push(room);
        Ok(())
    }

    /// Joins `room` from a new handle with a plain RTP endpoint at `ours`; returns Janus' RTP
    /// address and payload type.
    pub fn join(
        &mut self,
        room: u64,
        display: &str,
        codec: Codec,
        ours: SocketAddr,
    ) -> anyhow::Result<(SocketAddr, u8)> {
        let handle = self.attach()?;
        let r = self.message(
            handle,
            json!({
                "request": "join",
                "room": room,
                "display": display,
                "codec": codec.name(),
                "rtp": {
                    "ip": ours.ip().to_string(),
                    "port": ours.port(),
                    "payload_type": codec.payload_type(),
                },
            }),
        )?;
        if r["janus"] == "success" {
            self.note_event(handle, &r);
        }
        if let Some(e) = r["plugindata"]["data"].get("error") {
            bail!("Janus refused the join: {e}");
        }
        let until = Instant::now() + TIMEOUT;
        while Instant::now() < until {
            if let Some((addr, pt)) = self.joined.remove(&handle) {
                return Ok((addr, pt.unwrap_or(codec.payload_type())));
            }
            if let Some(e) = self.errors.remove(&handle) {
                bail!("Janus refused the join: {e}");
            }
            self.poll_events()?;
        }
        bail!("no `joined` event for handle {handle} in room {room}")
    }

    fn note_event(&mut self, sender: u64, ev: &Value) {
        let data = &ev["plugindata"]["data"];
        if let Some(e) = data.get("error") {
            self.errors.insert(sender, e.to_string());
        }
        if data["audiobridge"] != "joined" {
            return;
        }
        let rtp = &data["rtp"];
        let ip = rtp["ip"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
        let port = rtp["port"].as_u64().and_then(|p| u16::try_from(p).ok());
        let pt = rtp["payload_type"]
            .as_u64()
            .and_then(|p| u8::try_from(p).ok());
        if let (Some(ip), Some(port)) = (ip, port) {
            self.joined.insert(sender, (SocketAddr::new(ip, port), pt));
        }
        // Without `rtp`, a `joined` event tells an existing participant about a newcomer.
    }

    /// One long poll for session events (returns at once when events are queued).
    fn poll_events(&mut self) -> anyhow::Result<()> {
        let url = self.base.join(&format!(
            "/{}?maxev=50&rid={}",
            self.session, self.transactions
        ));
        self.transactions += 1;
        let (status, text) = request("GET", &url, None, Duration::from_secs(35))?;
        if status != 200 {
            bail!("Janus long poll answered HTTP {status}: {text}");
        }
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("Janus JSON: {text}"))?;
        let events = match v {
            Value::Array(a) => a,
            one => vec![one],
        };
        for ev in &events {
            if let Some(sender) = ev["sender"].as_u64() {
                self.note_event(sender, ev);
            }
        }
        Ok(())
    }

    /// Destroys the rooms this run created and the session (which detaches every handle).
    pub fn teardown(&mut self) -> anyhow::Result<()> {
        for room in std::mem::take(&mut self.rooms) {
            if let Err(e) = self.message(self.admin, json!({"request": "destroy", "room": room})) {
                eprintln!("janus: destroying room {room}: {e:#}");
            }
        }
        self.post(&format!("/{}", self.session), json!({"janus": "destroy"}))?;
        Ok(())
    }
}

fn id_of(v: &Value) -> Option<u64> {
    v["data"]["id"].as_u64()
}
