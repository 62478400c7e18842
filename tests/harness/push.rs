//! Client-side helpers for the push tests: a WebSocket JMAP client, an EventSource reader and
//! Mailbox mutations, all over the wire.
#![allow(dead_code)]

use std::time::Duration;

use actix_codec::Framed;
use awc::BoxedSocket;
use awc::ws::{Codec, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use super::{Auth, CORE, TestServer, authorize};

pub const MAIL: &str = "urn:ietf:params:jmap:mail";
/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

pub type Ws = Framed<BoxedSocket, Codec>;

/// A client without awc's overall response timeout (it would cut long streams).
pub fn stream_client() -> awc::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    awc::Client::builder()
        .disable_timeout()
        .max_http_version(awc::http::Version::HTTP_11)
        .finish()
}

/// The user's personal account id, from the session.
pub async fn account_id(s: &TestServer, auth: &Auth) -> String {
    let session = s.get("/jmap/session", auth).await.body;
    session["primaryAccounts"][MAIL]
        .as_str()
        .expect("a mail account")
        .to_owned()
}

/// The id of the account's inbox.
pub async fn inbox_id(s: &TestServer, auth: &Auth, account: &str) -> String {
    role_id(s, auth, account, "inbox").await
}

/// The id of the account's mailbox with `role`.
pub async fn role_id(s: &TestServer, auth: &Auth, account: &str, role: &str) -> String {
    let r = s
        .call(
            auth,
            &[CORE, MAIL],
            json!([["Mailbox/query", {"accountId": account, "filter": {"role": role}}, "0"]]),
        )
        .await;
    r[0][1]["ids"][0]
        .as_str()
        .unwrap_or_else(|| panic!("a mailbox with role {role}: {r:?}"))
        .to_owned()
}

/// Creates a mailbox; returns the Mailbox state after it (newState).
pub async fn create_mailbox(s: &TestServer, auth: &Auth, account: &str, name: &str) -> String {
    let r = s
        .call(
            auth,
            &[CORE, MAIL],
            json!([["Mailbox/set", {"accountId": account, "create": {"k": {"name": name}}}, "0"]]),
        )
        .await;
    assert_eq!(r[0][0], "Mailbox/set", "{r:?}");
    assert!(r[0][1]["created"]["k"]["id"].is_string(), "{r:?}");
    r[0][1]["newState"].as_str().unwrap().to_owned()
}

