//! Metrics an operator can scrape: `GET /metrics` in the Prometheus text format on a listener of
//! its own (`[metrics] listen`, off by default), never on the public API.
//!
//! The counters live in one process-wide [`Metrics`] (like Prometheus's own default registry):
//! every part of the server counts where the event happens, without a handle threaded through.
//! Gauges that the store knows better (the webhook outbox's depth, the connection pool) are read
//! when scraped. docs/operating.md lists every metric.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::store::Store;

/// Every metric Herald exports.
pub struct Metrics {
    registry: Registry,
    /// Open push connections, by transport (`websocket`, `eventsource`).
    pub push_connections: IntGaugeVec,
    /// StateChange messages written to push connections, by transport.
    pub state_changes_sent: IntCounterVec,
    /// Writes that joined a StateChange already waiting on a connection, by transport.
    pub state_changes_merged: IntCounterVec,
    /// From the commit of the oldest write in a StateChange to its write to the socket.
    pub push_latency_seconds: HistogramVec,
    /// API requests answered (HTTP and WebSocket), and their time in the server.
    pub api_requests: IntCounter,
    pub api_request_seconds: Histogram,
    /// Method calls, by method name as requested, and their run time.
    pub method_calls: IntCounterVec,
    pub method_call_seconds: HistogramVec,
    /// From a request's hand-off to the dispatcher to a dispatcher thread taking it up.
    pub dispatcher_queue_seconds: Histogram,
    /// Waits for a store connection from the pool.
    pub store_pool_wait_seconds: Histogram,
    /// PushSubscriptions retired by the webhook sender, by reason: `gone` (404/410 from the push
    /// service), `expired`.
    pub webhook_subscriptions_retired: IntCounterVec,
    /// LMTP recipients by outcome: `delivered`, `unknown` (550 at RCPT), `too_large`,
    /// `refused` (the message cannot be stored), `failed` (451).
    pub lmtp_recipients: IntCounterVec,
    /// Webhook POSTs by outcome: `accepted`, `failed`.
    pub webhook_posts: IntCounterVec,
    webhook_outbox_rows: IntGauge,
    submission_outbox_rows: IntGauge,
    store_pool_connections: IntGaugeVec,
    store_lock_waits: IntCounter,
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
    #[allow(
        clippy::expect_used,
        reason = "names are fixed and distinct: only a typo can fail"
    )]
    registry
        .register(Box::new(m.clone()))
        .expect("metric names are unique");
    m
}

#[allow(clippy::expect_used, reason = "fixed, valid metric definitions")]
static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new_custom(Some("herald".into()), None).expect("a valid prefix");
    let counter_vec = |name: &str, help: &str, label: &str| {
        register(
            &r,
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid"),
        )
    };
    Metrics {
        push_connections: register(
            &r,
            IntGaugeVec::new(
                Opts::new("push_connections", "Open push connections"),
                &["transport"],
            )
            .expect("valid"),
        ),
        state_changes_sent: counter_vec(
            "state_changes_sent_total",
            "StateChange messages written to push connections",
            "transport",
        ),
        state_changes_merged: counter_vec(
            "state_changes_merged_total",
            "Writes merged into a StateChange already waiting on a push connection",
            "transport",
        ),
        push_latency_seconds: register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "push_latency_seconds",
                    "Commit of the oldest write in a StateChange to its write to the socket",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ]),
                &["transport"],
            )
            .expect("valid"),
        ),
        api_requests: register(
            &r,
            IntCounter::new("api_requests_total", "JMAP API requests answered").expect("valid"),
        ),
        api_request_seconds: register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new("api_request_seconds", "Time to answer a JMAP API request")
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
            )
            .expect("valid"),
        ),
        method_calls: counter_vec("method_calls_total", "JMAP method calls", "method"),
        method_call_seconds: register(
            &r,
            HistogramVec::new(
                HistogramOpts::new("method_call_seconds", "Time to run one JMAP method call")
                    .buckets(FAST_BUCKETS.to_vec()),
                &["method"],
            )
            .expect("valid"),
        ),
        dispatcher_queue_seconds: register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "dispatcher_queue_seconds",
                    "Wait of an API request for a dispatcher thread",
                )
                .buckets(FAST_BUCKETS.to_vec()),
            )
            .expect("valid"),
        ),
        store_pool_wait_seconds: register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "store_pool_wait_seconds",
                    "Wait for a store connection from the pool",
                )
                .buckets(FAST_BUCKETS.to_vec()),
            )
            .expect("valid"),
        ),
        webhook_subscriptions_retired: counter_vec(
            "webhook_subscriptions_retired_total",
            "PushSubscriptions retired by the webhook sender",
            "reason",
        ),
        lmtp_recipients: counter_vec(
            "lmtp_recipients_total",
            "LMTP recipients by outcome",
            "outcome",
        ),
        webhook_posts: counter_vec("webhook_posts_total", "Webhook POSTs by outcome", "outcome"),
        webhook_outbox_rows: register(
            &r,
            IntGauge::new(
                "webhook_outbox_rows",
                "Pending webhook deliveries (read when scraped)",
            )
            .expect("valid"),
        ),
        submission_outbox_rows: register(
            &r,
            IntGauge::new(
                "submission_outbox_rows",
                "Recipients of EmailSubmissions not yet delivered, refused or given up (read when scraped)",
            )
            .expect("valid"),
        ),
        store_pool_connections: register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "store_pool_connections",
                    "Store connections of this process by state (read when scraped)",
                ),
                &["state"],
            )
            .expect("valid"),
        ),
        store_lock_waits: register(
            &r,
            IntCounter::new(
                "store_lock_waits_total",
                "Statements of this process that waited for SQLite's write lock (read when scraped)",
            )
            .expect("valid"),
        ),
        registry: r,
    }
});

