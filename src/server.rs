//! Assembling and starting a Herald node on an already-bound listener.
//!
//! Taking the listener (rather than an address) lets tests bind `127.0.0.1:0` and know the port,
//! and lets the command line report a taken port as one clear line.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context};
use actix_web::{App, HttpServer, middleware, web};

use crate::config::Config;
use crate::dispatcher::Dispatcher;
use crate::http::{self, AppState};
use crate::jmap::session::ServerInfo;
use crate::jmap::{capability, methods::mailbox};
use crate::lmtp::LmtpServer;
use crate::outbound::SubmissionSender;
use crate::push::PushState;
use crate::push::StateChanged;
use crate::push::cluster_bus::ClusterBus;
use crate::push::local_bus::LocalBus;
use crate::push::registry::Registry;
use crate::push::vapid::{self, VapidKey, VapidSigner};
use crate::store::credentials::CredentialCache;
use crate::store::{Store, StoreUrl, secrets};
use actix::Recipient;
use serde_json::json;

/// A started node.
pub struct Running {
    /// The HTTP server; await it to run until shutdown, or stop it through its handle.
    pub server: actix_web::dev::Server,
    /// The address actually listened on.
    pub addr: SocketAddr,
    /// The base URL advertised in the session.
    pub base_url: String,
    /// The push registry (for operators and tests: `push::registry::GetStats`).
    pub registry: actix::Addr<Registry>,
    /// The webhook sender (`push::webhook::Halt` stops it, as at shutdown).
    pub webhooks: actix::Addr<crate::push::webhook::WebhookSender>,
    /// The cluster bus, on PostgreSQL.
    pub cluster_bus: Option<actix::Addr<ClusterBus>>,
    /// The local bus, on SQLite.
    pub local_bus: Option<actix::Addr<LocalBus>>,
    /// The LMTP listener, unless `[lmtp] listen` is empty.
    pub lmtp: Option<LmtpServer>,
    /// Where `GET /metrics` is served, unless `[metrics] listen` is empty.
    pub metrics_addr: Option<SocketAddr>,
    metrics: Option<actix_web::dev::ServerHandle>,
    /// How long a stopping node waits for LMTP deliveries in progress.
    shutdown_grace: Duration,
}

impl Running {
    /// Serves until SIGTERM or SIGINT (or `ServerHandle::stop`), then stops what runs beside
    /// the HTTP server, so that a stopped node pushes nothing more: the webhook sender gets
    /// `Halt` (in-flight POSTs are abandoned and their claims left to the lease, as Halt
    /// documents) and the cluster bus closes its LISTEN connection.
    ///
    /// On a signal, everything stops taking work at once and drains together, within
    /// `server.shutdown_timeout_secs`: LMTP refuses new sessions and answers those in progress;
    /// push streams close (a WebSocket with 1001; their clients reconnect and resume), which
    /// would otherwise hold the HTTP server's graceful stop for its whole timeout; HTTP requests
    /// in progress finish. A second signal stops at once.
    pub async fn run(mut self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let lmtp = self.lmtp.take();
        let mut server = self.server;
        let served = tokio::select! {
            served = &mut server => {
                if let Some(lmtp) = lmtp {
                    lmtp.stop(self.shutdown_grace).await;
                }
                served
            }
            () = stop_signal() => {
                log::info!(
                    "stopping: new connections refused, push streams closed, work in progress \
                     finishing"
                );
                let _ = self.registry.send(crate::push::registry::CloseAll).await;
                // The server future runs the stop commands: it is polled beside them.
                let stops = async {
                    tokio::join!(
                        async {
                            if let Some(lmtp) = lmtp {
                                lmtp.stop(self.shutdown_grace).await;
                            }
                        },
                        handle.stop(true)
                    );
                };
                let forced = async {
                    stop_signal().await;
                    log::warn!("second signal: stopping at once");
                    handle.stop(false).await;
                };
                let (served, ()) = tokio::join!(server, async {
                    tokio::select! {
                        () = stops => {}
                        () = forced => {}
                    }
                });
                served
            }
        };
        if let Some(metrics) = self.metrics {
            metrics.stop(true).await;
        }
        // Either may have stopped already (a test halts a sender to kill a node).
        let _ = self.webhooks.send(crate::push::webhook::Halt).await;
        if let Some(bus) = self.cluster_bus {
            let _ = bus.send(crate::push::cluster_bus::Stop).await;
        }
        if let Some(bus) = self.local_bus {
            let _ = bus.send(crate::push::cluster_bus::Stop).await;
        }
        served
    }
}

