//! JMAP over WebSocket at `/jmap/ws` (RFC 8887).
//!
//! One `WsSession` actor per connection. Requests run through the same Dispatcher and per-user
//! `maxConcurrentRequests` as HTTP, concurrently, so a slow request never delays a push; answers
//! carry `requestId` (RFC 8887 §4.3.3). Push changes arrive through the connection's
//! [`ChangeSlot`] (coalesced: at most one state per account and type) and go out as StateChange
//! messages carrying `pushState` (RFC 8887 §4.3.5.1).

use crate::metrics;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::http::header::{
    HeaderValue, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;
use bytestring::ByteString;
use serde_json::{Map, Value, json};

use super::slot_session::SlotSession;
use super::{AppState, problem, ticket};
use crate::dispatcher::{AuthenticatedRun, PushBaseline, RunStreamRequest};
use crate::jmap::error::RequestError;
use crate::jmap::json::parse_strict;
use crate::jmap::request::request_from_object;
use crate::jmap::session::Principal;
use crate::push::budget::StateChangeBudget;
use crate::push::connections::ConnectionSlot;
use crate::push::frame;
use crate::push::position::{self, Changed, Positions};
use crate::push::registry::{Subscribe, Unsubscribe};
use crate::push::slot::{ChangeSlot, Closing, TypeFilter};
use crate::push::wake::{Wake, WakeSignal};

use super::ws_frames::FrameLengthGuard;

/// `GET /jmap/ws`: the upgrade. The client must offer the `jmap` subprotocol (RFC 8887 §4.2;
/// actix only echoes a match, so it is checked here: ../shared/STACK.md pitfall 10).
pub async fn upgrade(
    state: web::Data<AppState>,
    req: HttpRequest,
    stream: web::Payload,
) -> HttpResponse {
    let offers_jmap = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "jmap");
    if !offers_jmap {
        return problem::status(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol \"jmap\" is required (RFC 8887 §4.2)",
        );
    }
    if let Some(refusal) = handshake_refusal(&req) {
        return refusal;
    }
    let principal = match ticket::authenticate_stream(&state, &req).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let place = match state.push.caps.try_acquire(&principal.user_id) {
        Ok(p) => p,
        Err(e) => return ticket::cap_refused(e),
    };
    let max_message = state.server.limits.max_size_request as usize;
    let refused = Rc::new(Cell::new(false));
    let stream = FrameLengthGuard::new(stream, max_message, refused.clone());
    let session = WsSession::new(principal, state.into_inner(), place, refused);
    match ws::WsResponseBuilder::new(session, &req, stream)
        .protocols(&["jmap"])
        .frame_size(max_message)
        .start()
    {
        Ok(response) => response,
        Err(e) => e.error_response(),
    }
}

/// What actix's handshake lets through but RFC 6455 §4.2.1 does not: a version other than 13
/// (answered 426 with the version we speak, §4.4) or a key that is not 16 bytes in base64.
fn handshake_refusal(req: &HttpRequest) -> Option<HttpResponse> {
    use base64::Engine;
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if header(SEC_WEBSOCKET_VERSION).map(str::trim) != Some("13") {
        let mut refusal = problem::status(
            StatusCode::UPGRADE_REQUIRED,
            "Sec-WebSocket-Version must be 13 (RFC 6455 §4.2.1)",
        );
        refusal
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return Some(refusal);
    }
    let key_is_16_bytes = header(SEC_WEBSOCKET_KEY)
        .and_then(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .ok()
        })
        .is_some_and(|k| k.len() == 16);
    (!key_is_16_bytes).then(|| {
        problem::status(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 §4.2.1)",
        )
    })
}

/// One WebSocket connection.
pub struct WsSession {
    principal: Principal,
    app: Arc<AppState>,
    slot: Arc<ChangeSlot>,
    subscription: Option<u64>,
    /// The last time the client sent anything (frames, pings, pongs).
    last_seen: Instant,
    /// Caps StateChanges per second (`push.max_state_changes_per_sec`).
    budget: StateChangeBudget,
    /// A flush waits for the budget's next token.
    flush_scheduled: bool,
    /// Counts PushEnable/PushDisable, so an outdated baseline answer is ignored.
    push_epoch: u64,
    /// A fragmented message being reassembled: (is text, bytes so far).
    fragments: Option<(bool, BytesMut)>,
    /// Set by the [`FrameLengthGuard`] when it refused an oversized message.
    refused: Rc<Cell<bool>>,
    _place: ConnectionSlot,
}

