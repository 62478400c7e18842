//! An SMTP server on a real socket that stands in for the relay: it speaks enough SMTP for a
//! client's transaction (EHLO, MAIL, RCPT, DATA, RSET, QUIT), answers each RCPT as the test
//! scripted for that address, records every accepted message, and can stall: hold new
//! connections without a greeting until released.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One message the sink accepted.
#[derive(Clone, Debug)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

#[derive(Default)]
struct State {
    /// RCPT reply per address (lowercase); others get `250 2.1.5 Ok`.
    replies: HashMap<String, String>,
    received: Vec<Received>,
    /// RCPT TO addresses seen, accepted or not.
    attempts: Vec<String>,
    stalled: bool,
    /// Connections held without a greeting right now.
    held: usize,
}

/// The sink; it serves until the test process ends.
#[derive(Clone)]
pub struct SmtpSink {
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        SmtpSink { url, state }
    }

    /// From now on, answer `RCPT TO:<address>` with `reply` (e.g. `451 4.3.0 busy`).
    pub fn answer(&self, address: &str, reply: &str) {
        self.lock()
            .replies
            .insert(address.to_lowercase(), reply.to_owned());
    }

    /// Holds new connections without a greeting (`true`) or lets them through.
    pub fn stall(&self, stalled: bool) {
        self.lock().stalled = stalled;
        self.state.1.notify_all();
    }

    /// Connections held by the stall right now.
    pub fn held(&self) -> usize {
        self.lock().held
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Every RCPT TO address offered so far, in order.
    pub fn attempts(&self) -> Vec<String> {
        self.lock().attempts.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.0.lock().unwrap()
    }
}

fn serve(stream: TcpStream, state: &(Mutex<State>, Condvar)) -> std::io::Result<()> {
    {
        let mut s = state.0.lock().unwrap();
        if s.stalled {
            s.held += 1;
            while s.stalled {
                s = state.1.wait(s).unwrap();
            }
            s.held -= 1;
        }
    }
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 sink.test ESMTP\r\n")?;
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    let mut line = String::new();
    while lines.read_line(&mut line)? > 0 {
        let cmd = line.trim_end().to_owned();
        line.clear();
        let upper = cmd.to_ascii_uppercase();
        let address = || {
            let start = cmd.find('<').map_or(0, |i| i + 1);
            let end = cmd.rfind('>').unwrap_or(cmd.len());
            cmd[start..end.max(start)].to_owned()
        };
        let reply = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250 sink.test".to_owned()
        } else if upper.starts_with("MAIL FROM:") {
            from = address();
            rcpts.clear();
            "250 2.1.0 Ok".to_owned()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = address();
            let mut s = state.0.lock().unwrap();
            s.attempts.push(rcpt.clone());
            let reply = s
                .replies
                .get(&rcpt.to_lowercase())
                .cloned()
                .unwrap_or_else(|| "250 2.1.5 Ok".to_owned());
            if reply.starts_with('2') {
                rcpts.push(rcpt);
            }
            reply
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                "554 5.5.1 no valid recipients".to_owned()
            } else {
                out.write_all(b"354 go ahead\r\n")?;
                let mut data = String::new();
                loop {
                    if lines.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        line.clear();
                        break;
                    }
                    let l = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(l);
                    line.clear();
                }
                state.0.lock().unwrap().received.push(Received {
                    mail_from: from.clone(),
                    rcpt_to: std::mem::take(&mut rcpts),
                    data,
                });
                "250 2.0.0 Ok: queued as 42".to_owned()
            }
        } else if upper.starts_with("QUIT") {
            out.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            "250 2.0.0 Ok".to_owned()
        };
        out.write_all(format!("{reply}\r\n").as_bytes())?;
        // RFC 5321 §3.8: a 421 reply closes the channel.
        if reply.starts_with("421") {
            return Ok(());
        }
    }
    Ok(())
}
