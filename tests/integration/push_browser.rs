//! A real browser (headless Chromium) opens an EventSource with a ticket, as a web client must
//! (browsers cannot set headers on EventSource), and receives a StateChange after an HTTP
//! mutation. `.ci/run` installs Chromium when it is missing.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness;
use crate::harness::TestServer;
use crate::harness::push::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;
use tokio::sync::mpsc;

/// Kills the browser however the test ends.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return name.to_owned();
        }
    }
    panic!("{}", harness::tools::missing("Chromium", "chromium"));
}

fn page(herald: &str, ticket: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>herald push</title>
<script>
const report = (kind, body) => fetch("/report/" + kind, {{method: "POST", body}});
const es = new EventSource("{herald}/jmap/eventsource/?types=*&closeafter=no&ping=0&ticket={ticket}");
es.onopen = () => report("open", "");
es.addEventListener("state", e => report("state", JSON.stringify({{id: e.lastEventId, data: JSON.parse(e.data)}})));
es.onerror = () => report("error", String(es.readyState));
</script>"#
    )
}

/// The next report, or `None` after `wait`.
async fn next(
    reports: &mut mpsc::UnboundedReceiver<(String, String)>,
    wait: Duration,
) -> Option<(String, String)> {
    actix_web::rt::time::timeout(wait, reports.recv())
        .await
        .ok()
        .flatten()
}

#[actix_web::test]
async fn a_browser_event_source_with_a_ticket_receives_a_state_change() {
    let browser_bin = chromium();
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let a = s
        .post_raw("/jmap/ticket", &alice, "application/json", Vec::new())
        .await;
    let ticket = a.body["ticket"].as_str().unwrap().to_owned();

    // The page's own origin: serves the page and takes the browser's reports.
    let (tx, mut reports) = mpsc::unbounded_channel::<(String, String)>();
    let html = page(&s.base, &ticket);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let page_addr = listener.local_addr().unwrap();
    let page_server = HttpServer::new(move || {
        let html = html.clone();
        let tx = tx.clone();
        App::new()
            .route(
                "/",
                web::get().to(move || {
                    let html = html.clone();
                    async move { HttpResponse::Ok().content_type("text/html").body(html) }
                }),
            )
            .route(
                "/report/{kind}",
                web::post().to(move |kind: web::Path<String>, body: String| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send((kind.into_inner(), body));
                        HttpResponse::NoContent().finish()
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .unwrap()
    .run();
    let page_handle = page_server.handle();
    actix_web::rt::spawn(page_server);

    let profile = tempfile::tempdir().unwrap();
    let _browser = Browser(
        Command::new(browser_bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("http://{page_addr}/"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Chromium"),
    );

    // Chromium takes a while to start on a busy machine.
    let (kind, body) = next(&mut reports, Duration::from_secs(90))
        .await
        .expect("the page reported");
    assert_eq!(kind, "open", "{body}");

    // The stream may still be subscribing when `open` fires: mutate until a state event shows
    // the newest Mailbox state (a bounded number of tries).
    let mut got = None;
    'tries: for attempt in 0..5 {
        let state = create_mailbox(&s, &alice, &account, &format!("Browser{attempt}")).await;
        while let Some((kind, body)) = next(&mut reports, Duration::from_secs(5)).await {
            assert_ne!(kind, "error", "the EventSource failed: {body}");
            if kind != "state" {
                continue;
            }
            let report: Value = serde_json::from_str(&body).unwrap();
            if report["data"]["changed"][&account]["Mailbox"] == state.as_str() {
                got = Some(report);
                break 'tries;
            }
        }
    }
    let report = got.expect("the browser received the StateChange");
    assert_eq!(report["data"]["@type"], "StateChange");
    assert!(report["id"].as_str().is_some_and(|id| !id.is_empty()));
    // The ticket was used up by the browser.
    let again = s
        .get(
            &format!("/jmap/eventsource/?types=*&closeafter=no&ping=0&ticket={ticket}"),
            &harness::Auth::None,
        )
        .await;
    assert_eq!(again.status, awc::http::StatusCode::UNAUTHORIZED);
    page_handle.stop(false).await;
}