impl WsSession {
    fn new(
        principal: Principal,
        app: Arc<AppState>,
        place: ConnectionSlot,
        refused: Rc<Cell<bool>>,
    ) -> Self {
        let budget =
            StateChangeBudget::new(app.push.config.max_state_changes_per_sec, Instant::now());
        WsSession {
            principal,
            app,
            slot: Arc::new(ChangeSlot::for_transport(
                TypeFilter::Off,
                metrics::WEBSOCKET,
            )),
            subscription: None,
            last_seen: Instant::now(),
            budget,
            flush_scheduled: false,
            push_epoch: 0,
            fragments: None,
            refused,
            _place: place,
        }
    }

    fn max_message(&self) -> usize {
        self.app.server.limits.max_size_request as usize
    }

    /// Sends a RequestError (RFC 8887 §4.3.4): the problem object plus `@type` and `requestId`.
    fn request_error(ctx: &mut ws::WebsocketContext<Self>, e: &RequestError, id: Option<&Value>) {
        let mut problem = e.to_problem();
        problem["@type"] = json!("RequestError");
        problem["requestId"] = id.cloned().unwrap_or(Value::Null);
        ctx.text(problem.to_string());
    }

    /// One text message: a Request, WebSocketPushEnable or WebSocketPushDisable (RFC 8887 §4.3).
    fn on_message(&mut self, bytes: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        if bytes.len() > self.max_message() {
            let e = RequestError::limit(
                "maxSizeRequest",
                format!("the message is larger than {} octets", self.max_message()),
            );
            return Self::request_error(ctx, &e, None);
        }
        let mut obj = match parse_strict(bytes) {
            Ok(Value::Object(obj)) => obj,
            Ok(_) => {
                let e = RequestError::not_request("a message is one JSON object");
                return Self::request_error(ctx, &e, None);
            }
            Err(why) => {
                let e = RequestError::not_json(format!("the message is not valid I-JSON: {why}"));
                return Self::request_error(ctx, &e, None);
            }
        };
        let id = match obj.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Value::String(s)),
            Some(_) => {
                let e = RequestError::not_request("\"id\" must be a string");
                return Self::request_error(ctx, &e, None);
            }
        };
        let kind = obj.remove("@type");
        match kind.as_ref().and_then(Value::as_str) {
            Some("Request") => self.run_request(obj, id, ctx),
            Some("WebSocketPushEnable") => self.push_enable(obj, id, ctx),
            Some("WebSocketPushDisable") => {
                // RFC 8887 §4.3.5.3
                self.push_epoch += 1;
                self.slot.set_filter(TypeFilter::Off);
            }
            _ => {
                let e = RequestError::not_request(format!(
                    "unknown @type {}: expected Request, WebSocketPushEnable or WebSocketPushDisable",
                    kind.unwrap_or(Value::Null)
                ));
                Self::request_error(ctx, &e, id.as_ref());
            }
        }
    }

    /// Runs a Request concurrently with everything else on the connection (RFC 8887 §4.3.2).
    fn run_request(
        &mut self,
        obj: Map<String, Value>,
        id: Option<Value>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let request = match request_from_object(obj) {
            Ok(r) => r,
            Err(e) => return Self::request_error(ctx, &e, id.as_ref()),
        };
        let limit = self.app.server.limits.max_concurrent_requests;
        // RFC 8887 §4.3.2: maxConcurrentRequests counts WebSocket and HTTP requests together.
        let Some(running) = self
            .app
            .requests
            .try_acquire(&self.principal.user_id, limit)
        else {
            let e = RequestError::limit(
                "maxConcurrentRequests",
                format!("at most {limit} requests may run at once"),
            );
            return Self::request_error(ctx, &e, id.as_ref());
        };
        self.app
            .dispatcher
            .send(RunStreamRequest {
                principal: self.principal.clone(),
                request,
                queued_at: Instant::now(),
            })
            .into_actor(self)
            .map(move |result, _, ctx| {
                drop(running);
                match result {
                    Ok(Ok(AuthenticatedRun::Refused)) => {
                        // RFC 8887 §4.2 (WS-03): credentials revoked or changed since the
                        // socket opened: nothing runs, and the socket closes with 1008.
                        ctx.close(Some(ws::CloseReason {
                            code: ws::CloseCode::Policy,
                            description: Some(
                                "the credentials of this connection no longer hold".into(),
                            ),
                        }));
                        ctx.stop();
                    }
                    Ok(Ok(AuthenticatedRun::Ran(Ok(response)))) => {
                        let mut out = Map::new();
                        out.insert("@type".into(), json!("Response"));
                        if let Some(id) = id {
                            out.insert("requestId".into(), id);
                        }
                        out.extend(response.to_json());
                        ctx.text(Value::Object(out).to_string());
                    }
                    Ok(Ok(AuthenticatedRun::Ran(Err(e)))) => {
                        Self::request_error(ctx, &e, id.as_ref());
                    }
                    Ok(Err(e)) => {
                        log::error!("WebSocket request: {e}");
                        ctx.text(unavailable(id.as_ref()).to_string());
                    }
                    Err(e) => {
                        log::error!("WebSocket request: {e}");
                        ctx.text(unavailable(id.as_ref()).to_string());
                    }
                }
            })
            .spawn(ctx);
    }

    /// `WebSocketPushEnable` (RFC 8887 §4.3.5.2): push the listed types (all for `null`); with
    /// `pushState`, first send at once everything changed since it.
    fn push_enable(
        &mut self,
        mut obj: Map<String, Value>,
        id: Option<Value>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let filter = match obj.remove("dataTypes") {
            None | Some(Value::Null) => TypeFilter::All,
            Some(Value::Array(items)) => {
                let mut types = std::collections::BTreeSet::new();
                for item in items {
                    match item {
                        Value::String(t) => {
                            types.insert(t);
                        }
                        _ => {
                            let e = RequestError::not_request("\"dataTypes\" holds only strings");
                            return Self::request_error(ctx, &e, id.as_ref());
                        }
                    }
                }
                TypeFilter::Only(types)
            }
            Some(_) => {
                let e = RequestError::not_request("\"dataTypes\" is an array of strings or null");
                return Self::request_error(ctx, &e, id.as_ref());
            }
        };
        let since: Option<Option<Positions>> = match obj.remove("pushState") {
            None | Some(Value::Null) => None,
            // A token we never issued: the client is told every type changed.
            Some(Value::String(token)) => Some(position::decode(&token)),
            Some(_) => {
                let e = RequestError::not_request("\"pushState\" is a string");
                return Self::request_error(ctx, &e, id.as_ref());
            }
        };
        self.push_epoch += 1;
        let epoch = self.push_epoch;
        self.slot.set_filter(filter);
        let resumed = since.is_some();
        let accounts = baseline_query(&self.principal, since.as_ref());
        self.app
            .dispatcher
            .send(PushBaseline { accounts })
            .into_actor(self)
            .map(move |result, act, ctx| {
                if act.push_epoch != epoch {
                    return;
                }
                match result {
                    Ok(Ok(found)) => {
                        let (positions, missed) = split_baseline(found);
                        if act.slot.baseline(positions, missed, resumed) {
                            act.flush(ctx);
                        }
                    }
                    Ok(Err(e)) => {
                        log::error!("push baseline: {e}");
                        ctx.text(unavailable(id.as_ref()).to_string());
                    }
                    Err(e) => {
                        log::error!("push baseline: {e}");
                        ctx.text(unavailable(id.as_ref()).to_string());
                    }
                }
            })
            .wait(ctx);
    }

    fn on_fragment(&mut self, item: actix_http::ws::Item, ctx: &mut ws::WebsocketContext<Self>) {
        let (first, text, last, data) = match item {
            actix_http::ws::Item::FirstText(d) => (true, true, false, d),
            actix_http::ws::Item::FirstBinary(d) => (true, false, false, d),
            actix_http::ws::Item::Continue(d) => (false, false, false, d),
            actix_http::ws::Item::Last(d) => (false, false, true, d),
        };
        if first {
            self.fragments = Some((text, BytesMut::from(&data[..])));
        } else if let Some((_, buf)) = self.fragments.as_mut() {
            let max = self.app.server.limits.max_size_request as usize;
            if buf.len() + data.len() > max {
                self.fragments = None;
                let e = RequestError::limit(
                    "maxSizeRequest",
                    format!("the message is larger than {max} octets"),
                );
                return Self::request_error(ctx, &e, None);
            }
            buf.extend_from_slice(&data);
        }
        if last && let Some((text, buf)) = self.fragments.take() {
            let message: Bytes = buf.freeze();
            if text {
                self.on_message(&message, ctx);
            } else {
                Self::request_error(ctx, &binary_error(), None);
            }
        }
    }
}

