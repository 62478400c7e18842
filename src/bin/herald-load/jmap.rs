//! The little JMAP the load tool needs, over the wire only: the session, API calls, and reading
//! push events from WebSocket (RFC 8887) and EventSource (RFC 8620 §7.3) streams.

use std::time::Duration;

use serde_json::{Value, json};

pub const CORE: &str = "urn:ietf:params:jmap:core";
pub const MAIL: &str = "urn:ietf:params:jmap:mail";

/// A user's credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// What the tool reads from a session.
#[derive(Clone, Debug)]
pub struct Session {
    pub api_url: String,
    pub event_source_url: String,
    pub websocket_url: Option<String>,
    pub account_id: String,
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .connector(awc::Connector::new().limit(0))
        .finish()
}

/// Fetches the session of `creds` from `base` (`/.well-known/jmap`).
pub async fn session(
    client: &awc::Client,
    base: &str,
    creds: &Credentials,
) -> Result<Session, String> {
    let url = format!("{}/.well-known/jmap", base.trim_end_matches('/'));
    let mut res = client
        .get(&url)
        .basic_auth(&creds.user, &creds.password)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if res.status().is_redirection() {
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", base.trim_end_matches('/'))
        } else {
            location
        };
        res = client
            .get(&location)
            .basic_auth(&creds.user, &creds.password)
            .send()
            .await
            .map_err(|e| format!("GET {location}: {e}"))?;
    }
    if !res.status().is_success() {
        return Err(format!("session of {}: HTTP {}", creds.user, res.status()));
    }
    let v: Value = res
        .json()
        .limit(1 << 20)
        .await
        .map_err(|e| format!("session JSON: {e}"))?;
    let account_id = v["primaryAccounts"][MAIL]
        .as_str()
        .or_else(|| {
            v["accounts"]
                .as_object()
                .and_then(|a| a.keys().next().map(String::as_str))
        })
        .ok_or("the session has no account")?
        .to_owned();
    Ok(Session {
        api_url: v["apiUrl"].as_str().ok_or("no apiUrl")?.to_owned(),
        event_source_url: v["eventSourceUrl"]
            .as_str()
            .ok_or("no eventSourceUrl")?
            .to_owned(),
        websocket_url: v["capabilities"]["urn:ietf:params:jmap:websocket"]["url"]
            .as_str()
            .map(str::to_owned),
        account_id,
    })
}

/// Posts one request; returns the methodResponses.
pub async fn call(
    client: &awc::Client,
    session: &Session,
    creds: &Credentials,
    using: &[&str],
    calls: Value,
) -> Result<Vec<Value>, String> {
    let body = json!({"using": using, "methodCalls": calls});
    let mut res = client
        .post(&session.api_url)
        .basic_auth(&creds.user, &creds.password)
        .insert_header(("Content-Type", "application/json"))
        .send_body(body.to_string())
        .await
        .map_err(|e| format!("POST: {e}"))?;
    let status = res.status();
    let v: Value = res
        .json()
        .limit(64 << 20)
        .await
        .map_err(|e| format!("response JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {v}"));
    }
    v["methodResponses"]
        .as_array()
        .cloned()
        .ok_or_else(|| "no methodResponses".into())
}

/// The `changed` map of a StateChange: (account id, type, state) triples.
pub fn state_changes(v: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if v["@type"] != "StateChange" {
        return out;
    }
    if let Some(changed) = v["changed"].as_object() {
        for (account, types) in changed {
            if let Some(types) = types.as_object() {
                for (t, state) in types {
                    if let Some(state) = state.as_str() {
                        out.push((account.clone(), t.clone(), state.to_owned()));
                    }
                }
            }
        }
    }
    out
}

/// Splits an SSE buffer into complete events `(event, data)`, leaving any partial event in `buf`.
pub fn sse_events(buf: &mut String) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let normalized = buf.replace("\r\n", "\n");
    let mut rest = normalized.as_str();
    while let Some(end) = rest.find("\n\n") {
        let block = &rest[..end];
        rest = &rest[end + 2..];
        let mut event = "message".to_owned();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if !data.is_empty() {
            out.push((event, data));
        }
    }
    *buf = rest.to_owned();
    out
}

/// Expands the session's eventSourceUrl template.
pub fn event_source_url(template: &str, types: &str, closeafter: &str, ping: u64) -> String {
    template
        .replace("{types}", types)
        .replace("{closeafter}", closeafter)
        .replace("{ping}", &ping.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_on_blank_lines_and_partial_ones_wait() {
        let mut buf =
            ": hi\n\nevent: state\nid: x\ndata: {\"a\":1}\n\nevent: ping\ndata: {\"interval\""
                .to_owned();
        let events = sse_events(&mut buf);
        assert_eq!(events, vec![("state".to_owned(), "{\"a\":1}".to_owned())]);
        assert!(buf.starts_with("event: ping"));
    }

    #[test]
    fn a_state_change_yields_its_account_type_state_triples() {
        let v = json!({"@type": "StateChange", "changed": {"A": {"Mailbox": "5"}}});
        assert_eq!(
            state_changes(&v),
            vec![("A".into(), "Mailbox".into(), "5".into())]
        );
    }
}
