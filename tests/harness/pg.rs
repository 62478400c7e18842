//! A throwaway PostgreSQL cluster for tests: `initdb` + `postgres` into a temp dir on a free port,
//! one per test binary, with a fresh database per test. Uses the Debian `postgresql` package that
//! `.ci/run` installs; without it, tests say clearly that they were skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct PgCluster {
    port: u16,
    _dir: tempfile::TempDir,
}

static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root (initdb refuses root).
fn pg_command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn start() -> Option<PgCluster> {
    let bin = bindir()?;
    let dir = tempfile::Builder::new()
        .prefix("herald-pg")
        .tempdir()
        .expect("temp dir");
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .ok()?;
        assert!(status.success(), "chown of the cluster dir");
    }
    let data = dir.path().join("data");
    let out = pg_command(&bin, "initdb")
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .expect("initdb");
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("postgres.log");
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.path().display()
    );
    let out = pg_command(&bin, "pg_ctl")
        .args(["-D"])
        .arg(&data)
        .args(["-l"])
        .arg(&log)
        .args(["-o", &options, "-w", "-t", "60", "start"])
        .stdout(Stdio::null())
        .output()
        .expect("pg_ctl start");
    assert!(
        out.status.success(),
        "pg_ctl start: {} {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Stop the cluster and delete its files when this test process ends, however it ends (the
    // cluster lives in a static, which is never dropped).
    let stop = format!(
        "{} -D {} -m immediate stop; rm -rf {}",
        bin.join("pg_ctl").display(),
        data.display(),
        dir.path().display()
    );
    let watchdog = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; {stop}",
        pid = std::process::id()
    );
    let mut w = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", &watchdog]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &watchdog]);
        c
    };
    // Deliberately detached: it outlives this process to stop the cluster after it.
    let watchdog = w
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watchdog");
    std::mem::forget(watchdog);
    Some(PgCluster { port, _dir: dir })
}

/// The cluster shared by the whole test run; panics with one clear line without PostgreSQL.
pub fn cluster() -> &'static PgCluster {
    CLUSTER
        .get_or_init(start)
        .as_ref()
        .unwrap_or_else(|| panic!("{}", super::tools::missing("PostgreSQL", "postgresql")))
}

impl PgCluster {
    /// A URL for the cluster's `postgres` database.
    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = diesel::PgConnection::establish(&self.admin_url())
            .expect("connect to the test cluster");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}
