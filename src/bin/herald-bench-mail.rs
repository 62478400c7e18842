//! `herald-bench-mail`: fills one account with generated messages through the store's import
//! path, then measures `Email/query` (inMailbox, newest first, a page of 50) + `Email/get` of that
//! page by result reference, at N concurrent HTTP clients against an in-process node.
//!
//! Prints the import rate, requests per second and p50/p99 latency, and the machine (cores,
//! memory). Everything is local: a fresh SQLite store in a temporary directory, 127.0.0.1.

// A benchmark tool, not the server: a failed setup step ends the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use herald::config::Config;
use herald::jmap::methods::email::{EmailOp, NewEmail, OpResult, Source, new_email_id};
use herald::jmap::methods::email_query::{EmailQuery, Filter, parse_sort};
use herald::store::email_query::sqlite_query_plan;
use herald::store::{Store, accounts, changelog, email, mailbox, users};
use serde_json::{Value, json};

/// Email/query + Email/get benchmark over HTTP.
#[derive(Parser)]
#[command(name = "herald-bench-mail", version)]
struct Cli {
    /// Messages to import into the account.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Messages per write transaction while importing.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of query load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Ids per page.
    #[arg(long, default_value_t = 50)]
    page: usize,
    /// The request measured: `sync` (the query page and its emails), `mailbox-get` (every
    /// mailbox with its counts, what a client sends after each push), a text search with
    /// `calculateTotal` (`rare-word`: a word in 0.1 % of the messages; `common-word`: a word in
    /// every message; `three-words`: two common words and the rare one), or `largest-filter`
    /// (`--text-conditions` OR'd text conditions, none of which matches, or with
    /// `--common-words` each of which matches every message), or `query-changes` (the inbox's
    /// Email/queryChanges after one keyword change, with `upToId` the page's last id) and
    /// `query-changes-all` (the same without `upToId`).
    #[arg(long, value_enum, default_value = "sync")]
    request: Request,
    /// Text conditions OR'd in `largest-filter`.
    #[arg(long, default_value_t = 100)]
    text_conditions: usize,
    /// `largest-filter` with words that are in every message (lorem, ipsum, dolor, amet, …)
    /// instead of words that match nothing.
    #[arg(long)]
    common_words: bool,
    /// Keep the store directory (printed) for inspection.
    #[arg(long)]
    keep_store: bool,
    /// Use this store directory and keep it; a store that a previous run filled is measured
    /// again without importing (to measure several requests on one million-message store).
    #[arg(long)]
    store_dir: Option<std::path::PathBuf>,
    /// A store URL instead of a SQLite file in the store directory, e.g. an empty PostgreSQL
    /// database (`postgres://…`); filled once and measured again like `--store-dir`.
    #[arg(long)]
    store_url: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Request {
    Sync,
    MailboxGet,
    RareWord,
    CommonWord,
    ThreeWords,
    LargestFilter,
    /// Email/queryChanges of the inbox after one change, up to the page's last id (`upToId`).
    QueryChanges,
    /// The same without `upToId`: the whole result is read.
    QueryChangesAll,
}

fn message(i: usize) -> Vec<u8> {
    let thread = i / 4;
    let reply = !i.is_multiple_of(4);
    let subject = format!(
        "{}Project {} status {}",
        if reply { "Re: " } else { "" },
        thread,
        ["alpha", "beta", "gamma", "delta"][thread % 4]
    );
    let in_reply_to = if reply {
        format!("In-Reply-To: <m{}@bench.example>\r\n", i - 1)
    } else {
        String::new()
    };
    format!(
        "From: User {a} <user{a}@bench.example>\r\nTo: Team {b} <team{b}@bench.example>\r\n\
         Subject: {subject}\r\nDate: Mon, 01 Jan 2024 09:00:00 +0000\r\n\
         Message-ID: <m{i}@bench.example>\r\n{in_reply_to}MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello team, message {i} about thread {thread}, tag rare{tag:03}. {filler}\r\n",
        a = i % 97,
        tag = i % 1000,
        b = i % 13,
        filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(4),
    )
    .into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or_else(
            || "?".into(),
            |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
        );
    format!("{cores} cores, {mem} memory")
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let dir = match &cli.store_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tempfile_dir()?,
    };
    let mut config = Config::load(Path::new("/nonexistent/config.toml"), Vec::new())?;
    config.store.url = match &cli.store_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", dir.join("herald.db").display()),
    };
    config.server.listen = "127.0.0.1:0".into();
    config.lmtp.listen = String::new();
    // One user drives every client: let all of them in at once.
    config.limits.max_concurrent_requests = config
        .limits
        .max_concurrent_requests
        .max(cli.clients as u64);
    let store = Store::open(&config.store.url, herald::server::pool_size(&config))?;

    // Import.
    let mut conn = store.conn()?;
    let (user, filled) = match users::find_by_name(&mut conn, "bench")? {
        Some(u) => (u, true),
        None => (users::create(&mut conn, "bench", "bench")?, false),
    };
    let account = accounts::personal_account(&mut conn, &user.id)?;
    let inbox = mailbox::list(&mut conn, &account)?
        .into_iter()
        .find(|m| m.role.as_deref() == Some("inbox"))
        .ok_or("no inbox")?
        .id;
    let started = Instant::now();
    let mut done = 0;
    if filled {
        println!("reusing the filled store in {}", dir.display());
        done = cli.messages;
        // What the server does in the background after an upgrade that rebuilt the search
        // index, done here before measuring (and timed: it is what an upgrade costs).
        let indexing = Instant::now();
        let indexed = herald::store::email_search::index_backlog(&store)?;
        if indexed > 0 {
            let secs = indexing.elapsed().as_secs_f64();
            println!(
                "search index backlog: {indexed} emails in {secs:.1} s: {:.0} emails/s",
                indexed as f64 / secs
            );
        }
    }
    while done < cli.messages {
        let n = cli.batch.min(cli.messages - done);
        let ops: Vec<EmailOp> = (done..done + n)
            .map(|i| EmailOp::Create {
                creation_id: format!("c{i}"),
                email: NewEmail {
                    id: new_email_id(),
                    source: Source::Message(message(i)),
                    mailbox_ids: BTreeSet::from([inbox.clone()]),
                    keywords: if i.is_multiple_of(3) {
                        BTreeSet::from(["$seen".to_owned()])
                    } else {
                        BTreeSet::new()
                    },
                    received_at: Some(1_700_000_000 + i as i64),
                    delivery: true,
                },
            })
            .collect();
        let (results, _) =
            changelog::write(&mut conn, &account, |txn| email::apply(txn, None, ops))?;
        if let Some(bad) = results.iter().find(|r| !matches!(r, OpResult::Created(..))) {
            return Err(format!("import failed: {bad:?}").into());
        }
        done += n;
    }
    let import = started.elapsed();
    drop(conn);
    let import_rate = if filled {
        0.0
    } else {
        cli.messages as f64 / import.as_secs_f64()
    };
    if !filled {
        println!(
            "imported {} messages in {:.1} s: {:.0} messages/s",
            cli.messages,
            import.as_secs_f64(),
            import_rate
        );
    }

    // Serve and query.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let running = herald::server::start(&config, store.clone(), listener)?;
    let handle = running.server.handle();
    let api = format!("{}/jmap/api", running.base_url);
    actix_web::rt::spawn(running.run());
    let sync = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [
            ["Email/query", {"accountId": account, "filter": {"inMailbox": inbox},
                "sort": [{"property": "receivedAt", "isAscending": false}],
                "limit": cli.page, "calculateTotal": true}, "q"],
            ["Email/get", {"accountId": account,
                "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["threadId", "mailboxIds", "keywords", "from", "subject",
                               "receivedAt", "preview"]}, "g"]
        ]
    });
    let mailbox_get = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Mailbox/get", {"accountId": account}, "m"]]
    });
    // `--text-conditions` OR'd text conditions (the shipped limit allows 4), none of which matches
    // (or, `--common-words`, each of which matches every message).
    let words: Vec<serde_json::Value> = (0..cli.text_conditions)
        .map(|i| {
            const COMMON: [&str; 8] = [
                "lorem",
                "ipsum",
                "dolor",
                "amet",
                "consectetur",
                "adipiscing",
                "elit",
                "hello",
            ];
            match cli.common_words {
                true => json!({"text": COMMON[i % COMMON.len()]}),
                false => json!({"text": format!("absentword{i}")}),
            }
        })
        .collect();
    let query = |filter: &Value| {
        json!({
            "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
            "methodCalls": [["Email/query", {"accountId": account,
                "filter": filter,
                "sort": [{"property": "receivedAt", "isAscending": false}],
                "limit": cli.page, "calculateTotal": true}, "q"]]
        })
        .to_string()
    };
    // The Email/query filter of the search requests, whose query plan is printed.
    let filter = match cli.request {
        Request::Sync | Request::MailboxGet | Request::QueryChanges | Request::QueryChangesAll => {
            None
        }
        Request::RareWord => Some(json!({"text": "rare007"})),
        Request::CommonWord => Some(json!({"text": "lorem"})),
        Request::ThreeWords => Some(json!({"text": "hello team rare007"})),
        Request::LargestFilter => Some(json!({"operator": "OR", "conditions": words})),
    };
    let (what, body) = match (cli.request, &filter) {
        (Request::Sync, _) => (
            format!("Email/query + Email/get #ids, page {}", cli.page),
            sync.to_string(),
        ),
        (Request::QueryChanges | Request::QueryChangesAll, _) => {
            let up_to = cli.request == Request::QueryChanges;
            let body = query_changes_body(&api, &account, &inbox, cli.page, up_to).await?;
            let what = match up_to {
                true => format!("Email/queryChanges of the inbox, upToId at {}", cli.page),
                false => "Email/queryChanges of the inbox, no upToId".to_owned(),
            };
            (what, body)
        }
        (Request::MailboxGet, _) | (_, None) => (
            "Mailbox/get (all, with counts)".to_owned(),
            mailbox_get.to_string(),
        ),
        (Request::RareWord, Some(f)) => (
            "Email/query text \"rare007\" (0.1 % of messages), calculateTotal".to_owned(),
            query(f),
        ),
        (Request::CommonWord, Some(f)) => (
            "Email/query text \"lorem\" (every message), calculateTotal".to_owned(),
            query(f),
        ),
        (Request::ThreeWords, Some(f)) => (
            "Email/query text \"hello team rare007\", calculateTotal".to_owned(),
            query(f),
        ),
        (Request::LargestFilter, Some(f)) => (
            format!(
                "Email/query, {} OR'd text conditions, calculateTotal",
                cli.text_conditions
            ),
            query(f),
        ),
    };
    if let Some(f) = &filter {
        let q = EmailQuery {
            filter: Some(Filter::parse(f, &config.query).map_err(|e| format!("{e:?}"))?),
            sort: parse_sort(&[], &config.query).map_err(|e| format!("{e:?}"))?,
            collapse_threads: false,
        };
        let plan = sqlite_query_plan(&mut *store.conn()?, &account, &q, 0, cli.page as u64)?;
        for line in plan {
            println!("plan: {line}");
        }
    }
    // One request first, to show what the measured one answers (and to warm the caches).
    let first: Value = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish()
        .post(&api)
        .basic_auth("bench", "bench")
        .insert_header(("Content-Type", "application/json"))
        .send_body(body.clone())
        .await?
        .json()
        .limit(16 * 1024 * 1024)
        .await?;
    if let Some(total) = first["methodResponses"][0][1].get("total") {
        println!("answer: total {total}");
    }
    let deadline = Instant::now() + Duration::from_secs(cli.seconds);
    let clients = (0..cli.clients).map(|_| {
        let (api, body) = (api.clone(), body.clone());
        async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish();
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let res = client
                    .post(&api)
                    .basic_auth("bench", "bench")
                    .insert_header(("Content-Type", "application/json"))
                    .send_body(body.clone())
                    .await;
                let ok = match res {
                    Ok(mut r) => match r.body().limit(16 * 1024 * 1024).await {
                        Ok(b) => serde_json::from_slice::<Value>(&b)
                            .ok()
                            .and_then(|v| {
                                let responses = v["methodResponses"].as_array()?;
                                let last = &responses.last()?[1];
                                // Email/get's list, or (a query alone) Email/query's ids, or
                                // Email/queryChanges's added.
                                match last["list"].as_array() {
                                    Some(l) => Some(!l.is_empty()),
                                    None => last["ids"]
                                        .as_array()
                                        .or(last["added"].as_array())
                                        .map(|_| true),
                                }
                            })
                            .unwrap_or(false),
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }
    });
    let started = Instant::now();
    let results = futures_util::future::join_all(clients).await;
    let wall = started.elapsed();
    let mut all: Vec<Duration> = results.iter().flat_map(|(l, _)| l.clone()).collect();
    let errors: u64 = results.iter().map(|(_, e)| e).sum();
    all.sort();
    let rps = all.len() as f64 / wall.as_secs_f64();
    println!(
        "{what}, {} clients, {:.0} s: {} requests, {} errors, \
         {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
        cli.clients,
        wall.as_secs_f64(),
        all.len(),
        errors,
        rps,
        percentile(&all, 0.50).as_secs_f64() * 1000.0,
        percentile(&all, 0.99).as_secs_f64() * 1000.0,
    );
    println!("machine: {}", machine());
    println!(
        "{}",
        json!({
            "messages": cli.messages, "import_per_s": import_rate.round(),
            "clients": cli.clients, "requests": all.len(), "errors": errors,
            "requests_per_s": rps.round(),
            "p50_ms": percentile(&all, 0.50).as_secs_f64() * 1000.0,
            "p99_ms": percentile(&all, 0.99).as_secs_f64() * 1000.0,
            "machine": machine(),
        })
    );
    handle.stop(false).await;
    if cli.keep_store || cli.store_dir.is_some() {
        println!("store kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// A fresh directory under the system temp dir (removed at the end).
/// Queries the inbox's first page, changes a keyword of its first email, and returns the
/// Email/queryChanges request from the query's state (with `upToId` the page's last id).
async fn query_changes_body(
    api: &str,
    account: &str,
    inbox: &str,
    page: usize,
    up_to: bool,
) -> Result<String, Box<dyn std::error::Error>> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish();
    let call = async |calls: Value| -> Result<Value, Box<dyn std::error::Error>> {
        let body = json!({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                          "methodCalls": calls});
        let v: Value = client
            .post(api)
            .basic_auth("bench", "bench")
            .send_json(&body)
            .await?
            .json()
            .limit(16 * 1024 * 1024)
            .await?;
        Ok(v["methodResponses"][0][1].clone())
    };
    let sort = json!([{"property": "receivedAt", "isAscending": false}]);
    let q = call(
        json!([["Email/query", {"accountId": account, "filter": {"inMailbox": inbox},
                                         "sort": sort, "limit": page}, "q"]]),
    )
    .await?;
    let ids = q["ids"].as_array().cloned().unwrap_or_default();
    let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
        return Err("the inbox is empty".into());
    };
    let state = q["queryState"].clone();
    let keyword = format!("keywords/bench{}", std::process::id());
    call(json!([["Email/set", {"accountId": account,
                               "update": {first.as_str().unwrap_or_default(): {keyword: true}}}, "s"]]))
    .await?;
    let mut args = json!({"accountId": account, "filter": {"inMailbox": inbox}, "sort": sort,
                          "sinceQueryState": state, "calculateTotal": true});
    if up_to {
        args["upToId"] = last.clone();
    }
    Ok(
        json!({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
              "methodCalls": [["Email/queryChanges", args, "qc"]]})
        .to_string(),
    )
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "herald-bench-mail-{}-{}",
        std::process::id(),
        herald::store::now()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
