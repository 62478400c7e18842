//! Test harness: a real Herald node in-process on 127.0.0.1:0 with a fresh store per test, and a
//! plain HTTP client that speaks to it as any JMAP client would.
#![allow(dead_code)]

use std::path::Path;

pub mod backend;
pub mod lmtp;
pub mod pg;
pub mod postfix;
pub mod push;
pub mod smtp_sink;
pub mod tools;
pub mod webhook_sink;

/// `#[on_both_backends]`: the test runs as `name::on_sqlite` and `name::on_postgresql`.
pub use herald_test_macros::on_both_backends;

use awc::http::StatusCode;
use herald::config::Config;
use herald::store::{Store, users};
use serde_json::Value;

pub const CORE: &str = "urn:ietf:params:jmap:core";

/// A running node and its store.
pub struct TestServer {
    pub base: String,
    pub store: Store,
    pub config: Config,
    /// The node's push registry, for assertions on what push sessions hold.
    pub registry: actix::Addr<herald::push::registry::Registry>,
    /// The node's webhook sender.
    pub webhooks: actix::Addr<herald::push::webhook::WebhookSender>,
    /// Where the node's LMTP listener listens (`host:port`), unless turned off.
    pub lmtp: Option<String>,
    /// Where the node serves `GET /metrics`, if `[metrics] listen` was set.
    pub metrics: Option<std::net::SocketAddr>,
    handle: actix_web::dev::ServerHandle,
    /// `server::Running::run`: ends once the HTTP server has stopped and the webhook sender and
    /// cluster bus have been stopped after it.
    running: Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// How a test client authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    Basic(String, String),
    Bearer(String),
    None,
}

impl Auth {
    pub fn basic(user: &str, password: &str) -> Auth {
        Auth::Basic(user.into(), password.into())
    }
}

/// An HTTP answer: status, content type and body (parsed as JSON when it is JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl TestServer {
    /// Starts a node with the default configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a node after `adjust` has changed the configuration. Its store is a fresh one on
    /// the test's backend (`backend::current`), unless `adjust` sets `store.url`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::load(Path::new("/nonexistent/config.toml"), Vec::new()).unwrap();
        config.store.url = backend::fresh_store_url(dir.path());
        config.server.listen = "127.0.0.1:0".into();
        config.server.dispatcher_threads = 2;
        config.server.workers = 1;
        config.server.shutdown_timeout_secs = 1;
        config.lmtp.listen = "127.0.0.1:0".into();
        adjust(&mut config);
        let store =
            Store::open(&config.store.url, herald::server::pool_size(&config)).expect("store");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let running = herald::server::start(&config, store.clone(), listener).expect("start");
        let handle = running.server.handle();
        let lmtp = running.lmtp.as_ref().map(|l| l.local_addr.clone());
        let metrics = running.metrics_addr;
        let (base, registry, webhooks) = (
            running.base_url.clone(),
            running.registry.clone(),
            running.webhooks.clone(),
        );
        TestServer {
            base,
            store,
            config,
            registry,
            webhooks,
            lmtp,
            metrics,
            handle,
            running: Some(actix_web::rt::spawn(running.run())),
            _dir: dir,
        }
    }

    /// Adds a user and returns Basic credentials for them.
    pub fn add_user(&self, name: &str, password: &str) -> Auth {
        let mut conn = self.store.conn().unwrap();
        users::create(&mut conn, name, password).expect("create user");
        Auth::basic(name, password)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str, auth: &Auth) -> Answer {
        let req = authorize(client().get(self.url(path)), auth);
        answer(req.send().await.expect("GET")).await
    }

    /// POST a raw body with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        auth: &Auth,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let req = authorize(client().post(self.url(path)), auth)
            .insert_header(("Content-Type", content_type));
        answer(req.send_body(body).await.expect("POST")).await
    }

    /// POST a JMAP request to the API.
    pub async fn api(&self, auth: &Auth, request: Value) -> Answer {
        self.post_raw(
            "/jmap/api",
            auth,
            "application/json",
            request.to_string().into_bytes(),
        )
        .await
    }

    /// POST a JMAP request and return its methodResponses, asserting HTTP 200.
    pub async fn call(&self, auth: &Auth, using: &[&str], calls: Value) -> Vec<Value> {
        let a = self
            .api(
                auth,
                serde_json::json!({"using": using, "methodCalls": calls}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        a.body["methodResponses"].as_array().unwrap().clone()
    }

    /// Runs the real `herald` binary (all defaults, this node's store) with `args`; returns
    /// whether it succeeded, and its stdout followed by its stderr.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        self.cli_with_input(args, b"")
    }

    /// [`TestServer::cli`] with `input` on standard input (`herald deliver` reads a message).
    pub fn cli_with_input(&self, args: &[&str], input: &[u8]) -> (bool, String) {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--config", "/nonexistent/config.toml"])
            .args(args)
            .env("HERALD_STORE_URL", &self.config.store.url)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run herald");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().expect("herald ran");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Stops the node at once, and waits until it has: its HTTP server, then its webhook sender
    /// (POSTs in flight are abandoned, as in a crash, so their claims stay until the lease runs
    /// out) and its cluster bus.
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(running) = self.running.take() {
            running.await.expect("node task").expect("node");
        }
    }
}

impl Drop for TestServer {
    /// A node the test did not stop: the System ends with the test, but the webhook sender runs
    /// on an arbiter thread of its own, with store connections, so halt it and the server.
    fn drop(&mut self) {
        if self.running.is_some() {
            self.webhooks.do_send(herald::push::webhook::Halt);
            drop(self.handle.stop(false));
        }
    }
}

pub fn client() -> awc::Client {
    // Two rustls crypto backends are in the tree (ring, and aws-lc-rs via dev-dependencies), so
    // rustls cannot choose one by itself (../shared/STACK.md, pitfall 4).
    let _ = rustls::crypto::ring::default_provider().install_default();
    awc::Client::builder()
        .disable_redirects()
        .timeout(std::time::Duration::from_secs(30))
        .finish()
}

pub fn authorize(req: awc::ClientRequest, auth: &Auth) -> awc::ClientRequest {
    match auth {
        Auth::Basic(u, p) => req.basic_auth(u, p),
        Auth::Bearer(t) => req.bearer_auth(t),
        Auth::None => req,
    }
}

pub async fn answer<S>(mut res: awc::ClientResponse<S>) -> Answer
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let raw = res
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .expect("body")
        .to_vec();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Answer {
        status: res.status(),
        content_type,
        headers: res.headers().clone(),
        body,
        raw,
    }
}

/// Polls `probe` until it yields a value, for at most `within`; panics with `what` otherwise.
/// For conditions the test cannot be told about (a slot freed on the server, a row written by
/// another process): each probe is a real request, and the deadline bounds the test.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        actix_web::rt::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(100));
    }
}
