//! `herald serve` as an operator meets it: one warning for an address that keeps guessing
//! passwords.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::cli::{herald, lines};
use crate::harness::{self, Auth};

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
