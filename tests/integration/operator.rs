//! `herald serve` and `herald migrate` as an operator meets them: nodes that start together on a
//! fresh database, addresses and values that cannot work (one line, nothing left running), a
//! UNIX socket another server holds, a store only Herald's user can read, passwords never
//! printed, one warning for an address that keeps guessing passwords, and a SIGTERM that does not
//! wait for push streams.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::cli::{herald, lines, run, text};
use crate::harness::{self, Auth, on_both_backends, pg};

/// A `herald serve` child, killed if the test ends before stopping it.
struct Node {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
}

/// `herald serve` in `dir` on a free HTTP port, logging at `info`, with `env` on top of the
/// defaults of [`herald`].
fn serve(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Node {
    let mut cmd = herald(dir);
    cmd.env("HERALD_SERVER_LISTEN", "127.0.0.1:0")
        .env("HERALD_SERVER_SHUTDOWN_TIMEOUT_SECS", "1")
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    Node { child, out, err }
}

impl Node {
    /// Waits until the node logs `pattern`; panics with what it logged if it exits first.
    fn until_logged(&self, pattern: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.err.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(pattern) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no {pattern:?} from the node; it logged {seen:#?}"),
            }
        }
    }

    /// Stops the node with SIGTERM; returns the rest of its stdout and stderr.
    fn stop(mut self) -> (String, String) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        self.child.wait().unwrap();
        let rest = |rx: &Receiver<String>| rx.iter().collect::<Vec<_>>().join("\n");
        (rest(&self.out), rest(&self.err))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that a command fails (within a minute) with exactly one line on stderr, containing
/// `expect`; returns that line.
fn fails_in_one_line(cmd: &mut Command, expect: &str) -> String {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = lines(child.stderr.take().unwrap());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running, expected to fail with {expect:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = err.iter().collect::<Vec<_>>();
    assert!(!status.success(), "{err:#?}");
    assert_eq!(err.len(), 1, "one line: {err:#?}");
    let line = err[0].clone();
    assert!(!line.contains("panicked"), "{line}");
    assert!(
        line.starts_with("herald: ") && line.contains(expect),
        "{line:?} lacks {expect:?}"
    );
    line
}

#[test]
fn nodes_starting_together_on_a_fresh_database_both_run_and_one_prints_the_first_user() {
    // docs/cluster.md: nodes may start together. Both find no user and both create `admin`;
    // the loser exited with "already exists". Three rounds: the race is a matter of timing.
    for _ in 0..3 {
        let url = pg::cluster().fresh_database();
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("HERALD_STORE_URL", url.as_str()),
            ("HERALD_LMTP_LISTEN", ""),
        ];
        let nodes = [serve(&dir, &env), serve(&dir, &env)];
        for node in &nodes {
            node.until_logged("Herald listening on");
        }
        let mut created = 0;
        for node in nodes {
            let (out, err) = node.stop();
            created += out.matches("Created the first user").count();
            assert!(!err.lines().any(|l| l.starts_with("herald: ")), "{err}");
        }
        assert_eq!(created, 1, "one node creates the first user and prints it");
        let mut conn = herald::store::Store::open(&url, 1).unwrap().conn().unwrap();
        assert_eq!(herald::store::users::count(&mut conn).unwrap(), 1);
    }
}

#[test]
fn listen_addresses_that_cannot_be_had_stop_the_start_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let missing_dir = format!("unix:{}/no-such-dir/lmtp.sock", dir.path().display());
    let cases = [
        ("HERALD_LMTP_LISTEN", "bad", "LMTP bad"),
        ("HERALD_METRICS_LISTEN", "bad", "metrics bad"),
        ("HERALD_LMTP_LISTEN", &missing_dir, "LMTP unix:"),
        ("HERALD_LMTP_LISTEN", &taken, "LMTP 127.0.0.1"),
        ("HERALD_METRICS_LISTEN", &taken, "metrics 127.0.0.1"),
    ];
    for (var, value, expect) in cases {
        fails_in_one_line(
            herald(&dir)
                .env("HERALD_SERVER_LISTEN", "127.0.0.1:0")
                .env(var, value)
                .arg("serve"),
            expect,
        );
    }
}

#[test]
fn a_relay_base_url_or_vapid_subject_that_cannot_work_stops_the_start_before_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("HERALD_SUBMISSION_RELAY", "garbage", "[submission] relay"),
        (
            "HERALD_SUBMISSION_RELAY",
            "smtp://u:R3LAYpw@relay.example:587?tls=sometimes",
            "[submission] relay",
        ),
        ("HERALD_SERVER_BASE_URL", "notaurl", "[server] base_url"),
        (
            "HERALD_SERVER_BASE_URL",
            "ftp://mail.example",
            "[server] base_url",
        ),
        ("HERALD_PUSH_VAPID_SUBJECT", "bogus", "[push] vapid_subject"),
        (
            "HERALD_PUSH_VAPID_SUBJECT",
            "http://example.com",
            "[push] vapid_subject",
        ),
    ];
    for (var, value, expect) in cases {
        let err = fails_in_one_line(
            herald(&dir)
                .env("HERALD_SERVER_LISTEN", "127.0.0.1:0")
                .env(var, value)
                .arg("serve"),
            expect,
        );
        assert!(!err.contains("R3LAYpw"), "{err}");
    }
    assert!(!dir.path().join("h.db").exists(), "nothing was created");
}

/// Whether something accepts on the UNIX socket at `path` and greets as LMTP.
fn lmtp_greets(path: &std::path::Path) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    let mut greeting = [0u8; 3];
    s.read_exact(&mut greeting).is_ok() && &greeting == b"220"
}