impl SlotSession for WsSession {
    const TRANSPORT: frame::Transport = frame::Transport::WebSocket;

    fn pacing(&mut self) -> (&ChangeSlot, &mut StateChangeBudget, &mut bool) {
        (&self.slot, &mut self.budget, &mut self.flush_scheduled)
    }

    /// One StateChange in a text frame.
    fn write_frame(&mut self, frame: ByteString, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.text(frame);
    }
}

fn binary_error() -> RequestError {
    RequestError::not_json("binary messages are not JMAP messages; send UTF-8 JSON in text frames")
}

/// A store failure while answering: not a JMAP request error, so a plain problem (503).
fn unavailable(id: Option<&Value>) -> Value {
    json!({
        "@type": "RequestError",
        "type": "about:blank",
        "status": 503,
        "detail": "the server cannot answer now; try again",
        "requestId": id.cloned().unwrap_or(Value::Null),
    })
}

/// The accounts to ask the store about when a push stream starts: each readable account with the
/// position to compare against (`None`: just the current position; `Some(-1)`: unknown, so every
/// type changed).
pub(super) fn baseline_query(
    principal: &Principal,
    since: Option<&Option<Positions>>,
) -> Vec<(String, Option<i64>)> {
    principal
        .accounts
        .iter()
        .map(|a| {
            let since = match since {
                None => None,
                Some(None) => Some(-1),
                Some(Some(positions)) => Some(positions.get(&a.account_id).copied().unwrap_or(-1)),
            };
            (a.account_id.clone(), since)
        })
        .collect()
}

