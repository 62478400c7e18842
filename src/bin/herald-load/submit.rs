//! `submit`: clients send mail through JMAP (Email/set of a draft + EmailSubmission/set, one
//! request) while this tool plays the SMTP relay, so both sides of a server's outbox are measured:
//! submissions accepted per second by the API, and messages the relay received per second. With
//! `--stall` the relay accepts connections and never answers: what the API accepts then shows
//! whether sending is decoupled from requests.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::Report;
use crate::api::round;
use crate::jmap::{self, CORE, Credentials, MAIL};
use crate::stats::Samples;

const SUBMISSION: &str = "urn:ietf:params:jmap:submission";

/// Options of a `submit` run.
pub struct SubmitRun {
    pub base: String,
    pub creds: Credentials,
    /// Where this tool listens as the server's SMTP relay.
    pub sink: String,
    pub stall: bool,
    pub clients: usize,
    pub submissions: u64,
    pub seconds: u64,
    /// The (non-local) recipient of every message.
    pub to: String,
}

/// Messages the sink received, and when the last one came.
#[derive(Default)]
struct SinkCount {
    received: AtomicU64,
    last_ms: AtomicU64,
}

/// Serves SMTP on `addr` on threads of its own; with `stall`, holds every connection silent.
fn serve_sink(addr: &str, stall: bool, count: Arc<SinkCount>, epoch: Instant) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("herald-load: cannot listen on {addr}: {e}");
        std::process::exit(2);
    });
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            if stall {
                held.push(stream);
                continue;
            }
            let count = count.clone();
            std::thread::spawn(move || {
                let _ = smtp_session(stream, &count, epoch);
            });
        }
    });
}

/// One SMTP session that accepts everything and counts each message.
fn smtp_session(stream: TcpStream, count: &SinkCount, epoch: Instant) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 herald-load sink ESMTP\r\n")?;
    let mut line = String::new();
    while lines.read_line(&mut line)? > 0 {
        let upper = line.trim_end().to_ascii_uppercase();
        line.clear();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 herald-load\r\n"
        } else if upper == "DATA" {
            out.write_all(b"354 go ahead\r\n")?;
            loop {
                if lines.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let end = line == ".\r\n";
                line.clear();
                if end {
                    break;
                }
            }
            count.received.fetch_add(1, Ordering::Relaxed);
            count
                .last_ms
                .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            b"250 2.0.0 queued\r\n"
        } else if upper.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            b"250 2.0.0 Ok\r\n"
        };
        out.write_all(reply)?;
    }
    Ok(())
}

#[expect(
    clippy::too_many_lines,
    reason = "one load run read top to bottom: set up, send, wait, report"
)]
pub fn run(run: SubmitRun) -> Report {
    let epoch = Instant::now();
    let count = Arc::new(SinkCount::default());
    serve_sink(&run.sink, run.stall, count.clone(), epoch);
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started_ms = epoch.elapsed().as_millis() as u64;
    let samples = actix_web::rt::System::new().block_on(async {
        let client = jmap::client();
        let session = jmap::session(&client, &run.base, &run.creds)
            .await
            .expect("session");
        let account = session.account_id.clone();
        let r = jmap::call(
            &client,
            &session,
            &run.creds,
            &[CORE, MAIL, SUBMISSION],
            json!([
                ["Identity/get", {"accountId": account}, "i"],
                ["Mailbox/query", {"accountId": account, "filter": {"role": "drafts"}}, "m"],
            ]),
        )
        .await
        .expect("identity and drafts");
        let identity = r[0][1]["list"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let from = r[0][1]["list"][0]["email"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let drafts = r[1][1]["ids"][0].as_str().unwrap_or_default().to_owned();
        let deadline = Instant::now() + Duration::from_secs(run.seconds);
        let sent = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..run.clients.max(1) {
            let (client, session, creds, sent, accepted, errors) = (
                client.clone(),
                session.clone(),
                run.creds.clone(),
                sent.clone(),
                accepted.clone(),
                errors.clone(),
            );
            let (identity, from, drafts, to, account, limit) = (
                identity.clone(),
                from.clone(),
                drafts.clone(),
                run.to.clone(),
                account.clone(),
                run.submissions,
            );
            tasks.push(actix_web::rt::spawn(async move {
                let mut samples = Samples::default();
                loop {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    if n >= limit || Instant::now() >= deadline {
                        break;
                    }
                    let calls = json!([
                        ["Email/set", {"accountId": account, "create": {"d": {
                            "mailboxIds": {drafts.clone(): true},
                            "from": [{"email": from}], "to": [{"email": to}],
                            "subject": format!("load {n}"),
                            "textBody": [{"partId": "t", "type": "text/plain"}],
                            "bodyValues": {"t": {"value": "A message of a few words."}}}}}, "0"],
                        ["EmailSubmission/set", {"accountId": account,
                            "create": {"s": {"identityId": identity, "emailId": "#d"}}}, "1"],
                    ]);
                    let t0 = Instant::now();
                    match jmap::call(&client, &session, &creds, &[CORE, MAIL, SUBMISSION], calls)
                        .await
                    {
                        Ok(r)
                            if r.get(1)
                                .is_some_and(|c| c[1]["created"]["s"]["id"].is_string()) =>
                        {
                            samples.push(t0.elapsed());
                            accepted.fetch_add(1, Ordering::Relaxed);
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
    });
    let submit_seconds = (epoch.elapsed().as_millis() as u64 - started_ms) as f64 / 1000.0;
    let accepted = accepted.load(Ordering::Relaxed);
    let mut samples = samples;
    let (p50, p99, p999, max) = samples.summary();
    let mut report = Report::new("submit")
        .field("clients", run.clients)
        .field("relay_stalled", run.stall)
        .field("accepted", accepted)
        .field("errors", errors.load(Ordering::Relaxed))
        .field("accepted_per_s", round(accepted as f64 / submit_seconds))
        .field("submit_p50_ms", p50)
        .field("submit_p99_ms", p99)
        .field("submit_p999_ms", p999)
        .field("submit_max_ms", max);
    if !run.stall {
        // Wait (at most a minute) for the outbox to hand everything to the relay.
        let until = Instant::now() + Duration::from_secs(60);
        while count.received.load(Ordering::Relaxed) < accepted && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let received = count.received.load(Ordering::Relaxed);
        let last = count
            .last_ms
            .load(Ordering::Relaxed)
            .saturating_sub(started_ms);
        report = report
            .field("relay_received", received)
            .field(
                "relay_received_per_s",
                round(received as f64 / (last.max(1) as f64 / 1000.0)),
            )
            .field("last_received_after_s", round(last as f64 / 1000.0));
    }
    report
}