#[test]
fn a_unix_socket_another_server_accepts_on_is_refused_and_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lmtp.sock");
    let listen = format!("unix:{}", socket.display());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = serve(&a, &[("HERALD_LMTP_LISTEN", &listen)]);
    first.until_logged("LMTP listening on");
    // A second server on the same host with the same `[lmtp] listen`.
    let err = fails_in_one_line(
        herald(&b)
            .env("HERALD_SERVER_LISTEN", "127.0.0.1:0")
            .env("HERALD_LMTP_LISTEN", &listen)
            .arg("serve"),
        "is in use by another process",
    );
    assert!(err.contains(&listen), "{err}");
    assert!(lmtp_greets(&socket), "the first server keeps its socket");
    // Killed: its socket stays behind, and the next start takes its place.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(socket.exists() && !lmtp_greets(&socket));
    let next = serve(&a, &[("HERALD_LMTP_LISTEN", &listen)]);
    next.until_logged("LMTP listening on");
    assert!(lmtp_greets(&socket));
    next.stop();
}

#[test]
fn the_sqlite_store_herald_creates_is_readable_by_its_user_alone() {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let url = format!("sqlite://{}", dir.path().join("data/herald.db").display());
    let store = herald::store::Store::open(&url, 2).unwrap();
    herald::store::users::create(&mut store.conn().unwrap(), "alice", "pw").unwrap();
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    // Open, so the WAL and shared-memory files are there too.
    for file in ["herald.db", "herald.db-wal", "herald.db-shm"] {
        assert_eq!(mode(&dir.path().join("data").join(file)), 0o600, "{file}");
    }
    drop(store);
    // What exists already is the operator's: left as it is.
    let shared = dir.path().join("shared");
    std::fs::DirBuilder::new()
        .mode(0o750)
        .create(&shared)
        .unwrap();
    let url = format!("sqlite://{}", shared.join("herald.db").display());
    drop(herald::store::Store::open(&url, 1).unwrap());
    assert_eq!(mode(&shared), 0o750);
    assert_eq!(mode(&shared.join("herald.db")), 0o600);
}

#[on_both_backends]
fn migrate_says_what_it_did_and_never_prints_the_store_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = harness::backend::fresh_store_url(dir.path()).replacen(
        "postgres://postgres@",
        "postgres://postgres:S3CRETpw@",
        1,
    );
    let migrate = || {
        let out = run(herald(&dir).env("HERALD_STORE_URL", &url).arg("migrate"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!printed.contains("S3CRET"), "{printed}");
        printed
    };
    let first = migrate();
    assert!(first.contains(" created"), "{first}");
    let again = migrate();
    assert!(again.contains("is up to date"), "{again}");
    let err = fails_in_one_line(
        herald(&dir)
            .env(
                "HERALD_STORE_URL",
                "mysql://herald:S3CRETpw@db.example/herald",
            )
            .arg("migrate"),
        "store URL",
    );
    assert!(!err.contains("S3CRET"), "{err}");
}

#[actix_web::test]
async fn an_address_that_reaches_the_failed_login_limit_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(
        &dir,
        &[
            ("HERALD_AUTH_MAX_FAILED_LOGINS_PER_MINUTE", "2"),
            ("HERALD_LMTP_LISTEN", ""),
        ],
    );
    let listening = node.until_logged("Herald listening on");
    let addr = listening.split("listening on ").nth(1).unwrap();
    let addr = addr.split_whitespace().next().unwrap().to_owned();
    let wrong = Auth::basic("admin", "guess");
    for _ in 0..6 {
        harness::authorize(
            harness::client().get(format!("http://{addr}/jmap/session")),
            &wrong,
        )
        .send()
        .await
        .unwrap();
    }
    let (_, log) = node.stop();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("failed logins"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("127.0.0.1"), "{}", warnings[0]);
}

/// SIGTERM: push streams close at once (a WebSocket with 1001, RFC 6455 §7.4.1; an EventSource by
/// ending its response) instead of holding the graceful stop for its whole timeout, here two
/// minutes, and the node exits once the work in progress is done.
#[actix_web::test]
async fn sigterm_closes_push_streams_and_the_node_does_not_wait_out_its_timeout() {
    use crate::harness::push::{sse_open_url, ws_try_url};
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let out = run(herald(&dir).args(["user", "add", "alice", "--password", "pw"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut node = serve(
        &dir,
        &[
            ("HERALD_SERVER_SHUTDOWN_TIMEOUT_SECS", "120"),
            ("HERALD_LMTP_LISTEN", ""),
        ],
    );
    let listening = node.until_logged("Herald listening on");
    let addr = listening.split("listening on ").nth(1).unwrap();
    let addr = addr.split_whitespace().next().unwrap().to_owned();
    let alice = Auth::basic("alice", "pw");
    let mut ws = ws_try_url(&format!("ws://{addr}/jmap/ws"), &alice, &["jmap"])
        .await
        .unwrap();
    let mut sse = sse_open_url(
        &format!("http://{addr}/jmap/eventsource/?types=*&closeafter=no&ping=0"),
        &alice,
        None,
    )
    .await;
    sse.ready().await;

    let kill = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let close = loop {
        match ws.next().await {
            Some(Ok(awc::ws::Frame::Close(reason))) => break reason,
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(close.map(|r| r.code), Some(awc::ws::CloseCode::Away));
    while let Some(e) = sse.next().await {
        assert!(e.comment || e.event == "ping", "{e:?}");
    }
    // The clients hang up, as theirs do on a close frame or the end of the response.
    drop((ws, sse));
    let pid = node.child.id().to_string();
    let mut child = std::mem::replace(&mut node.child, Command::new("true").spawn().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let Ok(status) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("herald did not exit within a minute of SIGTERM (its timeout is two)");
    };
    assert!(status.unwrap().success());
}