/// Creates one mailbox per name, each in its own method call (its own write) of one request;
/// returns the Mailbox state after the last.
pub async fn create_mailboxes(
    s: &TestServer,
    auth: &Auth,
    account: &str,
    names: &[&str],
) -> String {
    let calls: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| json!(["Mailbox/set", {"accountId": account, "create": {"k": {"name": name}}}, format!("c{i}")]))
        .collect();
    let r = s.call(auth, &[CORE, MAIL], Value::Array(calls)).await;
    assert!(
        r.iter().all(|c| c[1]["created"]["k"]["id"].is_string()),
        "{r:?}"
    );
    r.last().unwrap()[1]["newState"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates a mailbox and renames it `writes` times, `per_request` Mailbox/set calls (one write
/// each) to a request, so a stream that does not read meanwhile has that many changes to catch
/// up with; returns the Mailbox state after the last. The server must allow `per_request` calls
/// in a request.
pub async fn rename_mailbox_many_times(
    s: &TestServer,
    auth: &Auth,
    account: &str,
    writes: usize,
    per_request: usize,
) -> String {
    let r = s
        .call(
            auth,
            &[CORE, MAIL],
            json!([["Mailbox/set", {"accountId": account, "create": {"k": {"name": "n"}}}, "0"]]),
        )
        .await;
    let id = r[0][1]["created"]["k"]["id"].as_str().unwrap().to_owned();
    let mut last_state = String::new();
    for batch in 0..writes.div_ceil(per_request) {
        let calls: Vec<Value> = (batch * per_request..writes.min((batch + 1) * per_request))
            .map(|n| json!(["Mailbox/set", {"accountId": account, "update": {&id: {"name": format!("n{n}")}}}, format!("c{n}")]))
            .collect();
        let r = s.call(auth, &[CORE, MAIL], Value::Array(calls)).await;
        assert!(
            r.iter()
                .all(|c| c[0] == "Mailbox/set" && c[1]["updated"].is_object()),
            "{:?}",
            r[0]
        );
        r.last().unwrap()[1]["newState"]
            .as_str()
            .unwrap()
            .clone_into(&mut last_state);
    }
    last_state
}

/// The current Mailbox state (Mailbox/get).
pub async fn mailbox_state(s: &TestServer, auth: &Auth, account: &str) -> String {
    let r = s
        .call(
            auth,
            &[CORE, MAIL],
            json!([["Mailbox/get", {"accountId": account, "ids": []}, "0"]]),
        )
        .await;
    r[0][1]["state"].as_str().unwrap().to_owned()
}

pub fn ws_url(s: &TestServer) -> String {
    format!("{}/jmap/ws", s.base.replacen("http://", "ws://", 1))
}

/// Opens a JMAP WebSocket (subprotocol `jmap`).
pub async fn ws_connect(s: &TestServer, auth: &Auth) -> Ws {
    ws_try(s, auth, &["jmap"]).await.expect("WebSocket upgrade")
}

/// Tries a WebSocket upgrade offering `protocols`.
pub async fn ws_try(s: &TestServer, auth: &Auth, protocols: &[&str]) -> Result<Ws, String> {
    ws_try_url(&ws_url(s), auth, protocols).await
}

pub async fn ws_try_url(url: &str, auth: &Auth, protocols: &[&str]) -> Result<Ws, String> {
    let mut req = stream_client().ws(url).max_frame_size(16 << 20);
    if !protocols.is_empty() {
        req = req.protocols(protocols.iter().copied());
    }
    req = match auth {
        Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
        Auth::Bearer(t) => req.bearer_auth(t),
        Auth::None => req,
    };
    match req.connect().await {
        Ok((res, framed)) => {
            let proto = res
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            // WS-04: the 101 names the subprotocol.
            assert_eq!(proto, "jmap");
            Ok(framed)
        }
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => Err(status.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// The next JSON text message, answering pings; `None` when the socket closes.
pub async fn ws_next(ws: &mut Ws) -> Option<Value> {
    let read = async {
        loop {
            match ws.next().await? {
                Ok(Frame::Text(bytes)) => {
                    return Some(serde_json::from_slice(&bytes).expect("JSON message"));
                }
                Ok(Frame::Ping(p)) => {
                    let _ = ws.send(Message::Pong(p)).await;
                }
                Ok(Frame::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    actix_web::rt::time::timeout(WAIT, read)
        .await
        .expect("a WebSocket message in time")
}

/// Sends a Request with `id` and returns its Response (StateChanges met meanwhile are returned too).
pub async fn ws_request(ws: &mut Ws, id: &str, calls: Value) -> (Value, Vec<Value>) {
    ws_send(
        ws,
        json!({"@type": "Request", "id": id, "using": [CORE, MAIL], "methodCalls": calls}),
    )
    .await;
    let mut others = Vec::new();
    loop {
        let m = ws_next(ws).await.expect("socket open");
        if m["requestId"] == id {
            return (m, others);
        }
        others.push(m);
    }
}

/// Enables push and waits until the server has processed it (an echo sent after it comes back:
/// the session handles PushEnable before the next message).
pub async fn ws_push_enable(ws: &mut Ws, enable: Value) -> Vec<Value> {
    ws_send(ws, enable).await;
    let (response, others) = ws_request(ws, "sync", json!([["Core/echo", {}, "0"]])).await;
    assert_eq!(response["@type"], "Response");
    others
}

/// A WebSocket of `auth` with push on for every type, ready to hear changes.
pub async fn ws_pushed_everything(s: &TestServer, auth: &Auth) -> Ws {
    let mut ws = ws_connect(s, auth).await;
    ws_push_enable(
        &mut ws,
        json!({"@type": "WebSocketPushEnable", "dataTypes": null}),
    )
    .await;
    ws
}

/// An EventSource of `auth` for every type, never closing, without pings, ready to hear changes.
pub async fn sse_everything(s: &TestServer, auth: &Auth) -> Sse {
    let mut sse = sse_open(
        s,
        auth,
        "/jmap/eventsource/?types=*&closeafter=no&ping=0",
        None,
    )
    .await;
    sse.ready().await;
    sse
}

/// Reads StateChanges until one reports `account`'s Mailbox state as `state`; returns them all.
pub async fn ws_until_mailbox_state(ws: &mut Ws, account: &str, state: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = ws_next(ws).await.expect("socket open");
        assert_eq!(m["@type"], "StateChange", "{m}");
        let done = m["changed"][account]["Mailbox"] == state;
        seen.push(m);
        if done {
            return seen;
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    /// A comment-only block.
    pub comment: bool,
}

/// Reads an SSE response block by block.
pub struct Sse {
    res: std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>,
        >,
    >,
    buf: String,
    pub status: awc::http::StatusCode,
    pub headers: awc::http::header::HeaderMap,
}

/// Opens an EventSource stream on `path_and_query` (relative to the base URL).
pub async fn sse_open(
    s: &TestServer,
    auth: &Auth,
    path_and_query: &str,
    last_event_id: Option<&str>,
) -> Sse {
    sse_open_url(&s.url(path_and_query), auth, last_event_id).await
}

/// Opens an EventSource stream at `url` (a server this process did not start).
pub async fn sse_open_url(url: &str, auth: &Auth, last_event_id: Option<&str>) -> Sse {
    let mut req =
        authorize(stream_client().get(url), auth).insert_header(("Accept", "text/event-stream"));
    if let Some(id) = last_event_id {
        req = req.insert_header(("Last-Event-ID", id));
    }
    let res = actix_web::rt::time::timeout(WAIT, req.send())
        .await
        .expect("headers in time")
        .expect("GET");
    let status = res.status();
    let headers = res.headers().clone();
    Sse {
        res: Box::pin(res),
        buf: String::new(),
        status,
        headers,
    }
}

impl Sse {
    /// The next event or comment line; `None` when the stream ends. Parsed line by line as the
    /// SSE spec says: a comment line stands alone, and a blank line dispatches the fields read
    /// since the previous one (if any).
    pub async fn next(&mut self) -> Option<Event> {
        let read = async {
            let mut e = Event::default();
            let mut has_fields = false;
            loop {
                while let Some(end) = self.buf.find('\n') {
                    let line: String = self.buf.drain(..end + 1).collect();
                    let line = line.trim_end_matches(['\n', '\r']);
                    if line.is_empty() {
                        if has_fields {
                            e.comment = false;
                            return Some(e);
                        }
                        continue;
                    }
                    if line.starts_with(':') {
                        if !has_fields {
                            return Some(Event {
                                comment: true,
                                ..Event::default()
                            });
                        }
                        continue;
                    }
                    has_fields = true;
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => e.event = value.to_owned(),
                        "id" => e.id = Some(value.to_owned()),
                        "data" => e.data.push_str(value),
                        _ => {}
                    }
                }
                match self.res.next().await? {
                    Ok(chunk) => self
                        .buf
                        .push_str(std::str::from_utf8(&chunk).expect("UTF-8")),
                    Err(_) => return None,
                }
            }
        };
        actix_web::rt::time::timeout(WAIT, read)
            .await
            .expect("an event (or the end) in time")
    }

    /// The next event that is not a comment.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            let e = self.next().await?;
            if !e.comment {
                return Some(e);
            }
        }
    }

    /// Waits for the comment that says the stream is subscribed.
    pub async fn ready(&mut self) {
        let e = self.next().await.expect("the stream's first block");
        assert!(e.comment, "{e:?}");
    }

    /// Reads `state` events until one reports `account`'s Mailbox state as `state`.
    pub async fn until_mailbox_state(&mut self, account: &str, state: &str) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let e = self.next_event().await.expect("stream open");
            if e.event != "state" {
                continue;
            }
            let data: Value = serde_json::from_str(&e.data).unwrap();
            let done = data["changed"][account]["Mailbox"] == state;
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}
