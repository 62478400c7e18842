//! The `herald` binary as an operator uses it: users, tokens, first start, errors, shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness;
use crate::harness::{Auth, on_both_backends};
use awc::http::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// A herald command run in `dir` (so no ./config.toml: all defaults) with a fresh store there.
pub(crate) fn herald(dir: &tempfile::TempDir) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HERALD_STORE_URL",
            format!("sqlite://{}", dir.path().join("h.db").display()),
        )
        // Tests run side by side: no fixed LMTP port.
        .env("HERALD_LMTP_LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .stdin(Stdio::null());
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run herald")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn users_can_be_added_listed_given_a_new_password_and_removed_before_the_first_serve() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(herald(&dir).args(["user", "add", "alice", "--password", "pw1"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(herald(&dir).args(["user", "list"]));
    assert!(text(&out.stdout).starts_with("alice\t"));
    let mut passwd = herald(&dir)
        .args(["user", "passwd", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    passwd.stdin.take().unwrap().write_all(b"pw2\n").unwrap();
    assert!(passwd.wait_with_output().unwrap().status.success());
    let store = herald::store::Store::open(
        &format!("sqlite://{}", dir.path().join("h.db").display()),
        1,
    )
    .unwrap();
    let user = herald::store::users::find_by_name(&mut store.conn().unwrap(), "alice")
        .unwrap()
        .unwrap();
    assert!(herald::store::credentials::verify_password(
        "pw2",
        &user.password_hash
    ));
    let out = run(herald(&dir).args(["user", "add", "alice", "--password", "x"]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"));
    // Names are local parts of addresses, which compare without case.
    let out = run(herald(&dir).args(["user", "add", "Alice", "--password", "x"]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"));
    assert!(
        run(herald(&dir).args(["user", "remove", "alice"]))
            .status
            .success()
    );
    assert_eq!(text(&run(herald(&dir).args(["user", "list"])).stdout), "");
    let out = run(herald(&dir).args(["user", "remove", "alice"]));
    assert!(!out.status.success() && text(&out.stderr).contains("not found"));
}

/// A removed user's mail leaves the store with them, at once; what another user also holds stays.
#[test]
fn removing_a_user_deletes_the_mail_only_they_held() {
    use diesel::prelude::*;
    use herald::store::schema::blobs;
    let dir = tempfile::tempdir().unwrap();
    for user in ["alice", "bob"] {
        let out = run(herald(&dir).args(["user", "add", user, "--password", "pw"]));
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let deliver = |to: &str, message: &[u8]| {
        use std::io::Write;
        let mut child = herald(&dir)
            .args(["deliver", "--to", to])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(message).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    let shared = b"Subject: to both\r\nMessage-ID: <both@test>\r\n\r\nSHARED-CONTENT\r\n";
    deliver(
        "alice",
        b"Subject: s\r\nMessage-ID: <s@test>\r\n\r\nTOP-SECRET-CONTENT\r\n",
    );
    deliver("alice", shared);
    deliver("bob", shared);
    let out = run(herald(&dir).args(["user", "remove", "alice"]));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let store = herald::store::Store::open(
        &format!("sqlite://{}", dir.path().join("h.db").display()),
        1,
    )
    .unwrap();
    let data: Vec<Vec<u8>> = blobs::table
        .select(blobs::data)
        .load(&mut *store.conn().unwrap())
        .unwrap();
    let holding = |needle: &[u8]| {
        data.iter()
            .filter(|d| d.windows(needle.len()).any(|w| w == needle))
            .count()
    };
    assert_eq!(holding(b"TOP-SECRET-CONTENT"), 0);
    assert!(holding(b"SHARED-CONTENT") >= 1, "bob's copy stays");
}

#[test]
fn tokens_are_printed_once_listed_by_id_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        run(herald(&dir).args(["user", "add", "bob", "--password", "pw"]))
            .status
            .success()
    );
    let out = run(herald(&dir).args(["token", "create", "bob"]));
    assert!(out.status.success());
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("hrd_"));
    let list = text(&run(herald(&dir).args(["token", "list"])).stdout);
    assert!(!list.contains(&token), "the secret is never listed");
    let id = list.split('\t').next().unwrap().to_owned();
    assert!(token.contains(&id));
    assert!(
        run(herald(&dir).args(["token", "revoke", &token]))
            .status
            .success()
    );
    assert_eq!(text(&run(herald(&dir).args(["token", "list"])).stdout), "");
}

#[test]
fn configuration_and_store_errors_are_one_line_and_a_failure_status() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = 5\n").unwrap();
    let cases: Vec<(Command, &str)> = vec![
        (
            {
                let mut c = herald(&dir);
                c.args(["--config", bad.to_str().unwrap(), "migrate"]);
                c
            },
            "bad.toml",
        ),
        (
            {
                let mut c = herald(&dir);
                c.env("HERALD_SERVER_LISTN", "x").arg("migrate");
                c
            },
            "listn",
        ),
        (
            {
                let mut c = herald(&dir);
                c.env("HERALD_STORE_URL", "mysql://x").arg("migrate");
                c
            },
            "store URL",
        ),
        (
            {
                let mut c = herald(&dir);
                c.env("HERALD_STORE_URL", "postgres://herald@127.0.0.1:1/none")
                    .arg("migrate");
                c
            },
            "cannot connect",
        ),
    ];
    for (mut cmd, expect) in cases {
        let out = run(&mut cmd);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        assert!(err.contains(expect), "{err:?} lacks {expect:?}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn serving_on_a_taken_port_fails_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(herald(&dir).env("HERALD_SERVER_LISTEN", &addr).arg("serve"));
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );
    assert_eq!(
        err.trim_end()
            .lines()
            .filter(|l| l.starts_with("herald:"))
            .count(),
        1,
        "{err}"
    );
}

/// Reads a child's output lines on a thread, so the test can wait for one with a timeout.
pub(crate) fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub(crate) fn wait_for(rx: &mpsc::Receiver<String>, pattern: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no line with {pattern:?}"));
        if line.contains(pattern) {
            return line;
        }
    }
}

#[on_both_backends]
async fn the_first_serve_creates_a_user_who_can_log_in_and_sigterm_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = herald(&dir)
        .env(
            "HERALD_STORE_URL",
            harness::backend::fresh_store_url(dir.path()),
        )
        .env("HERALD_SERVER_LISTEN", "127.0.0.1:0")
        .env("HERALD_SERVER_SHUTDOWN_TIMEOUT_SECS", "2")
        .env("RUST_LOG", "info")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    let user = wait_for(&out, "user:")
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let password = wait_for(&out, "password:")
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let listening = wait_for(&err, "Herald listening on");
    let addr = listening
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let res = harness::authorize(
        harness::client().get(format!("http://{addr}/jmap/session")),
        &Auth::basic(&user, &password),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // Graceful shutdown stops what runs beside the HTTP server too.
    wait_for(&err, "webhook sender stopped");
    if harness::backend::current() == harness::backend::Backend::Postgresql {
        wait_for(&err, "cluster bus stopped");
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("herald exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_vapid_key_is_kept_in_the_store_until_an_operator_rotates_it() {
    let dir = tempfile::tempdir().unwrap();
    let show = |dir: &tempfile::TempDir| {
        let out = run(herald(dir).args(["vapid", "show"]));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    };
    let first = show(&dir);
    // An uncompressed P-256 point: 65 octets, 87 base64url characters.
    assert_eq!(first.len(), 87, "{first}");
    assert_eq!(show(&dir), first);
    let out = run(herald(&dir).args(["vapid", "rotate"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("subscribe") || text(&out.stderr).contains("again"));
    let rotated = text(&out.stdout).trim().to_owned();
    assert_ne!(rotated, first);
    assert_eq!(show(&dir), rotated);
}

/// `herald serve` on the SQLite store in `dir`, with LMTP on a free port; returns the child and
/// the LMTP address.
fn serve_with_lmtp(dir: &tempfile::TempDir) -> (std::process::Child, String) {
    let mut child = herald(dir)
        .env("HERALD_SERVER_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = lines(child.stderr.take().unwrap());
    let line = wait_for(&err, "LMTP listening on");
    let addr = line.rsplit(' ').next().unwrap().to_owned();
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || while err.recv().is_ok() {});
    (child, addr)
}

fn stored_emails(db: &std::path::Path) -> i64 {
    use diesel::prelude::*;
    let mut conn = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    herald::store::schema::emails::table
        .count()
        .get_result(&mut conn)
        .unwrap()
}

#[actix_web::test]
async fn an_lmtp_delivery_killed_before_its_reply_is_stored_once_by_the_retry_of_the_mta() {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use harness::lmtp::{LmtpClient, stuff};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let add = run(herald(&dir).args(["user", "add", "alice", "--password", "pw"]));
    assert!(add.status.success(), "{}", text(&add.stderr));
    let message = b"From: carol@remote.test\r\nSubject: Twice?\r\n\r\nOnce.\r\n";

    let (mut server, addr) = serve_with_lmtp(&dir);
    let mut mta = LmtpClient::ready(&addr).await;
    assert_eq!(mta.command("MAIL FROM:<carol@remote.test>").await.code, 250);
    assert_eq!(mta.command("RCPT TO:<alice@localhost>").await.code, 250);
    assert_eq!(mta.command("DATA").await.code, 354);
    // Another connection holds SQLite's write lock, so the delivery cannot commit; the server is
    // killed while the message is in its hands (or, at worst, still in its socket buffer: the
    // outcome must be the same).
    let mut lock = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    // The server may be writing at start (its background jobs): wait for the lock, don't fail.
    lock.batch_execute("PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE")
        .unwrap();
    mta.send(&stuff(message)).await;
    server.kill().unwrap();
    server.wait().unwrap();
    lock.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        mta.reply().await,
        None,
        "no reply: the MTA keeps the message"
    );
    assert_eq!(stored_emails(&db), 0, "nothing half-stored");

    // The MTA retries against the restarted server.
    let (mut server, addr) = serve_with_lmtp(&dir);
    let mut mta = LmtpClient::ready(&addr).await;
    let d = mta
        .deliver("carol@remote.test", &["alice@localhost"], message)
        .await;
    assert_eq!(d.data[0].code, 250, "{d:?}");
    assert_eq!(stored_emails(&db), 1);
    server.kill().unwrap();
    server.wait().unwrap();
}
