//! `herald-load`: a load and latency benchmark for any JMAP server, over the wire only.
//!
//! It measures what operators choose a push server by: requests per second and latency of API
//! calls (`api`), the time from a mutation's response to the StateChange's arrival on WebSocket
//! and EventSource connections (`push`), webhook deliveries (`webhook`), and how many idle push
//! connections a server holds at what memory (`connections`). Every run is bounded in count and
//! time, talks to loopback unless told otherwise, and prints a table and one JSON line.

// A benchmark tool, not the server: a failed setup step or a poisoned lock ends the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod jmap;
mod lmtp;
mod push;
mod sequential;
mod spread;
mod stats;
mod submit;
mod webhook;

use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

/// Load and latency benchmark for JMAP servers.
#[derive(Parser)]
#[command(name = "herald-load", version)]
struct Cli {
    /// Base URL of the server (its /.well-known/jmap is read).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// User for `api`; the first of the users for the others.
    #[arg(long, default_value = "load0")]
    user: String,
    #[arg(long, default_value = "load")]
    password: String,
    /// For push/webhook/connections: use the users `<prefix>0` … `<prefix>N-1` (same password).
    #[arg(long, default_value = "load")]
    user_prefix: String,
    /// How many such users (accounts) to spread connections over.
    #[arg(long, default_value_t = 1)]
    accounts: usize,
    /// Threads (each with its own event loop) on the client side.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// For push/webhook: the base URL the writer sends its mutations to (default: `--url`). Point
    /// it at a second node sharing the first one's store to measure cross-node push.
    #[arg(long)]
    write_url: Option<String>,
    /// PID of a local server, to report its memory from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Allow a non-loopback URL (never point this at a machine you do not own).
    #[arg(long)]
    allow_remote: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Requests/s and latency of one kind of API request at N concurrent clients.
    Api {
        #[arg(long, value_enum, default_value = "echo")]
        kind: api::Kind,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Stop after this many requests…
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        /// …or after this many seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Push latency: N connections, a writer mutating at R per second.
    Push {
        #[arg(long, default_value_t = 100)]
        connections: usize,
        #[arg(long, value_enum, default_value = "mixed")]
        transport: push::Transport,
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, default_value_t = 1000)]
        mutations: u64,
        /// Each mutation waits until its StateChange reached every connection of its account
        /// (a human pace: one change after another); `--rate` is then ignored.
        #[arg(long)]
        sequential: bool,
    },
    /// Idle push connections: open up to N, report time and server memory per connection.
    Connections {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, value_enum, default_value = "ws")]
        transport: push::Transport,
        /// Spread the connections over this many worker processes, each with its own source
        /// address 127.0.0.2, 127.0.0.3, … (past one process's file limit).
        #[arg(long, default_value_t = 1)]
        processes: usize,
    },
    /// (internal) One worker process of `connections --processes P`.
    #[command(hide = true)]
    ConnectionsWorker {
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        offset: usize,
        #[arg(long)]
        source: std::net::IpAddr,
        #[arg(long, value_enum)]
        transport: push::Transport,
    },
    /// Mail sent through JMAP (a draft and its EmailSubmission per request) with this tool as the
    /// server's SMTP relay: submissions accepted per second, and messages the relay received.
    Submit {
        /// Where this tool listens as the relay; start the server with
        /// `HERALD_SUBMISSION_RELAY=smtp://<this address>`.
        #[arg(long, default_value = "127.0.0.1:2525")]
        sink: String,
        /// Hold the relay's connections without a word (a stalled relay).
        #[arg(long)]
        stall: bool,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 2000)]
        submissions: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// The recipient of every message (not a local user, so it goes to the relay).
        #[arg(long, default_value = "someone@far.example")]
        to: String,
    },
    /// LMTP deliveries (any LMTP server): throughput, or with --push-connections (Herald) the
    /// time from each `250` to the StateChange at the recipient's connected clients.
    Lmtp {
        /// The LMTP server, `host:port`.
        #[arg(long, default_value = "127.0.0.1:2424")]
        lmtp: String,
        /// Recipients are `<user>@<domain>` for the users of --user-prefix/--accounts.
        #[arg(long, default_value = "localhost")]
        domain: String,
        /// Recipients per message (consecutive users, round-robin).
        #[arg(long, default_value_t = 1)]
        recipients: usize,
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
        /// Concurrent LMTP sessions (throughput).
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Octets per message.
        #[arg(long, default_value_t = 2_000)]
        size: usize,
        /// Push connections (WebSocket) listening while one session delivers at --rate.
        #[arg(long, default_value_t = 0)]
        push_connections: usize,
        /// Deliveries per second with --push-connections.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// Webhook deliveries to a sink this tool serves on loopback.
    Webhook {
        #[arg(long, default_value_t = 10)]
        subscriptions: usize,
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, default_value_t = 1000)]
        mutations: u64,
    },
}