/// Buckets for waits and calls that are usually well under a millisecond.
const FAST_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// Observes a wait for a store connection (`store::observe_pool_waits`).
pub fn pool_wait(waited: std::time::Duration) {
    metrics()
        .store_pool_wait_seconds
        .observe(waited.as_secs_f64());
}

/// Observes how long a request sent at `queued_at` waited for a dispatcher thread.
pub fn queued(queued_at: std::time::Instant) {
    metrics()
        .dispatcher_queue_seconds
        .observe(queued_at.elapsed().as_secs_f64());
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Labels for a push transport.
pub const WEBSOCKET: &str = "websocket";
pub const EVENTSOURCE: &str = "eventsource";

/// The series one push connection moves on every StateChange, looked up once per connection
/// rather than by label on every frame.
#[derive(Clone, Debug)]
pub struct PushSeries {
    sent: prometheus::IntCounter,
    merged: prometheus::IntCounter,
    latency: prometheus::Histogram,
}

impl PushSeries {
    /// The series of `transport` ([`WEBSOCKET`], [`EVENTSOURCE`]).
    pub fn of(transport: &str) -> Self {
        let m = metrics();
        PushSeries {
            sent: m.state_changes_sent.with_label_values(&[transport]),
            merged: m.state_changes_merged.with_label_values(&[transport]),
            latency: m.push_latency_seconds.with_label_values(&[transport]),
        }
    }

    /// A StateChange was written; its oldest write committed at `oldest_commit_ms` (when known:
    /// writes replayed from the change log have no commit time).
    pub fn sent(&self, oldest_commit_ms: Option<i64>) {
        self.sent.inc();
        if let Some(at) = oldest_commit_ms {
            let seconds = (crate::store::now_ms() - at).max(0) as f64 / 1000.0;
            self.latency.observe(seconds);
        }
    }

    /// A write joined a StateChange already waiting.
    pub fn merged(&self) {
        self.merged.inc();
    }
}

/// The text exposition, with the store's gauges read now. Blocking: call off the event loop.
pub fn render(store: &Store) -> String {
    let m = metrics();
    match store.conn() {
        Ok(mut conn) => {
            match crate::store::webhook_outbox::depth(&mut conn) {
                Ok(n) => m.webhook_outbox_rows.set(n),
                Err(e) => log::warn!("metrics: outbox depth: {e}"),
            }
            match crate::store::submission_outbox::depth(&mut conn) {
                Ok(n) => m.submission_outbox_rows.set(n),
                Err(e) => log::warn!("metrics: submission outbox depth: {e}"),
            }
        }
        Err(e) => log::warn!("metrics: {e}"),
    }
    let (open, idle) = store.pool_state();
    m.store_pool_connections
        .with_label_values(&["idle"])
        .set(i64::from(idle));
    m.store_pool_connections
        .with_label_values(&["in_use"])
        .set(i64::from(open.saturating_sub(idle)));
    let waits = crate::store::sqlite_wait::waits_begun();
    m.store_lock_waits
        .inc_by(waits.saturating_sub(m.store_lock_waits.get()));
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        log::warn!("metrics: {e}");
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves `GET /metrics` on `listener`; stop it through the handle.
pub fn serve(
    listener: std::net::TcpListener,
    store: Store,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let store = web::Data::new(store);
    let server = HttpServer::new(move || {
        App::new().app_data(store.clone()).route(
            "/metrics",
            web::get().to(|store: web::Data<Store>| async move {
                let store = store.get_ref().clone();
                match web::block(move || render(&store)).await {
                    Ok(text) => HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4; charset=utf-8")
                        .body(text),
                    Err(_) => HttpResponse::InternalServerError().finish(),
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(handle)
}
