//! `lmtp`: deliveries over LMTP (RFC 2033), as an MTA makes them, to any LMTP server.
//!
//! Without push connections it measures throughput: `clients` sessions deliver `messages`
//! messages, each to `recipients` users, as fast as the server answers. With push connections
//! (`--push-connections N`, Herald only) it paces deliveries at `--rate` and measures, for each
//! delivery, the time from the server's `250` to the StateChange at every connected client of the
//! recipient. Herald numbers an account's states by its writes, so with nothing else writing, the
//! k-th delivery to an account is the k-th state after the one read before the run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Report;
use crate::api::round;
use crate::jmap::{self, CORE, Credentials, MAIL};
use crate::push::{self, PushRun};
use crate::stats::{Samples, rss_kib};

/// Options of an LMTP run.
pub struct LmtpRun {
    /// `host:port` of the LMTP server.
    pub addr: String,
    /// Recipients are `<user>@<domain>`.
    pub domain: String,
    pub recipients: usize,
    pub messages: u64,
    pub clients: usize,
    pub seconds: u64,
    /// Size of each message body, in octets.
    pub size: usize,
    /// Deliveries per second when push connections are measured.
    pub rate: f64,
}

/// One LMTP session, as a client.
struct Session {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Session {
    async fn open(addr: &str) -> std::io::Result<Session> {
        let (read, writer) = TcpStream::connect(addr).await?.into_split();
        let mut session = Session {
            reader: BufReader::new(read),
            writer,
        };
        session.expect(220).await?;
        session.writer.write_all(b"LHLO herald-load\r\n").await?;
        session.expect(250).await?;
        Ok(session)
    }

    /// Reads one (possibly multi-line) reply; its code.
    async fn reply(&mut self) -> std::io::Result<u16> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    }

    async fn expect(&mut self, code: u16) -> std::io::Result<()> {
        match self.reply().await? {
            c if c == code => Ok(()),
            c => Err(std::io::Error::other(format!("expected {code}, got {c}"))),
        }
    }