/// One run's figures, printed as a table and as a JSON line.
pub struct Report {
    fields: Map<String, Value>,
}

impl Report {
    pub fn new(mode: &str) -> Self {
        let mut fields = Map::new();
        fields.insert("mode".into(), Value::from(mode));
        Report { fields }
    }

    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    fn print(&self) {
        let width = self.fields.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &self.fields {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            println!("{k:<width$}  {v}");
        }
        println!("{}", Value::Object(self.fields.clone()));
    }
}

fn is_loopback(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .trim_matches(['[', ']']);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[expect(
    clippy::too_many_lines,
    reason = "the command line: one arm per subcommand and its options"
)]
fn main() {
    let cli = Cli::parse();
    for url in std::iter::once(&cli.url).chain(cli.write_url.as_ref()) {
        if !cli.allow_remote && !is_loopback(url) {
            eprintln!(
                "herald-load: {url} is not a loopback address; pass --allow-remote for a server you own"
            );
            std::process::exit(2);
        }
    }
    let write_url = cli.write_url.clone().unwrap_or_else(|| cli.url.clone());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let users: Vec<jmap::Credentials> = (0..cli.accounts.max(1))
        .map(|i| jmap::Credentials {
            user: format!("{}{i}", cli.user_prefix),
            password: cli.password.clone(),
        })
        .collect();
    // Idle connections as a push run has them; `push` adds its writer.
    let idle = |users, connections, transport| push::PushRun {
        base: cli.url.clone(),
        write_base: write_url.clone(),
        users,
        connections,
        transport,
        threads: cli.threads,
        pid: cli.pid,
        source: None,
        offset: 0,
        rate: 1.0,
        mutations: 0,
    };
    let report = match cli.mode {
        Mode::Api {
            kind,
            clients,
            requests,
            seconds,
        } => {
            let creds = jmap::Credentials {
                user: cli.user.clone(),
                password: cli.password.clone(),
            };
            api::run(
                &cli.url,
                &creds,
                kind,
                clients,
                requests,
                Duration::from_secs(seconds),
                cli.threads,
            )
        }
        Mode::Push {
            connections,
            transport,
            rate,
            mutations,
            sequential,
        } => {
            let run = push::PushRun {
                rate,
                mutations: mutations.max(1),
                ..idle(users, connections, transport)
            };
            if sequential {
                sequential::run(run)
            } else {
                push::run(run)
            }
        }
        Mode::Connections {
            connections,
            transport,
            processes,
        } => {
            let run = idle(users, connections, transport);
            if processes > 1 {
                let worker_args = [
                    "--url",
                    &cli.url,
                    "--password",
                    &cli.password,
                    "--user-prefix",
                    &cli.user_prefix,
                    "--accounts",
                    &cli.accounts.to_string(),
                    "--threads",
                    &cli.threads.to_string(),
                ]
                .map(String::from)
                .into_iter()
                .chain(cli.allow_remote.then(|| "--allow-remote".to_owned()))
                .collect::<Vec<_>>();
                spread::run_spread(run, processes, &worker_args)
            } else {
                push::run(run)
            }
        }
        Mode::ConnectionsWorker {
            connections,
            offset,
            source,
            transport,
        } => spread::run_worker(push::PushRun {
            pid: None,
            source: Some(source),
            offset,
            ..idle(users, connections, transport)
        }),
        Mode::Lmtp {
            lmtp,
            domain,
            recipients,
            messages,
            clients,
            seconds,
            size,
            push_connections,
            rate,
        } => {
            if !cli.allow_remote && !is_loopback(&format!("lmtp://{lmtp}")) {
                eprintln!("herald-load: {lmtp} is not a loopback address; pass --allow-remote");
                std::process::exit(2);
            }
            let run = lmtp::LmtpRun {
                addr: lmtp,
                domain,
                recipients: recipients.max(1),
                messages,
                clients,
                seconds,
                size,
                rate,
            };
            if push_connections == 0 {
                lmtp::throughput(&run, &users, cli.pid)
            } else {
                lmtp::push_latency(&run, idle(users, push_connections, push::Transport::Ws))
            }
        }
        Mode::Submit {
            sink,
            stall,
            clients,
            submissions,
            seconds,
            to,
        } => submit::run(submit::SubmitRun {
            base: cli.url.clone(),
            creds: jmap::Credentials {
                user: cli.user.clone(),
                password: cli.password.clone(),
            },
            sink,
            stall,
            clients,
            submissions,
            seconds,
            to,
        }),
        Mode::Webhook {
            subscriptions,
            rate,
            mutations,
        } => webhook::run(&cli.url, &write_url, &users, subscriptions, rate, mutations),
    };
    report.print();
    // Push connections run on detached threads: end the process rather than wait for them.
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_allowed_by_default() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://localhost:1/x"));
        assert!(is_loopback("http://[::1]:80"));
        assert!(!is_loopback("https://mail.example.com"));
        assert!(!is_loopback("http://10.0.0.1:8080"));
    }
}
