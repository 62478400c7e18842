//! A webhook receiver on 127.0.0.1 (a push service stand-in): records every request it is sent and
//! answers the statuses a test scripts (201 by default), or holds one request open without an
//! answer (a push service that hangs). Also the steps every webhook test takes: creating a
//! PushSubscription to it and answering its PushVerification (RFC 8620 §7.2, PSUB-05).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use super::{Auth, CORE, TestServer};

/// How long [`WebhookSink::next`] waits for a request.
const WAIT: Duration = Duration::from_secs(20);

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the sink answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Clone)]
struct SinkState {
    tx: tokio::sync::mpsc::UnboundedSender<Received>,
    /// Statuses for the next requests, in order; then `default_status`.
    script: Arc<Mutex<VecDeque<u16>>>,
    default_status: Arc<AtomicU16>,
    /// Hold the next request open without answering.
    hang_next: Arc<AtomicBool>,
}

pub struct WebhookSink {
    base: String,
    rx: tokio::sync::mpsc::UnboundedReceiver<Received>,
    state: SinkState,
    handle: actix_web::dev::ServerHandle,
}

async fn record(req: HttpRequest, body: web::Bytes, state: web::Data<SinkState>) -> HttpResponse {
    let hang = state.hang_next.swap(false, Ordering::SeqCst);
    let status = if hang {
        503
    } else {
        state
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| state.default_status.load(Ordering::SeqCst))
    };
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let _ = state.tx.send(Received {
        path: req.path().to_owned(),
        headers,
        body: body.to_vec(),
        status,
    });
    if hang {
        // Longer than any test waits; the sender gives up (or dies) first.
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

impl WebhookSink {
    pub async fn start() -> WebhookSink {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state = SinkState {
            tx,
            script: Arc::default(),
            default_status: Arc::new(AtomicU16::new(201)),
            hang_next: Arc::default(),
        };
        let data = web::Data::new(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(record))
        })
        .workers(1)
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        WebhookSink {
            base: format!("http://{addr}"),
            rx,
            state,
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answer `statuses` to the next requests, in order.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    pub fn answer_by_default(&self, status: u16) {
        self.state.default_status.store(status, Ordering::SeqCst);
    }

    /// Hold the next request open without answering.
    pub fn hang_next(&self) {
        self.state.hang_next.store(true, Ordering::SeqCst);
    }

    /// The next request, within 20 s.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("the sink received nothing in time")
            .expect("sink open")
    }

    /// The next request's JSON body, within 20 s.
    pub async fn next_json(&mut self) -> Value {
        self.next().await.json()
    }

    /// A request already received and not taken yet, if any.
    pub fn try_next(&mut self) -> Option<Received> {
        self.rx.try_recv().ok()
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// `PushSubscription/set` with `args`; its response arguments.
pub async fn push_set(s: &TestServer, auth: &Auth, args: Value) -> Value {
    let r = s
        .call(auth, &[CORE], json!([["PushSubscription/set", args, "0"]]))
        .await;
    assert_eq!(r[0][0], "PushSubscription/set", "{r:?}");
    r[0][1].clone()
}

/// Creates a subscription and returns its id.
pub async fn create(s: &TestServer, auth: &Auth, sub: Value) -> String {
    let r = push_set(s, auth, json!({"create": {"new": sub}})).await;
    r["created"]["new"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("not created: {r}"))
        .to_owned()
}

/// Sets a subscription's verification code.
pub async fn verify(s: &TestServer, auth: &Auth, id: &str, code: &str) {
    let r = push_set(s, auth, json!({"update": {id: {"verificationCode": code}}})).await;
    assert!(r["updated"].get(id).is_some(), "{r}");
}

/// Creates a subscription to the sink's `path`, takes its PushVerification off the sink and sets
/// the code; returns its id.
pub async fn subscribe_verified(
    s: &TestServer,
    auth: &Auth,
    sink: &mut WebhookSink,
    path: &str,
) -> String {
    let id = create(
        s,
        auth,
        json!({"deviceClientId": "dev", "url": sink.url(path)}),
    )
    .await;
    let v = sink.next_json().await;
    assert_eq!(v["@type"], "PushVerification", "{v}");
    assert_eq!(v["pushSubscriptionId"], id);
    verify(s, auth, &id, v["verificationCode"].as_str().unwrap()).await;
    id
}