/// Splits the store's answer into positions and missed changes.
pub(super) fn split_baseline(
    found: Vec<crate::dispatcher::AccountPosition>,
) -> (Positions, Changed) {
    let mut positions = Positions::new();
    let mut missed = Changed::new();
    for a in found {
        positions.insert(a.account_id.clone(), a.seq);
        if !a.changed.is_empty() {
            missed.insert(a.account_id, a.changed);
        }
    }
    (positions, missed)
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::metrics()
            .push_connections
            .with_label_values(&[metrics::WEBSOCKET])
            .inc();
        let heartbeat = Duration::from_secs(self.app.push.config.heartbeat_secs.max(1));
        let idle = Duration::from_secs(self.app.push.config.idle_timeout_secs.max(1));
        ctx.run_interval(heartbeat, move |act, ctx| {
            if act.last_seen.elapsed() > idle {
                log::info!("WebSocket of {} idle; closing", act.principal.username);
                ctx.close(Some(ws::CloseCode::Away.into()));
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
        let (wake, wakes) = WakeSignal::pair();
        ctx.add_stream(wakes);
        let subscribe = Subscribe::session(&self.principal, self.slot.clone(), wake);
        self.app
            .push
            .registry
            .send(subscribe)
            .into_actor(self)
            .map(|result, act, ctx| match result {
                Ok(id) => act.subscription = Some(id),
                Err(e) => {
                    log::error!("push registry: {e}");
                    ctx.stop();
                }
            })
            .wait(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if let Some(id) = self.subscription.take() {
            self.app.push.registry.do_send(Unsubscribe(id));
        }
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::metrics()
            .push_connections
            .with_label_values(&[metrics::WEBSOCKET])
            .dec();
    }
}

impl StreamHandler<Wake> for WsSession {
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        match self.slot.closing() {
            // RFC 8887 §4.2: close with 1008 (policy violation) when access is gone.
            Some(Closing::AccessRevoked) => {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Policy,
                    description: Some(
                        "access to every account of this connection was revoked".into(),
                    ),
                }));
                ctx.stop();
                return;
            }
            // RFC 6455 §7.4.1: 1001, the server is going away.
            Some(Closing::ServerStopping) => {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("the server is stopping".into()),
                }));
                ctx.stop();
                return;
            }
            None => {}
        }
        self.flush(ctx);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                if self.refused.get() || matches!(e, ws::ProtocolError::Overflow) {
                    // RFC 6455 §7.4.1: 1009, a message too big to process.
                    let max = self.max_message();
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::Size,
                        description: Some(format!(
                            "a message is over {max} octets (maxSizeRequest)"
                        )),
                    }));
                } else {
                    log::debug!("WebSocket protocol error: {e}");
                }
                ctx.stop();
                return;
            }
        };
        self.last_seen = Instant::now();
        match msg {
            ws::Message::Text(text) => self.on_message(text.as_bytes(), ctx),
            // RFC 8887 §4.3.1 allows ignoring or closing; a RequestError tells the client why.
            ws::Message::Binary(_) => Self::request_error(ctx, &binary_error(), None),
            ws::Message::Continuation(item) => self.on_fragment(item, ctx),
            ws::Message::Ping(data) => ctx.pong(&data),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