    /// One transaction, envelope pipelined (RFC 2920); the instant each recipient's `250`
    /// arrived, in order.
    async fn deliver(&mut self, to: &[String], body: &[u8]) -> std::io::Result<Vec<Instant>> {
        let mut envelope = String::from("MAIL FROM:<load@herald-load.test>\r\n");
        for r in to {
            envelope.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        envelope.push_str("DATA\r\n");
        self.writer.write_all(envelope.as_bytes()).await?;
        for _ in 0..=to.len() {
            self.expect(250).await?;
        }
        self.expect(354).await?;
        self.writer.write_all(body).await?;
        let mut done = Vec::with_capacity(to.len());
        for _ in to {
            self.expect(250).await?;
            done.push(Instant::now());
        }
        Ok(done)
    }
}

/// A message of about `size` octets, dot-stuffed and ended for DATA.
fn message(n: u64, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Load <load@herald-load.test>\r\nTo: someone@herald-load.test\r\n\
         Subject: load message {n}\r\nMessage-ID: <{n}.{}@herald-load.test>\r\n\r\n",
        std::process::id()
    );
    while m.len() < size {
        m.push_str("The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    m.push_str(".\r\n");
    m.into_bytes()
}

/// The recipients of message `n`: `recipients` consecutive users, round-robin.
fn recipients_of(n: u64, users: &[Credentials], recipients: usize, domain: &str) -> Vec<String> {
    (0..recipients.min(users.len()))
        .map(|k| format!("{}@{domain}", users[(n as usize + k) % users.len()].user))
        .collect()
}

/// Throughput: `clients` sessions deliver as fast as the server answers.
pub fn throughput(run: &LmtpRun, users: &[Credentials], pid: Option<u32>) -> Report {
    let next = Arc::new(Mutex::new(0u64));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let rss_before = rss_kib(pid);
    let deadline = Instant::now() + Duration::from_secs(run.seconds);
    let started = Instant::now();
    actix_web::rt::System::new().block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..run.clients.max(1) {
            let (next, samples, failures) = (next.clone(), samples.clone(), failures.clone());
            let (addr, domain, users) = (run.addr.clone(), run.domain.clone(), users.to_vec());
            let (messages, recipients, size) = (run.messages, run.recipients, run.size);
            tasks.push(actix_web::rt::spawn(async move {
                let mut session = match Session::open(&addr).await {
                    Ok(s) => s,
                    Err(e) => return failures.lock().unwrap().push(e.to_string()),
                };
                loop {
                    let n = {
                        let mut next = next.lock().unwrap();
                        if *next >= messages || Instant::now() > deadline {
                            break;
                        }
                        *next += 1;
                        *next - 1
                    };
                    let to = recipients_of(n, &users, recipients, &domain);
                    let sent = Instant::now();
                    match session.deliver(&to, &message(n, size)).await {
                        Ok(done) => {
                            let last = done.last().copied().unwrap_or(sent);
                            samples.lock().unwrap().push(last - sent);
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(e.to_string());
                            break;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut samples = samples.lock().unwrap().clone();
    let delivered = samples.len() as u64;
    let (p50, p99, p999, max) = samples.summary();
    let failures = failures.lock().unwrap();
    Report::new("lmtp")
        .field("clients", run.clients)
        .field("recipients_per_message", run.recipients)
        .field("message_octets", run.size)
        .field("messages", delivered)
        .field("messages_per_s", round(delivered as f64 / seconds))
        .field(
            "deliveries_per_s",
            round((delivered * run.recipients as u64) as f64 / seconds),
        )
        .field("transaction_p50_ms", p50)
        .field("transaction_p99_ms", p99)
        .field("transaction_p999_ms", p999)
        .field("transaction_max_ms", max)
        .field("failures", failures.len())
        .field(
            "first_failure",
            failures.first().cloned().unwrap_or_default(),
        )
        .field(
            "server_rss_growth_kib",
            rss_kib(pid)
                .zip(rss_before)
                .map_or(0, |(a, b)| a as i64 - b as i64),
        )
}

/// The Mailbox state of every user's account, as Herald's write number.
fn mailbox_positions(base: &str, users: &[Credentials]) -> HashMap<String, i64> {
    let sessions = push::sessions_at(base, users);
    actix_web::rt::System::new().block_on(async {
        let client = jmap::client();
        let mut out = HashMap::new();
        for (s, u) in sessions.iter().zip(users) {
            let r = jmap::call(
                &client,
                s,
                u,
                &[CORE, MAIL],
                json!([["Mailbox/get", {"accountId": s.account_id, "ids": []}, "0"]]),
            )
            .await
            .expect("Mailbox/get");
            let state = r[0][1]["state"]
                .as_str()
                .unwrap_or("")
                .parse()
                .unwrap_or(-1);
            out.insert(s.account_id.clone(), state);
        }
        out
    })
}

/// Push latency: deliveries paced at `run.rate` while `idle.connections` clients listen.
pub fn push_latency(run: &LmtpRun, idle: PushRun) -> Report {
    let users = idle.users.clone();
    let base = idle.base.clone();
    let sessions = push::sessions_at(&base, &users);
    let account_of: HashMap<String, String> = sessions
        .iter()
        .zip(&users)
        .map(|(s, u)| (u.user.clone(), s.account_id.clone()))
        .collect();
    let (report, shared, opened) = push::open_for_measuring(&idle, &sessions);
    let start = mailbox_positions(&base, &users);
    shared.arrivals.lock().unwrap().clear();

    // Each account's `250`s, in order: the k-th is the state start + k + 1.
    let mut confirmed: HashMap<String, Vec<Instant>> = HashMap::new();
    let interval = Duration::from_secs_f64(1.0 / run.rate.max(0.001));
    let started = Instant::now();
    let failure = actix_web::rt::System::new().block_on(async {
        let mut session = Session::open(&run.addr).await?;
        let mut tick = actix_web::rt::time::interval(interval);
        for n in 0..run.messages {
            tick.tick().await;
            let to = recipients_of(n, &users, run.recipients, &run.domain);
            let done = session.deliver(&to, &message(n, run.size)).await?;
            for (address, at) in to.iter().zip(done) {
                let user = address.split('@').next().unwrap_or_default();
                if let Some(account) = account_of.get(user) {
                    confirmed.entry(account.clone()).or_default().push(at);
                }
            }
        }
        Ok::<(), std::io::Error>(())
    });
    let seconds = started.elapsed().as_secs_f64();
    let expected: HashMap<usize, String> = (0..idle.connections)
        .map(|i| (i, sessions[i % sessions.len()].account_id.clone()))
        .collect();
    let finals: HashMap<String, String> = confirmed
        .iter()
        .map(|(a, v)| (a.clone(), (start[a] + v.len() as i64).to_string()))
        .collect();
    let complete = push::wait_for_finals(&shared, &expected, &finals, opened);
    let mut samples = Samples::default();
    let mut unmatched = 0;
    for (_, account, state, at) in shared.arrivals.lock().unwrap().iter() {
        let k = state.parse::<i64>().unwrap_or(-1) - start.get(account).copied().unwrap_or(0);
        match confirmed.get(account).and_then(|v| v.get((k - 1) as usize)) {
            Some(ok) if k >= 1 => samples.push(at.saturating_duration_since(*ok)),
            _ => unmatched += 1,
        }
    }
    let delivered: usize = confirmed.values().map(Vec::len).sum();
    let (p50, p99, p999, max) = samples.summary();
    report
        .field("mode", "lmtp-push")
        .field("recipients_per_message", run.recipients)
        .field("deliveries", delivered)
        .field("deliveries_per_s", round(delivered as f64 / seconds))
        .field("notifications_received", samples.len())
        .field("notifications_unmatched", unmatched)
        .field(
            "connections_missing_final_state",
            opened.saturating_sub(complete),
        )
        .field("from_250_p50_ms", p50)
        .field("from_250_p99_ms", p99)
        .field("from_250_p999_ms", p999)
        .field("from_250_max_ms", max)
        .field(
            "failure",
            failure.err().map(|e| e.to_string()).unwrap_or_default(),
        )
}