/// SIGTERM or SIGINT. Herald handles them itself (`HttpServer::disable_signals`), so that LMTP
/// and push streams stop with HTTP rather than after it.
async fn stop_signal() {
    use actix_web::rt::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            log::warn!("cannot listen for SIGTERM/SIGINT ({e}); stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Dispatcher threads when the configuration says 0.
fn default_dispatcher_threads() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Pool size for a configuration: dispatcher threads plus a few for everything else.
pub fn pool_size(config: &Config) -> u32 {
    if config.store.pool_size > 0 {
        return config.store.pool_size;
    }
    let threads = match config.server.dispatcher_threads {
        0 => default_dispatcher_threads(),
        n => n,
    };
    threads as u32 + 4
}

/// Session-level capability objects besides core (RFC 8620 §2): one entry per implemented
/// capability.
fn session_capabilities(
    _config: &Config,
    base_url: &str,
    vapid: &VapidKey,
) -> BTreeMap<&'static str, serde_json::Value> {
    let mut caps = BTreeMap::new();
    // RFC 8887 §3 (checklist WS-01): the WebSocket URL, ws(s) as the base URL is http(s).
    let ws_base = match base_url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => format!("wss://{rest}"),
        Some((_, rest)) => format!("ws://{rest}"),
        None => format!("ws://{base_url}"),
    };
    caps.insert(
        crate::jmap::capability::WEBSOCKET,
        serde_json::json!({"url": format!("{ws_base}/jmap/ws"), "supportsPush": true}),
    );
    // RFC 8621 §1.3: the session-level value is an empty object (MCAP-01).
    caps.insert(capability::MAIL, json!({}));
    caps.insert(capability::SUBMISSION, json!({}));
    caps.insert(capability::VACATION_RESPONSE, json!({}));
    // RFC 9749 §3: the key a browser subscribes with, so push services accept our pushes.
    caps.insert(
        capability::WEBPUSH_VAPID,
        json!({"applicationServerKey": vapid.public_key()}),
    );
    caps
}

/// The cluster's VAPID key, made and stored by the first node that starts.
fn vapid_key(store: &Store) -> std::io::Result<VapidKey> {
    let io = |e: String| std::io::Error::other(e);
    let mut conn = store.conn().map_err(|e| io(e.to_string()))?;
    let secret = secrets::get_or_create(&mut conn, vapid::SECRET_NAME, VapidKey::generate_secret)
        .map_err(|e| io(e.to_string()))?;
    VapidKey::from_secret(&secret).map_err(|e| io(e.to_string()))
}

/// Per-account capability objects (RFC 8620 §2 `accountCapabilities`).
fn account_capabilities(config: &Config) -> BTreeMap<&'static str, serde_json::Value> {
    let mut caps = BTreeMap::new();
    // MCAP-02
    caps.insert(
        capability::MAIL,
        json!({
            "maxMailboxesPerEmail": crate::jmap::methods::email::MAX_MAILBOXES_PER_EMAIL,
            "maxMailboxDepth": mailbox::MAX_DEPTH,
            "maxSizeMailboxName": mailbox::MAX_NAME_OCTETS,
            "maxSizeAttachmentsPerEmail": config.limits.max_size_upload,
            "emailQuerySortOptions": crate::jmap::methods::email_query::SORT_OPTIONS,
            "mayCreateTopLevelMailbox": true,
        }),
    );
    // MCAP-03: submissionExtensions is an object (EHLO keyword → arguments); FUTURERELEASE is
    // added per session when delayed send is on (`ServerInfo::capabilities_of`).
    caps.insert(
        capability::SUBMISSION,
        json!({"maxDelayedSend": config.submission.max_delayed_send_secs, "submissionExtensions": {}}),
    );
    // MCAP-05
    caps.insert(capability::VACATION_RESPONSE, json!({}));
    caps
}

