//! A client that sends slowly holds its own connection and nothing of anyone else's, nor the
//! slots its own user needs for requests that do arrive.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use serde_json::json;

use crate::harness::{CORE, TestServer};

/// Starts a `POST /jmap/api` announcing a 1,000-byte body and sends one byte of it.
fn trickling_request(base: &str) -> TcpStream {
    trickling_post(base, "/jmap/api", "application/json")
}

/// Starts a POST to `path` announcing a 1,000-byte body and sends one byte of it.
fn trickling_post(base: &str, path: &str, content_type: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut socket = TcpStream::connect(addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let credentials = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    write!(
        socket,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: 1000\r\nAuthorization: Basic {credentials}\r\n\r\n{{"
    )
    .unwrap();
    socket
}

#[actix_web::test]
async fn bodies_that_trickle_hold_no_request_slot_and_time_out_with_408() {
    let s = TestServer::start_with(|c| {
        c.limits.max_concurrent_requests = 2;
        c.server.request_body_timeout_secs = 1;
    })
    .await;
    let alice = s.add_user("alice", "pw");
    let base = s.base.clone();
    let mut slow = actix_web::rt::task::spawn_blocking(move || {
        vec![trickling_request(&base), trickling_request(&base)]
    })
    .await
    .unwrap();
    // Both of the user's slots would be taken if reading a body took one.
    let r = s
        .call(
            &alice,
            &[CORE],
            json!([["Core/echo", {"hello": true}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["hello"], true, "{r:?}");
    let heads = actix_web::rt::task::spawn_blocking(move || {
        slow.iter_mut()
            .map(|socket| {
                let mut head = [0u8; 12];
                socket.read_exact(&mut head).expect("an answer");
                String::from_utf8_lossy(&head).into_owned()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(heads, ["HTTP/1.1 408", "HTTP/1.1 408"]);
    s.stop().await;
}

#[actix_web::test]
async fn an_upload_that_trickles_times_out_with_408_and_frees_its_slot() {
    let s = TestServer::start_with(|c| {
        c.limits.max_concurrent_upload = 1;
        c.server.request_body_timeout_secs = 1;
    })
    .await;
    let alice = s.add_user("alice", "pw");
    let account = crate::harness::push::account_id(&s, &alice).await;
    let base = s.base.clone();
    let path = format!("/jmap/upload/{account}/");
    let head = actix_web::rt::task::spawn_blocking(move || {
        let mut socket = trickling_post(&base, &path, "text/plain");
        let mut head = [0u8; 12];
        socket.read_exact(&mut head).expect("an answer");
        String::from_utf8_lossy(&head).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(head, "HTTP/1.1 408");
    let a = s
        .post_raw(
            &format!("/jmap/upload/{account}/"),
            &alice,
            "text/plain",
            b"hi".to_vec(),
        )
        .await;
    assert_eq!(a.status.as_u16(), 201, "the slot is free again");
    s.stop().await;
}
