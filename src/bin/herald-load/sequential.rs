//! `push --sequential`: one writer makes each mutation only after the previous one reached every
//! open connection of its account, and each StateChange is timed from the mutation's response.
//!
//! This is how a user experiences push at a human pace (flag one message, then the next): a
//! server that holds back a change because another one just went out shows here as latency,
//! which a fixed-rate run (`push --rate`) hides among concurrent writes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::Report;
use crate::push::{self, PushRun, Shared};
use crate::stats::Samples;

/// How long one mutation's pushes may take before it counts as missing and the run moves on.
const PUSH_WAIT: Duration = Duration::from_secs(10);

/// Latencies of one transport.
#[derive(Default)]
struct Figures {
    from_response: Samples,
    from_request: Samples,
    before_response: u64,
}

/// Runs `mutations` sequential mutations over the run's accounts, round-robin.
pub fn run(run: PushRun) -> Report {
    let sessions = push::sessions_at(&run.base, &run.users);
    let (report, shared, opened) = push::open_for_measuring(&run, &sessions);
    if opened < run.connections {
        return report.field("error", "not every connection opened");
    }
    // Which connections listen to each account.
    let mut listeners: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..run.connections {
        listeners.entry(i % sessions.len()).or_default().push(i);
    }
    let mut figures: HashMap<&str, Figures> = HashMap::new();
    let mut missing = 0u64;
    let started = Instant::now();
    actix_web::rt::System::new().block_on(async {
        let client = crate::jmap::client();
        let inboxes = push::inboxes(&client, &sessions, &run.users).await;
        // The first round (one mutation per account) is a warm-up: it makes sure every
        // subscription is active; values 2001… never equal measured ones, so each write changes.
        let warm_up = sessions.len() as u64;
        for k in 0..warm_up + run.mutations {
            let a = (k as usize) % sessions.len();
            let value = if k < warm_up { 2001 + k } else { k % 1000 + 1 };
            let Some((state, (sent, responded))) =
                push::mutate_inbox(&client, &sessions[a], &run.users[a], &inboxes[a], value).await
            else {
                missing += 1;
                continue;
            };
            let arrivals = wait_for(&shared, &sessions[a].account_id, &state, &listeners[&a]);
            if k < warm_up {
                continue;
            }
            missing += (listeners[&a].len() - arrivals.len()) as u64;
            for (conn, at) in arrivals {
                let name = if run.transport.is_ws(conn) {
                    "ws"
                } else {
                    "sse"
                };
                let f = figures.entry(name).or_default();
                f.from_request.push(at.saturating_duration_since(sent));
                match at.checked_duration_since(responded) {
                    Some(d) => f.from_response.push(d),
                    None => {
                        f.before_response += 1;
                        f.from_response.push(Duration::ZERO);
                    }
                }
            }
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut report = report
        .field("sequential", true)
        .field("mutations", run.mutations)
        .field(
            "mutations_per_s",
            crate::api::round(run.mutations as f64 / seconds),
        )
        .field("notifications_missing", missing);
    let mut names: Vec<&str> = figures.keys().copied().collect();
    names.sort_unstable();
    for name in names {
        let f = figures.get_mut(name).expect("a transport seen");
        let (p50, p99, p999, max) = f.from_response.summary();
        let (r50, r99, _, _) = f.from_request.summary();
        report = report
            .field(&format!("{name}_latency_p50_ms"), p50)
            .field(&format!("{name}_latency_p99_ms"), p99)
            .field(&format!("{name}_latency_p999_ms"), p999)
            .field(&format!("{name}_latency_max_ms"), max)
            .field(&format!("{name}_from_request_p50_ms"), r50)
            .field(&format!("{name}_from_request_p99_ms"), r99)
            .field(
                &format!("{name}_arrived_before_response"),
                f.before_response,
            );
    }
    report
}

/// Waits (at most [`PUSH_WAIT`]) until each of `listeners` received `state` of `account`;
/// returns each one's first arrival of it.
fn wait_for(
    shared: &Shared,
    account: &str,
    state: &str,
    listeners: &[usize],
) -> Vec<(usize, Instant)> {
    let deadline = Instant::now() + PUSH_WAIT;
    let mut arrivals = shared.arrivals.lock().unwrap();
    loop {
        let mut found: HashMap<usize, Instant> = HashMap::new();
        for (conn, a, s, at) in arrivals.iter() {
            if a == account && s == state && listeners.contains(conn) {
                found.entry(*conn).or_insert(*at);
            }
        }
        let now = Instant::now();
        if found.len() == listeners.len() || now >= deadline {
            // What was matched is no longer needed: keep the scan short.
            arrivals.clear();
            return found.into_iter().collect();
        }
        arrivals = shared
            .arrived
            .wait_timeout(arrivals, deadline - now)
            .unwrap()
            .0;
    }
}
