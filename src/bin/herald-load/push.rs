//! `push` and `connections`: open WebSocket and EventSource push connections spread over several
//! users' accounts; for `push`, a writer mutates at a fixed rate and every StateChange's arrival is
//! matched to the response of the mutation that produced that state.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Report;

/// Push connections being opened at once, per client thread.
const OPENING: usize = 64;
use crate::api::round;
use crate::jmap::{self, CORE, Credentials, MAIL, Session};
use crate::stats::{Samples, cpu_time_of, own_cpu_time, rss_kib};

/// Which push transport the connections use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Ws,
    Sse,
    /// Alternate WebSocket and EventSource.
    Mixed,
}

impl Transport {
    /// Whether connection `i` of a run on this transport is a WebSocket.
    pub fn is_ws(self, i: usize) -> bool {
        match self {
            Transport::Ws => true,
            Transport::Sse => false,
            Transport::Mixed => i.is_multiple_of(2),
        }
    }
}

/// One received state: (connection, account, state, arrival).
pub type Arrival = (usize, String, String, Instant);

/// What the connections' tasks report.
#[derive(Default)]
pub struct Shared {
    pub arrivals: Mutex<Vec<Arrival>>,
    /// Notified after each StateChange's arrivals are recorded (`push --sequential` waits on it).
    pub arrived: Condvar,
    pub opened: Mutex<usize>,
    pub failed: Mutex<Vec<String>>,
}

/// A client for one push connection, bound to `source` when given.
fn push_client(source: Option<IpAddr>, timeout: Option<Duration>) -> awc::Client {
    let mut connector = awc::Connector::new();
    if let Some(ip) = source {
        connector = connector.local_address(ip);
    }
    let builder = awc::Client::builder().connector(connector);
    match timeout {
        Some(t) => builder.timeout(t).finish(),
        None => builder.disable_timeout().finish(),
    }
}

async fn run_ws(
    i: usize,
    session: Session,
    creds: Credentials,
    shared: Arc<Shared>,
    source: Option<IpAddr>,
    opening: OwnedSemaphorePermit,
) {
    let Some(url) = session.websocket_url.clone() else {
        shared
            .failed
            .lock()
            .unwrap()
            .push("the server advertises no WebSocket".into());
        return;
    };
    let client = push_client(source, Some(Duration::from_secs(60)));
    let conn = client
        .ws(url)
        .protocols(["jmap"])
        .basic_auth(&creds.user, Some(&creds.password))
        .connect()
        .await;
    let mut framed = match conn {
        Ok((_, framed)) => framed,
        Err(e) => {
            shared.failed.lock().unwrap().push(format!("ws: {e}"));
            return;
        }
    };
    let enable = json!({"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox"]}).to_string();
    if framed
        .send(awc::ws::Message::Text(enable.into()))
        .await
        .is_err()
    {
        shared
            .failed
            .lock()
            .unwrap()
            .push("ws: cannot send PushEnable".into());
        return;
    }
    *shared.opened.lock().unwrap() += 1;
    drop(opening);
    while let Some(frame) = framed.next().await {
        let now = Instant::now();
        match frame {
            Ok(awc::ws::Frame::Text(bytes)) => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    let mut arrivals = shared.arrivals.lock().unwrap();
                    for (account, t, state) in jmap::state_changes(&v) {
                        if t == "Mailbox" {
                            arrivals.push((i, account, state, now));
                        }
                    }
                    shared.arrived.notify_all();
                }
            }
            Ok(awc::ws::Frame::Ping(p)) => {
                let _ = framed.send(awc::ws::Message::Pong(p)).await;
            }
            Ok(awc::ws::Frame::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

async fn run_sse(
    i: usize,
    session: Session,
    creds: Credentials,
    shared: Arc<Shared>,
    source: Option<IpAddr>,
    opening: OwnedSemaphorePermit,
) {
    let client = push_client(source, None);
    let url = jmap::event_source_url(&session.event_source_url, "Mailbox", "no", 300);
    let res = client
        .get(url)
        .basic_auth(&creds.user, &creds.password)
        .insert_header(("Accept", "text/event-stream"))
        .send()
        .await;
    let mut res = match res {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            shared
                .failed
                .lock()
                .unwrap()
                .push(format!("sse: HTTP {}", r.status()));
            return;
        }
        Err(e) => {
            shared.failed.lock().unwrap().push(format!("sse: {e}"));
            return;
        }
    };
    *shared.opened.lock().unwrap() += 1;
    drop(opening);
    let mut buf = String::new();
    while let Some(Ok(chunk)) = res.next().await {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        for (event, data) in jmap::sse_events(&mut buf) {
            if event != "state" {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) {
                let mut arrivals = shared.arrivals.lock().unwrap();
                for (account, t, state) in jmap::state_changes(&v) {
                    if t == "Mailbox" {
                        arrivals.push((i, account, state, now));
                    }
                }
                shared.arrived.notify_all();
            }
        }
    }
}

