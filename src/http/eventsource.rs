//! EventSource push at `/jmap/eventsource/` (RFC 8620 §7.3).
//!
//! One `EventSourceSession` actor per stream, run by the response body itself
//! (`actix_web_actors::HttpContext`), as a WebSocket session is: actix polls the body, and so
//! runs the actor, only while the connection's earlier output is written. Changes arrive through
//! the stream's [`ChangeSlot`], so a client that reads slowly gets the newest states, never a
//! backlog: they merge in the slot until the socket drains, then go out as one event. (A channel
//! between a separate actor and the body did the same with a second task woken per event: 24–30
//! µs of server processor per event against a WebSocket frame's 18–21, BENCHMARKS.md.)

use crate::metrics;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::HttpContext;
use bytestring::ByteString;

use super::slot_session::SlotSession;
use super::ws::{baseline_query, split_baseline};
use super::{AppState, problem, ticket};
use crate::dispatcher::PushBaseline;
use crate::jmap::session::Principal;
use crate::push::budget::StateChangeBudget;
use crate::push::connections::ConnectionSlot;
use crate::push::frame;
use crate::push::position::{self, Positions};
use crate::push::registry::{Subscribe, Unsubscribe};
use crate::push::slot::{ChangeSlot, TypeFilter};
use crate::push::wake::{Wake, WakeSignal};

/// The query parameters (RFC 8620 §7.3), checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamParams {
    pub types: TypeFilter,
    pub close_after_state: bool,
    /// Seconds between pings, after clamping; 0 = never.
    pub ping: u64,
}

/// Reads `types`, `closeafter` and `ping`. Missing ones take the RFC's neutral value (`*`, `no`,
/// `0`); invalid values are errors (checklist ES-10).
pub fn parse_params(
    query: &HashMap<String, String>,
    (ping_min, ping_max): (u64, u64),
) -> Result<StreamParams, String> {
    let types = match query.get("types").map(String::as_str) {
        None | Some("*") => TypeFilter::All,
        Some(list) => {
            let names: BTreeSet<String> = list.split(',').map(|t| t.trim().to_owned()).collect();
            if names
                .iter()
                .any(|t| t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return Err(format!(
                    "types must be * or a comma-separated list of type names, not {list:?}"
                ));
            }
            TypeFilter::Only(names)
        }
    };
    let close_after_state = match query.get("closeafter").map(String::as_str) {
        None | Some("no") => false,
        Some("state") => true,
        Some(other) => return Err(format!("closeafter must be state or no, not {other:?}")),
    };
    let ping = match query.get("ping") {
        None => 0,
        Some(p) => match p.parse::<u64>() {
            Ok(0) => 0,
            // RFC 8620 §7.3: the server may clamp the interval.
            Ok(n) => n.clamp(ping_min, ping_max),
            Err(_) => {
                return Err(format!(
                    "ping must be a non-negative integer number of seconds, not {p:?}"
                ));
            }
        },
    };
    Ok(StreamParams {
        types,
        close_after_state,
        ping,
    })
}

/// `GET /jmap/eventsource/?types=…&closeafter=…&ping=…`
pub async fn get_stream(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let query = match web::Query::<HashMap<String, String>>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => {
            return problem::status(
                StatusCode::BAD_REQUEST,
                format!("the query string is malformed: {e}"),
            );
        }
    };
    let params = match parse_params(&query, state.push.config.ping_bounds()) {
        Ok(p) => p,
        Err(why) => return problem::status(StatusCode::BAD_REQUEST, why),
    };
    let principal = match ticket::authenticate_stream(&state, &req).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let place = match state.push.caps.try_acquire(&principal.user_id) {
        Ok(p) => p,
        Err(e) => return ticket::cap_refused(e),
    };
    // RFC 8620 §7.3 (checklist ES-08): Last-Event-ID resumes from the position it encodes; one
    // we never issued means "unknown", and the client is told every type changed.
    let resume = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(position::decode);

    let budget =
        StateChangeBudget::new(state.push.config.max_state_changes_per_sec, Instant::now());
    let session = EventSourceSession {
        principal,
        app: state.into_inner(),
        slot: Arc::new(ChangeSlot::for_transport(
            params.types.clone(),
            metrics::EVENTSOURCE,
        )),
        params,
        resume,
        subscription: None,
        budget,
        flush_scheduled: false,
        _place: place,
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // Keeps compression middleware from buffering the stream.
        .insert_header(("Content-Encoding", "identity"))
        // Asks reverse proxies (nginx) not to buffer either.
        .insert_header(("X-Accel-Buffering", "no"))
        // A web client on another origin may read the stream: it authenticates with a ticket in
        // the URL, never with cookies, so no credentials are exposed by allowing every origin.
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .streaming(HttpContext::create(session))
}

/// One EventSource stream.
pub struct EventSourceSession {
    principal: Principal,
    app: Arc<AppState>,
    slot: Arc<ChangeSlot>,
    params: StreamParams,
    resume: Option<Option<Positions>>,
    subscription: Option<u64>,
    /// Caps StateChanges per second (`push.max_state_changes_per_sec`).
    budget: StateChangeBudget,
    /// A flush waits for the budget's next token.
    flush_scheduled: bool,
    _place: ConnectionSlot,
}