/// Indexes, on a thread of its own, the emails stored before the full-text index existed
/// (after an upgrade); a store without such emails costs one `COUNT`.
fn index_search_backlog(store: Store) {
    let spawned = std::thread::Builder::new()
        .name("search-backlog".into())
        .spawn(move || {
            if let Err(e) = crate::store::email_search::index_backlog(&store) {
                log::error!(
                    "search index: indexing the backlog failed: {e}; it resumes at the next start"
                );
            }
        });
    if let Err(e) = spawned {
        log::error!("search index: cannot start the backlog thread: {e}");
    }
}

/// What the JMAP layer knows of this server.
fn server_info(config: &Config, base_url: &str, vapid_key: &VapidKey) -> ServerInfo {
    let mut server_info = ServerInfo::new(
        base_url,
        config.limits.clone(),
        session_capabilities(config, base_url, vapid_key),
        account_capabilities(config),
        config.jmap.strict_using,
    );
    server_info.mail_domain = config.submission.domain.clone();
    server_info.query_limits = config.query.clone();
    server_info.relay_url = config.submission.relay.trim().to_owned();
    server_info.max_delayed_send_secs = config.submission.max_delayed_send_secs;
    server_info.vacation_reply_interval_secs = config.submission.vacation_reply_interval_secs;
    server_info.webhooks = crate::jmap::webhook_policy::WebhookPolicy::from_config(&config.push);
    server_info
}

/// Binds the `[metrics]` listener, when one is configured.
fn bind_metrics(config: &Config) -> std::io::Result<Option<TcpListener>> {
    let listen = config.metrics.listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    TcpListener::bind(listen)
        .map(Some)
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics {listen}: {e}")))
}

/// Serves `GET /metrics` on `listener`; its handle and address.
fn start_metrics(
    listener: TcpListener,
    store: Store,
) -> std::io::Result<(actix_web::dev::ServerHandle, SocketAddr)> {
    let addr = listener.local_addr()?;
    log::info!("metrics on http://{addr}/metrics");
    Ok((crate::metrics::serve(listener, store)?, addr))
}

