//! `api`: N concurrent clients with keep-alive send one kind of request until a count or a
//! deadline is reached; reports requests/s and latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Report;
use crate::jmap::{self, CORE, Credentials, MAIL, Session};
use crate::stats::Samples;

/// Which request to send.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Kind {
    /// `Core/echo`
    Echo,
    /// `Mailbox/get` of every mailbox
    MailboxGet,
    /// `Email/query` (inbox, newest first, 20) + `Email/get` of its ids by result reference
    Sync,
}

fn request(kind: Kind, session: &Session, inbox: &str) -> (Vec<&'static str>, Value) {
    let account = &session.account_id;
    match kind {
        Kind::Echo => (
            vec![CORE],
            json!([["Core/echo", {"hello": true, "n": [1, 2, 3]}, "0"]]),
        ),
        Kind::MailboxGet => (
            vec![CORE, MAIL],
            json!([["Mailbox/get", {"accountId": account}, "0"]]),
        ),
        Kind::Sync => (
            vec![CORE, MAIL],
            json!([
                ["Email/query", {"accountId": account, "filter": {"inMailbox": inbox}, "sort": [{"property": "receivedAt", "isAscending": false}], "limit": 20}, "q"],
                ["Email/get", {"accountId": account, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["subject", "from", "receivedAt", "keywords", "preview", "threadId"]}, "g"],
            ]),
        ),
    }
}

/// Runs the load; `threads` runtimes share the clients.
pub fn run(
    base: &str,
    creds: &Credentials,
    kind: Kind,
    clients: usize,
    requests: u64,
    duration: Duration,
    threads: usize,
) -> Report {
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let (base, creds, sent, errors) =
                (base.to_owned(), creds.clone(), sent.clone(), errors.clone());
            let mine = clients / threads.max(1) + usize::from(t < clients % threads.max(1));
            std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let client = jmap::client();
                    let session = jmap::session(&client, &base, &creds)
                        .await
                        .expect("session");
                    let inbox = inbox_id(&client, &session, &creds).await;
                    let mut tasks = Vec::new();
                    for _ in 0..mine {
                        let (client, session, creds, sent, errors, inbox) = (
                            client.clone(),
                            session.clone(),
                            creds.clone(),
                            sent.clone(),
                            errors.clone(),
                            inbox.clone(),
                        );
                        tasks.push(actix_web::rt::spawn(async move {
                            let mut samples = Samples::default();
                            let (using, calls) = request(kind, &session, &inbox);
                            while Instant::now() < deadline
                                && sent.fetch_add(1, Ordering::Relaxed) < requests
                            {
                                let t0 = Instant::now();
                                match jmap::call(&client, &session, &creds, &using, calls.clone())
                                    .await
                                {
                                    Ok(r) if r.iter().all(|i| i[0] != "error") => {
                                        samples.push(t0.elapsed());
                                    }
                                    _ => {
                                        errors.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            samples
                        }));
                    }
                    let mut all = Samples::default();
                    for t in tasks {
                        all.extend(t.await.unwrap_or_default());
                    }
                    all
                })
            })
        })
        .collect();
    let mut samples = Samples::default();
    for h in handles {
        samples.extend(h.join().expect("load thread"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = samples.len() as f64;
    let (p50, p99, p999, max) = samples.summary();
    Report::new("api")
        .field("kind", format!("{kind:?}"))
        .field("clients", clients)
        .field("requests_ok", ok)
        .field("errors", errors.load(Ordering::Relaxed))
        .field("seconds", round(elapsed))
        .field("requests_per_s", round(ok / elapsed))
        .field("p50_ms", p50)
        .field("p99_ms", p99)
        .field("p999_ms", p999)
        .field("max_ms", max)
}

async fn inbox_id(client: &awc::Client, session: &Session, creds: &Credentials) -> String {
    let r = jmap::call(client, session, creds, &[CORE, MAIL], json!([["Mailbox/query", {"accountId": session.account_id, "filter": {"role": "inbox"}}, "0"]])).await;
    r.ok()
        .and_then(|r| r[0][1]["ids"][0].as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
