//! `webhook`: S push subscriptions (RFC 8620 §7.2) pointing at a sink this tool serves on
//! loopback; each is verified, then a writer mutates at a fixed rate and the sink times every
//! StateChange delivered. The server must allow plain-http loopback targets for this.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::Report;
use crate::api::round;
use crate::jmap::{self, CORE, Credentials, Session};
use crate::push::write;
use crate::stats::Samples;

#[derive(Default)]
struct Sink {
    codes: Mutex<HashMap<String, String>>,
    arrivals: Mutex<Vec<(usize, String, String, Instant)>>,
}

async fn receive(
    sink: web::Data<Arc<Sink>>,
    path: web::Path<usize>,
    body: web::Bytes,
) -> HttpResponse {
    let now = Instant::now();
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    if v["@type"] == "PushVerification" {
        let (id, code) = (
            v["pushSubscriptionId"].as_str(),
            v["verificationCode"].as_str(),
        );
        if let (Some(id), Some(code)) = (id, code) {
            sink.codes
                .lock()
                .unwrap()
                .insert(id.to_owned(), code.to_owned());
        }
    } else {
        let mut arrivals = sink.arrivals.lock().unwrap();
        for (account, t, state) in jmap::state_changes(&v) {
            if t == "Mailbox" {
                arrivals.push((*path, account, state, now));
            }
        }
    }
    HttpResponse::Created().finish()
}

/// Runs the webhook benchmark.
#[expect(
    clippy::too_many_lines,
    reason = "one load run read top to bottom: set up, send, wait, report"
)]
pub fn run(
    base: &str,
    write_base: &str,
    users: &[Credentials],
    subscriptions: usize,
    rate: f64,
    mutations: u64,
) -> Report {
    let sink = Arc::new(Sink::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("sink listener");
    let sink_addr = listener.local_addr().expect("sink address");
    {
        let sink = sink.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = web::Data::new(sink);
                HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route("/hook/{n}", web::post().to(receive))
                })
                .workers(1)
                .listen(listener)
                .expect("sink")
                .run()
                .await
            })
        });
    }
    let sessions: Vec<Session> = actix_web::rt::System::new().block_on(async {
        let client = jmap::client();
        let mut sessions = Vec::new();
        for u in users {
            sessions.push(jmap::session(&client, base, u).await.expect("session"));
        }
        for n in 0..subscriptions {
            let u = n % users.len();
            let create = json!([["PushSubscription/set", {"create": {"s": {
                "deviceClientId": format!("herald-load-{n}"),
                "url": format!("http://{sink_addr}/hook/{n}"),
                "types": ["Mailbox"],
            }}}, "0"]]);
            let r = jmap::call(&client, &sessions[u], &users[u], &[CORE], create).await.expect("PushSubscription/set");
            let Some(id) = r[0][1]["created"]["s"]["id"].as_str().map(str::to_owned) else {
                panic!("subscription not created: {}", r[0][1]);
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            let code = loop {
                if let Some(code) = sink.codes.lock().unwrap().get(&id).cloned() {
                    break code;
                }
                assert!(Instant::now() < deadline, "no PushVerification for {id}");
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            };
            let verify = json!([["PushSubscription/set", {"update": {id.clone(): {"verificationCode": code}}}, "0"]]);
            jmap::call(&client, &sessions[u], &users[u], &[CORE], verify).await.expect("verify");
        }
        sessions
    });
    let write_sessions = crate::push::sessions_at(write_base, users);
    let started = Instant::now();
    let (responses, finals) = write(users, rate, &write_sessions, Some(mutations));
    let expected: HashMap<usize, String> = (0..subscriptions)
        .map(|n| (n, sessions[n % sessions.len()].account_id.clone()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: HashSet<usize> = sink
            .arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, a, s, _)| expected.get(n) == Some(a) && finals.get(a) == Some(s))
            .map(|(n, ..)| *n)
            .collect();
        if done.len() >= subscriptions || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let arrivals = std::mem::take(&mut *sink.arrivals.lock().unwrap());
    let last = arrivals.iter().map(|a| a.3).max().unwrap_or(started);
    let mut samples = Samples::default();
    for (_, account, state, at) in &arrivals {
        if let Some((_, resp)) = responses.get(&(account.clone(), state.clone())) {
            samples.push(at.checked_duration_since(*resp).unwrap_or_default());
        }
    }
    let seconds = last.duration_since(started).as_secs_f64().max(0.001);
    let (p50, p99, p999, max) = samples.summary();
    Report::new("webhook")
        .field("subscriptions", subscriptions)
        .field("mutations", responses.len())
        .field("deliveries", arrivals.len())
        .field("deliveries_per_s", round(arrivals.len() as f64 / seconds))
        .field("latency_p50_ms", p50)
        .field("latency_p99_ms", p99)
        .field("latency_p999_ms", p999)
        .field("latency_max_ms", max)
}