/// Starts a node on `listener`. Must run inside an actix system.
#[expect(
    clippy::too_many_lines,
    reason = "a node's parts started in dependency order, each a few lines"
)]
pub fn start(config: &Config, store: Store, listener: TcpListener) -> std::io::Result<Running> {
    // awc's rustls needs a process-wide crypto provider (../shared/STACK.md, pitfall 4); a second
    // node in the same process finds it installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Every address first: one that cannot be had stops the start before anything runs, as one
    // line (actors already started would panic as the system went down without them).
    let metrics_listener = bind_metrics(config)?;
    let lmtp_listener = LmtpServer::bind(&config.lmtp)?;

    let addr = listener.local_addr()?;
    let base_url = match config.server.base_url.trim() {
        "" => format!("http://{addr}"),
        url => url.trim_end_matches('/').to_owned(),
    };
    crate::store::observe_pool_waits(crate::metrics::pool_wait);
    crate::memory_trim::start(Duration::from_secs(config.server.memory_trim_secs));
    let vapid_key = vapid_key(&store)?;
    let server_info = Arc::new(server_info(config, &base_url, &vapid_key));
    let credentials = Arc::new(CredentialCache::new(Duration::from_secs(
        config.auth.credential_cache_secs,
    )));
    let threads = match config.server.dispatcher_threads {
        0 => default_dispatcher_threads(),
        n => n,
    };
    let registry = Registry::new(
        store.clone(),
        Duration::from_secs(config.push.access_check_secs.max(1)),
    )
    .start();
    // Everything that must hear of committed writes: the push registry and the webhook sender.
    let subject = match config.push.vapid_subject.trim() {
        "" => format!("mailto:postmaster@{}", config.submission.domain),
        subject => subject.to_owned(),
    };
    let webhooks = crate::push::webhook::WebhookSender::start(
        store.clone(),
        &config.push,
        VapidSigner::new(vapid_key, subject),
    );
    // The submission outbox's sender hears of every EmailSubmission change (new submissions, on
    // any node) and needs the dispatcher, which starts after the buses: its context comes first.
    let submission_context = Context::<SubmissionSender>::new();
    let publishers: Vec<Recipient<StateChanged>> = vec![
        registry.clone().recipient(),
        webhooks.clone().recipient(),
        submission_context.address().recipient(),
    ];
    // One publication path per mode, each reading the change log to catch up, so no change is
    // pushed twice or skipped: on SQLite the LocalBus (this process's writes from the dispatcher,
    // other processes' from the log when the database changed); on PostgreSQL every node learns
    // of every write, its own included, through the ClusterBus (LISTEN/NOTIFY).
    let access_listeners = vec![registry.clone().recipient()];
    let store_error =
        |what: &str, e: crate::store::StoreError| std::io::Error::other(format!("{what}: {e}"));
    let (dispatcher_publishers, cluster_bus, local_bus) = match store.url() {
        StoreUrl::Sqlite(_) => {
            let bus = LocalBus::start(
                store.clone(),
                publishers,
                access_listeners,
                Duration::from_millis(config.push.change_poll_ms.max(1)),
            )
            .map_err(|e| store_error("local bus", e))?;
            (vec![bus.clone().recipient()], None, Some(bus))
        }
        StoreUrl::Postgres(url) => {
            let bus = ClusterBus::start(url.clone(), store.clone(), publishers, access_listeners)
                .map_err(|e| store_error("cluster bus", e))?;
            // The dispatcher publishes nothing itself: its writes come back through NOTIFY.
            (Vec::new(), Some(bus), None)
        }
    };
    index_search_backlog(store.clone());
    let store_for_metrics = store.clone();
    let dispatcher = Dispatcher::start(
        threads,
        store,
        server_info.clone(),
        credentials,
        dispatcher_publishers,
    );
    submission_context.run(SubmissionSender::new(
        dispatcher.clone(),
        config.submission.clone(),
    ));
    let (metrics, metrics_addr) = match metrics_listener {
        Some(listener) => {
            let (handle, addr) = start_metrics(listener, store_for_metrics)?;
            (Some(handle), Some(addr))
        }
        None => (None, None),
    };
    let lmtp = lmtp_listener
        .map(|bound| {
            LmtpServer::start(
                bound,
                &config.lmtp,
                dispatcher.clone(),
                config.submission.domain.clone(),
                config.limits.max_size_upload,
            )
        })
        .transpose()?;
    let state = web::Data::new(AppState {
        server: server_info,
        dispatcher,
        requests: http::limiter::ConcurrencyLimiter::default(),
        push: Arc::new(PushState::new(registry.clone(), config.push.clone())),
        uploads: http::limiter::ConcurrencyLimiter::default(),
        callers: http::callers::CallerHints::default(),
        body_timeout_secs: config.server.request_body_timeout_secs,
        failed_logins: http::failed_logins::FailedLogins::new(
            config.auth.max_failed_logins_per_minute,
        ),
    });

    let mut http_server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap_fn(http::cors::handle)
            .wrap(middleware::Logger::new("%a \"%r\" %s %Dms"))
            .configure(http::routes)
    })
    .shutdown_timeout(config.server.shutdown_timeout_secs)
    .disable_signals()
    // A StateChange is a small write that often follows another: with Nagle's algorithm it would
    // wait for the client's delayed ACK (40 ms on Linux) whenever the previous one is unacked.
    .tcp_nodelay(true);
    if config.server.workers > 0 {
        http_server = http_server.workers(config.server.workers);
    }
    let server = http_server.listen(listener)?.run();
    Ok(Running {
        server,
        addr,
        base_url,
        registry,
        webhooks,
        cluster_bus,
        local_bus,
        lmtp,
        metrics_addr,
        metrics,
        shutdown_grace: Duration::from_secs(config.server.shutdown_timeout_secs),
    })
}
