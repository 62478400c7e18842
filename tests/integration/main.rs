//! Herald's integration tests: one binary, so the crate and its dependencies are linked once and
//! one PostgreSQL cluster serves the whole run.
//!
//! Every test starts a real node (HTTP, WebSocket, EventSource) on 127.0.0.1:0 with a fresh store,
//! or runs the real `herald` binary, and speaks to it as a client would. Shared pieces (the server,
//! clients, the PostgreSQL cluster, the backend switch of `#[on_both_backends]`) are in
//! `tests/harness/`.

// Tests fail by panicking; their helpers unwrap for the same reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A test is one scenario, read top to bottom; splitting it would hide its story.
#![allow(clippy::too_many_lines)]

#[path = "../harness/mod.rs"]
mod harness;

mod blobs;
mod changelog;
mod cli;
mod cluster;
mod email;
mod email_create;
mod email_query;
mod email_summary;
mod foundation;
mod identity;
mod interop_jmap_client;
mod lmtp;
mod mailbox;
mod mailbox_counts;
mod metrics;
mod operator;
mod postfix;
mod postgres;
mod push_browser;
mod push_eventsource;
mod push_other_processes;
mod push_pacing;
mod push_revocation;
mod push_webhook;
mod push_ws;
mod query_limits;
mod search;
mod sharing;
mod slow_clients;
mod submission;
mod submission_outbox;
mod user_names;
mod vacation_reply;
mod ws_limits;