/// Options of a push run.
pub struct PushRun {
    pub base: String,
    /// Where the writer sends its mutations (another node for cross-node figures).
    pub write_base: String,
    pub users: Vec<Credentials>,
    pub connections: usize,
    pub transport: Transport,
    pub threads: usize,
    pub pid: Option<u32>,
    /// Local address the push connections are opened from (default: the system's choice).
    pub source: Option<IpAddr>,
    /// Index of the first connection: a worker process opens `offset..offset + connections`.
    pub offset: usize,
    /// Mutations per second and how many; 0 mutations = `connections` mode.
    pub rate: f64,
    pub mutations: u64,
}

/// Opens the connections on `threads` runtimes; returns the shared sink and the open time.
pub fn open_all(run: &PushRun, sessions: &[Session], shared: &Arc<Shared>) -> Duration {
    let started = Instant::now();
    for t in 0..run.threads.max(1) {
        let mine: Vec<usize> = (run.offset..run.offset + run.connections)
            .filter(|i| i % run.threads.max(1) == t)
            .collect();
        let (sessions, users, shared, transport, source) = (
            sessions.to_vec(),
            run.users.clone(),
            shared.clone(),
            run.transport,
            run.source,
        );
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let opening_slots = Arc::new(Semaphore::new(OPENING));
                let mut tasks = Vec::new();
                for i in mine {
                    let u = i % users.len();
                    let (session, creds, shared) =
                        (sessions[u].clone(), users[u].clone(), shared.clone());
                    let ws = transport.is_ws(i);
                    // At most OPENING handshakes in flight per thread, so a burst of thousands
                    // neither overflows the server's accept queue nor times out in it.
                    let opening = opening_slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore");
                    tasks.push(actix_web::rt::spawn(async move {
                        if ws {
                            run_ws(i, session, creds, shared, source, opening).await;
                        } else {
                            run_sse(i, session, creds, shared, source, opening).await;
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = *shared.opened.lock().unwrap() + shared.failed.lock().unwrap().len();
        if done >= run.connections || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Fetches every user's session from the server at `base`.
pub fn sessions_at(base: &str, users: &[Credentials]) -> Vec<Session> {
    actix_web::rt::System::new().block_on(async {
        let client = jmap::client();
        let mut out = Vec::new();
        for u in users {
            out.push(jmap::session(&client, base, u).await.expect("session"));
        }
        out
    })
}

/// Runs `push` (with mutations) or `connections` (without).
pub fn run(run: PushRun) -> Report {
    let sessions = sessions_at(&run.base, &run.users);
    let (report, shared, opened) = open_for_measuring(&run, &sessions);
    if run.mutations == 0 {
        return report;
    }
    measure_mutations(&run, &sessions, report, shared, opened)
}

/// Opens `run.connections` push connections and reports how that went; returns the report, what
/// the connections will record, and how many opened.
pub fn open_for_measuring(run: &PushRun, sessions: &[Session]) -> (Report, Arc<Shared>, usize) {
    let rss_before = rss_kib(run.pid);
    let shared = Arc::new(Shared::default());
    let open_time = open_all(run, sessions, &shared);
    let opened = *shared.opened.lock().unwrap();
    let failed = shared.failed.lock().unwrap().len();
    let first_failure = shared.failed.lock().unwrap().first().cloned();
    let report = opening_report(
        Report::new(if run.mutations == 0 {
            "connections"
        } else {
            "push"
        }),
        run,
        Opened {
            opened,
            failed,
            first_failure,
            time: open_time,
            rss_before,
            rss_open: rss_kib(run.pid),
        },
    );
    (report, shared, opened)
}

fn measure_mutations(
    run: &PushRun,
    sessions: &[Session],
    mut report: Report,
    shared: Arc<Shared>,
    opened: usize,
) -> Report {
    let write_sessions = if run.write_base == run.base {
        sessions.to_vec()
    } else {
        report = report.field("write_url", run.write_base.clone());
        sessions_at(&run.write_base, &run.users)
    };
    // Warm-up: one mutation per account, until every open connection has seen its account's state,
    // so that the measured mutations find every subscription active.
    let (responses, finals) = write(&run.users, run.rate, &write_sessions, None);
    let expected_connections: HashMap<usize, String> = (0..run.connections)
        .map(|i| (i, sessions[i % sessions.len()].account_id.clone()))
        .collect();
    wait_for_finals(&shared, &expected_connections, &finals, opened);
    shared.arrivals.lock().unwrap().clear();
    drop(responses);

    let started = Instant::now();
    let cpu_before = CpuReading::now(run.pid);
    let (responses, finals) = write(&run.users, run.rate, &write_sessions, Some(run.mutations));
    let write_seconds = started.elapsed().as_secs_f64();
    let complete = wait_for_finals(&shared, &expected_connections, &finals, opened);
    let cpu_after = CpuReading::now(run.pid);
    let arrivals = std::mem::take(&mut *shared.arrivals.lock().unwrap());
    let mut samples = Samples::default();
    let mut from_request = Samples::default();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut before_response = 0;
    for (conn, account, state, at) in &arrivals {
        if !seen.insert((*conn, account.clone(), state.clone())) {
            duplicates += 1;
            continue;
        }
        if let Some(&(sent, resp)) = responses.get(&(account.clone(), state.clone())) {
            from_request.push(at.saturating_duration_since(sent));
            match at.checked_duration_since(resp) {
                Some(d) => samples.push(d),
                None => {
                    before_response += 1;
                    samples.push(Duration::ZERO);
                }
            }
        }
    }
    let per_account: HashMap<&String, u64> =
        responses.keys().fold(HashMap::new(), |mut m, (a, _)| {
            *m.entry(a).or_insert(0) += 1;
            m
        });
    let expected: u64 = expected_connections
        .values()
        .map(|a| per_account.get(a).copied().unwrap_or(0))
        .sum();
    let (p50, p99, p999, max) = samples.summary();
    let (r50, r99, r999, rmax) = from_request.summary();
    cpu_after
        .since(&cpu_before, seen.len(), report)
        .field("mutations", responses.len())
        .field(
            "mutations_per_s",
            round(responses.len() as f64 / write_seconds),
        )
        .field("notifications_expected", expected)
        .field("notifications_received", seen.len())
        .field(
            "coalesced_or_missing",
            expected.saturating_sub(seen.len() as u64),
        )
        .field("duplicates", duplicates)
        .field(
            "connections_missing_final_state",
            opened.saturating_sub(complete),
        )
        .field("arrived_before_response", before_response)
        .field("latency_p50_ms", p50)
        .field("latency_p99_ms", p99)
        .field("latency_p999_ms", p999)
        .field("latency_max_ms", max)
        .field("from_request_p50_ms", r50)
        .field("from_request_p99_ms", r99)
        .field("from_request_p999_ms", r999)
        .field("from_request_max_ms", rmax)
        .field("server_rss_end_kib", rss_kib(run.pid).unwrap_or(0))
}

/// Processor time used so far by the server (when its pid is known) and by this tool.
struct CpuReading {
    server: Option<Duration>,
    tool: Option<Duration>,
}

impl CpuReading {
    fn now(server_pid: Option<u32>) -> Self {
        CpuReading {
            server: server_pid.and_then(cpu_time_of),
            tool: own_cpu_time(),
        }
    }

    /// Adds to `report` the processor time spent since `before` per notification, in µs (0 when
    /// unknown): what each StateChange cost the server (everything it did meanwhile included,
    /// the writes too) and this tool.
    fn since(&self, before: &CpuReading, notifications: usize, report: Report) -> Report {
        let per = |b: Option<Duration>, a: Option<Duration>| match (b, a) {
            (Some(b), Some(a)) if notifications > 0 => {
                round(a.saturating_sub(b).as_secs_f64() * 1e6 / notifications as f64)
            }
            _ => 0.0,
        };
        report
            .field(
                "server_cpu_us_per_notification",
                per(before.server, self.server),
            )
            .field("tool_cpu_us_per_notification", per(before.tool, self.tool))
    }
}

/// When a mutation was sent and when its response arrived.
pub type WriteTimes = (Instant, Instant);

/// Mutates the users' inboxes round-robin at `run.rate` (each account by one writer task);
/// returns each (account, new state) with when its request was sent and its response arrived,
/// and each account's final state.
pub fn write(
    users: &[Credentials],
    rate: f64,
    sessions: &[Session],
    count: Option<u64>,
) -> (
    HashMap<(String, String), WriteTimes>,
    HashMap<String, String>,
) {
    let measured = count.is_some();
    let count = count.unwrap_or(sessions.len() as u64);
    let writers = sessions.len().clamp(1, 8);
    let interval = Duration::from_secs_f64(writers as f64 / rate.max(0.001));
    let results = Arc::new(Mutex::new((HashMap::new(), HashMap::new())));
    actix_web::rt::System::new().block_on(async {
        let client = jmap::client();
        let inboxes = inboxes(&client, sessions, users).await;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (client, sessions, users, inboxes, results) = (
                client.clone(),
                sessions.to_vec(),
                users.to_vec(),
                inboxes.clone(),
                results.clone(),
            );
            tasks.push(actix_web::rt::spawn(async move {
                // Each account has one writer, so its mutations commit in the order their
                // responses arrive and the last response holds the account's final state.
                let own: Vec<usize> = (w..sessions.len()).step_by(writers).collect();
                // Writers start a fraction of the interval apart, so the mutations are spread
                // evenly over time: started together, they came in bursts of `writers`.
                actix_web::rt::time::sleep(interval.mul_f64(w as f64 / writers as f64)).await;
                let mut tick = actix_web::rt::time::interval(interval);
                let mut k = w as u64;
                while k < count {
                    tick.tick().await;
                    let a = own[(k as usize / writers) % own.len()];
                    // Warm-up values (count = None) never equal measured ones, so each measured
                    // write really changes the mailbox (an update to the same value changes no state).
                    let sort_order = (k % 1000) + 1 + if measured { 0 } else { 2000 };
                    if let Some((state, times)) =
                        mutate_inbox(&client, &sessions[a], &users[a], &inboxes[a], sort_order)
                            .await
                    {
                        let mut res = results.lock().unwrap();
                        res.0
                            .insert((sessions[a].account_id.clone(), state.clone()), times);
                        res.1.insert(sessions[a].account_id.clone(), state);
                    }
                    k += writers as u64;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    Arc::try_unwrap(results)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}

/// The id of each user's inbox.
pub async fn inboxes(
    client: &awc::Client,
    sessions: &[Session],
    users: &[Credentials],
) -> Vec<String> {
    let mut inboxes = Vec::new();
    for (s, u) in sessions.iter().zip(users) {
        let r = jmap::call(client, s, u, &[CORE, MAIL], json!([["Mailbox/query", {"accountId": s.account_id, "filter": {"role": "inbox"}}, "0"]])).await.expect("inbox");
        inboxes.push(r[0][1]["ids"][0].as_str().unwrap_or_default().to_owned());
    }
    inboxes
}

/// Mutates `account`'s inbox (its `sortOrder` to `value`); returns the new Mailbox state with
/// when the request was sent and its response arrived (`None` if nothing changed or it failed).
pub async fn mutate_inbox(
    client: &awc::Client,
    session: &Session,
    creds: &Credentials,
    inbox: &str,
    value: u64,
) -> Option<(String, WriteTimes)> {
    let calls = json!([["Mailbox/set", {"accountId": session.account_id, "update": {inbox: {"sortOrder": value}}}, "0"]]);
    let sent = Instant::now();
    let r = jmap::call(client, session, creds, &[CORE, MAIL], calls)
        .await
        .ok()?;
    let at = Instant::now();
    let state = r[0][1]["newState"]
        .as_str()
        .filter(|s| Some(*s) != r[0][1]["oldState"].as_str())?;
    Some((state.to_owned(), (sent, at)))
}

/// Waits (at most 30 s) until every open connection saw its account's final state; returns how
/// many did.
pub fn wait_for_finals(
    shared: &Shared,
    conns: &HashMap<usize, String>,
    finals: &HashMap<String, String>,
    opened: usize,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done: HashSet<usize> = shared
            .arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, a, s, _)| conns.get(c) == Some(a) && finals.get(a) == Some(s))
            .map(|(c, ..)| *c)
            .collect();
        if done.len() >= opened || Instant::now() > deadline {
            return done.len();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How opening the connections went.
pub struct Opened {
    pub opened: usize,
    pub failed: usize,
    pub first_failure: Option<String>,
    pub time: Duration,
    /// Server RSS before and after, when its pid is known.
    pub rss_before: Option<u64>,
    pub rss_open: Option<u64>,
}

/// Adds what opening the connections took to `report`: counts, time and server memory.
pub fn opening_report(mut report: Report, run: &PushRun, o: Opened) -> Report {
    report = report
        .field("transport", format!("{:?}", run.transport))
        .field("connections_asked", run.connections)
        .field("connections_open", o.opened)
        .field("connections_failed", o.failed)
        .field("open_seconds", round(o.time.as_secs_f64()))
        .field("accounts", run.users.len());
    if let Some(f) = o.first_failure {
        report = report.field("first_failure", f);
    }
    if let (Some(a), Some(b)) = (o.rss_before, o.rss_open) {
        report = report
            .field("server_rss_before_kib", a)
            .field("server_rss_open_kib", b);
        if o.opened > 0 {
            report = report.field(
                "server_kib_per_connection",
                round(b.saturating_sub(a) as f64 / o.opened as f64),
            );
        }
    }
    report
}
