//! `connections` over several worker processes, each from its own source address, for more
//! connections than one process or one address can open.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use crate::Report;
use crate::push::{Opened, PushRun, Shared, open_all, opening_report, sessions_at};
use crate::stats::rss_kib;

/// `connections` spread over `processes` worker processes, each opening its share from its own
/// source address (127.0.0.2, 127.0.0.3, …), so that neither this tool's per-process file limit
/// nor one source address's ephemeral ports cap how many connections the server is offered.
pub fn run_spread(run: PushRun, processes: usize, worker_args: &[String]) -> Report {
    // Log every user in first, as `run` does, so that what logging in costs the server (its
    // password checks) is not counted per connection.
    sessions_at(&run.base, &run.users);
    let rss_before = rss_kib(run.pid);
    let started = Instant::now();
    let exe = std::env::current_exe().expect("own executable");
    let mut workers = Vec::new();
    let share = run.connections.div_ceil(processes);
    for k in 0..processes {
        let offset = k * share;
        let count = share.min(run.connections.saturating_sub(offset));
        if count == 0 {
            break;
        }
        let mut child = Command::new(&exe)
            .args(worker_args)
            .args([
                "connections-worker",
                "--connections",
                &count.to_string(),
                "--offset",
                &offset.to_string(),
                "--source",
                &format!("127.0.0.{}", k + 2),
                "--transport",
                &format!("{:?}", run.transport).to_lowercase(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker process");
        let stdout = BufReader::new(child.stdout.take().expect("worker stdout"));
        workers.push((child, stdout));
    }
    // Each worker prints one line, `opened failed first-failure`, once its share is open.
    let (mut opened, mut failed, mut first_failure) = (0usize, 0usize, None::<String>);
    for (_, stdout) in &mut workers {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let mut parts = line.trim_end().splitn(3, ' ');
        opened += parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        failed += parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if let Some(f) = parts.next().filter(|f| !f.is_empty()) {
            first_failure.get_or_insert_with(|| f.to_owned());
        }
    }
    let open_time = started.elapsed();
    let rss_open = rss_kib(run.pid);
    // Closing a worker's stdin tells it to exit.
    for (mut child, mut stdout) in workers {
        drop(child.stdin.take());
        let _ = stdout.read_to_end(&mut Vec::new());
        let _ = child.wait();
    }
    let opened = Opened {
        opened,
        failed,
        first_failure,
        time: open_time,
        rss_before,
        rss_open,
    };
    opening_report(
        Report::new("connections").field("processes", processes),
        &run,
        opened,
    )
}

/// A worker process of [`run_spread`]: opens its share, reports, and holds the connections until
/// its standard input closes.
pub fn run_worker(run: PushRun) -> ! {
    let sessions = sessions_at(&run.base, &run.users);
    let shared = Arc::new(Shared::default());
    open_all(&run, &sessions, &shared);
    let opened = *shared.opened.lock().unwrap();
    let failed = shared.failed.lock().unwrap();
    let first = failed
        .first()
        .cloned()
        .unwrap_or_default()
        .replace('\n', " ");
    println!("{opened} {} {first}", failed.len());
    drop(failed);
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}