impl SlotSession for EventSourceSession {
    const TRANSPORT: frame::Transport = frame::Transport::EventSource;

    fn pacing(&mut self) -> (&ChangeSlot, &mut StateChangeBudget, &mut bool) {
        (&self.slot, &mut self.budget, &mut self.flush_scheduled)
    }

    /// One `state` event with its `id` (checklist ES-07, ES-08).
    fn write_frame(&mut self, event: ByteString, ctx: &mut HttpContext<Self>) {
        ctx.write(event.into_bytes());
        if self.params.close_after_state {
            // RFC 8620 §7.3: end the response after one state event.
            ctx.stop();
        }
    }
}

impl EventSourceSession {
    /// The heartbeat that notices a departed client, and the pings the client asked for.
    fn start_timers(&self, ctx: &mut HttpContext<Self>) {
        // The server notices a departed client only when it writes (STACK.md pitfall 7): write
        // on a bounded interval even when the client asked for no pings. A comment (not a ping:
        // checklist ES-06); once the write fails, actix drops the body, which stops this actor.
        let heartbeat = Duration::from_secs(self.app.push.config.heartbeat_secs.max(1));
        ctx.run_interval(heartbeat, |_, ctx| {
            ctx.write(Bytes::from_static(b": keepalive\n"));
        });
        if self.params.ping > 0 {
            let interval = self.params.ping;
            // Checklist ES-06: an event named ping with the interval actually used, and no id.
            let event = Bytes::from(format!(
                "event: ping\ndata: {{\"interval\":{interval}}}\n\n"
            ));
            ctx.run_interval(Duration::from_secs(interval), move |_, ctx| {
                ctx.write(event.clone());
            });
        }
    }
}

impl Actor for EventSourceSession {
    type Context = HttpContext<Self>;

    /// Runs when actix first polls the body. When the connection ends, actix drops the body,
    /// which stops this actor (`stopping` unsubscribes and frees the stream's place among the
    /// user's connections). actix notices a client that closed only when a write fails: a client
    /// that closes cleanly keeps its place until the next event or keepalive (at most
    /// `push.heartbeat_secs`, docs/push.md).
    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::metrics()
            .push_connections
            .with_label_values(&[metrics::EVENTSOURCE])
            .inc();
        self.start_timers(ctx);
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
        let resumed = self.resume.is_some();
        let accounts = baseline_query(&self.principal, self.resume.as_ref());
        self.app
            .dispatcher
            .send(PushBaseline { accounts })
            .into_actor(self)
            .map(move |result, act, ctx| match result {
                Ok(Ok(found)) => {
                    let (positions, missed) = split_baseline(found);
                    let pending = act.slot.baseline(positions, missed, resumed);
                    // A comment first, flushing the headers (checklist ES-10); sent once the
                    // stream is subscribed, so a client may wait for it before it mutates.
                    ctx.write(Bytes::from_static(b": herald push stream ready\n"));
                    if pending {
                        act.flush(ctx);
                    }
                }
                Ok(Err(e)) => {
                    log::error!("push baseline: {e}");
                    ctx.stop();
                }
                Err(e) => {
                    log::error!("push baseline: {e}");
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
            .with_label_values(&[metrics::EVENTSOURCE])
            .dec();
    }
}

impl StreamHandler<Wake> for EventSourceSession {
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        if self.slot.closing().is_some() {
            // Access to every account of this stream was revoked, or the server is stopping:
            // end the response (a browser's EventSource reconnects with Last-Event-ID).
            ctx.stop();
            return;
        }
        self.flush(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_checked_and_ping_is_clamped_within_the_rfc_bounds() {
        let bounds = (10, 300);
        let p = parse_params(
            &q(&[
                ("types", "Mailbox,Email"),
                ("closeafter", "state"),
                ("ping", "5"),
            ]),
            bounds,
        )
        .unwrap();
        assert_eq!(
            p.types,
            TypeFilter::Only(["Email".to_string(), "Mailbox".to_string()].into())
        );
        assert!(p.close_after_state);
        assert_eq!(p.ping, 10, "raised to the minimum");
        let p = parse_params(
            &q(&[("types", "*"), ("closeafter", "no"), ("ping", "9999")]),
            bounds,
        )
        .unwrap();
        assert_eq!(
            (p.types, p.close_after_state, p.ping),
            (TypeFilter::All, false, 300)
        );
        assert_eq!(parse_params(&q(&[("ping", "0")]), bounds).unwrap().ping, 0);
        for bad in [
            q(&[("ping", "-1")]),
            q(&[("ping", "soon")]),
            q(&[("closeafter", "never")]),
            q(&[("types", "")]),
            q(&[("types", "Mailbox,,Email")]),
            q(&[("types", "Mail box")]),
        ] {
            assert!(parse_params(&bad, bounds).is_err(), "{bad:?}");
        }
    }
}
