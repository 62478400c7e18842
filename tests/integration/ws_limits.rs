//! What the WebSocket endpoint refuses before it buffers anything (RFC 6455 §4.2.1, §5.2, §7.4.1),
//! spoken over a raw TCP socket, since a well-behaved client library cannot send such frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;

use crate::harness::TestServer;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends an upgrade to `/jmap/ws` with `version` and `key`; returns the socket and the answer's head.
fn upgrade(base: &str, version: &str, key: &str) -> (TcpStream, String) {
    let addr = base.trim_start_matches("http://");
    let mut socket = TcpStream::connect(addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let credentials = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    write!(
        socket,
        "GET /jmap/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Protocol: jmap\r\nAuthorization: Basic {credentials}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).expect("the answer's head");
        head.push(byte[0]);
    }
    (socket, String::from_utf8_lossy(&head).into_owned())
}

/// Reads server frames until a Close frame; returns its status code.
fn close_code(socket: &mut TcpStream) -> u16 {
    loop {
        let mut header = [0u8; 2];
        socket
            .read_exact(&mut header)
            .expect("a frame from the server");
        let len = match header[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                socket.read_exact(&mut l).unwrap();
                u64::from(u16::from_be_bytes(l))
            }
            127 => {
                let mut l = [0u8; 8];
                socket.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        socket.read_exact(&mut payload).unwrap();
        if header[0] & 0x0f == 8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[actix_web::test]
async fn a_frame_announcing_more_than_max_size_request_is_closed_with_1009_before_its_payload() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw");
    let base = s.base.clone();
    let code = actix_web::rt::task::spawn_blocking(move || {
        let (mut socket, head) = upgrade(&base, "13", KEY);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // A text frame header claiming 2^63 - 1 bytes, then its mask; no payload follows, so
        // only a refusal on the header itself can answer.
        socket
            .write_all(&[
                0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4,
            ])
            .unwrap();
        close_code(&mut socket)
    })
    .await
    .unwrap();
    assert_eq!(code, 1009);
    s.stop().await;
}

#[actix_web::test]
async fn fragments_adding_up_to_more_than_max_size_request_are_closed_with_1009() {
    let s = TestServer::start_with(|c| c.limits.max_size_request = 10_000).await;
    s.add_user("alice", "pw");
    let base = s.base.clone();
    let code = actix_web::rt::task::spawn_blocking(move || {
        let (mut socket, head) = upgrade(&base, "13", KEY);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // A first text fragment of 8,000 bytes, then a continuation announcing 8,000 more.
        let mut first = vec![0x01, 0x80 | 126];
        first.extend_from_slice(&8000u16.to_be_bytes());
        first.extend_from_slice(&[0, 0, 0, 0]);
        first.extend(std::iter::repeat_n(b' ', 8000));
        socket.write_all(&first).unwrap();
        let mut second = vec![0x80, 0x80 | 126];
        second.extend_from_slice(&8000u16.to_be_bytes());
        second.extend_from_slice(&[0, 0, 0, 0]);
        socket.write_all(&second).unwrap();
        close_code(&mut socket)
    })
    .await
    .unwrap();
    assert_eq!(code, 1009);
    s.stop().await;
}

#[actix_web::test]
async fn an_upgrade_with_another_version_or_a_short_key_is_refused() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw");
    let base = s.base.clone();
    let (old_version, empty_key) = actix_web::rt::task::spawn_blocking(move || {
        (upgrade(&base, "8", KEY).1, upgrade(&base, "13", "").1)
    })
    .await
    .unwrap();
    // RFC 6455 §4.4: 426 with the version the server speaks.
    assert!(old_version.starts_with("HTTP/1.1 426"), "{old_version}");
    assert!(
        old_version
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{old_version}"
    );
    assert!(empty_key.starts_with("HTTP/1.1 400"), "{empty_key}");
    s.stop().await;
}
