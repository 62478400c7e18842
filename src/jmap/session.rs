//! The session resource (RFC 8620 §2): who the user is, which accounts they see, what the server
//! can do and where. Built from plain data, so it is the same for HTTP and every push transport.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::config::limits::Limits;
use crate::jmap::capability;

/// Capabilities that only make sense in the user's own account: identities, sending and the
/// vacation response belong to the account's owner, so a shared account offers mail only
/// (RFC 8621 §1.4, MCAP-05).
pub const PERSONAL_ONLY: &[&str] = &[capability::SUBMISSION, capability::VACATION_RESPONSE];

/// One account a user may use.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountAccess {
    pub account_id: String,
    pub name: String,
    /// The user owns it (RFC 8620 §2 `isPersonal`).
    pub is_personal: bool,
    pub read_only: bool,
}

/// An authenticated user and every account they may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub accounts: Vec<AccountAccess>,
    /// The bearer token this principal authenticated with, as stored (its SHA-256); `None` for a
    /// password. Push streams opened with a token end when it is revoked.
    pub token_hash: Option<String>,
    /// For a password login (or a ticket it minted), a digest of the stored password hash it was
    /// checked against: a WebSocket opened with it runs no request once the password changed.
    pub password_stamp: Option<String>,
}

impl Principal {
    /// The user's access to `account_id`, if any. Accounts the user may not read do not exist
    /// for them (RFC 8621 §9.5).
    pub fn account(&self, account_id: &str) -> Option<&AccountAccess> {
        self.accounts.iter().find(|a| a.account_id == account_id)
    }

    /// The user's own account.
    pub fn personal_account(&self) -> Option<&AccountAccess> {
        self.accounts.iter().find(|a| a.is_personal)
    }
}

/// What this server offers, independent of who asks.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// Absolute base URL, without a trailing slash (e.g. `https://mail.example.com`).
    pub base_url: String,
    pub limits: Limits,
    /// Session-level capability objects, besides core (which is built from `limits`).
    pub capabilities: BTreeMap<&'static str, Value>,
    /// Per-account capability objects; for now every account gets all of them.
    pub account_capabilities: BTreeMap<&'static str, Value>,
    /// Reject every unsupported URN in `using`, registered or not.
    pub strict_using: bool,
    /// The domain of default identities of user names without `@` (`[submission] domain`).
    pub mail_domain: String,
    /// The SMTP relay URL for non-local recipients (`[submission] relay`); empty = none.
    pub relay_url: String,
    /// `[submission] max_delayed_send_secs`: the longest HOLDFOR/HOLDUNTIL (`maxDelayedSend`).
    pub max_delayed_send_secs: u64,
    /// `[submission] vacation_reply_interval_secs`.
    pub vacation_reply_interval_secs: u64,
    /// Bounds on Email/query filters and sorts (`[query]`).
    pub query_limits: crate::config::limits::QueryLimits,
    /// PushSubscription limits and the push-target policy (`[push]`).
    pub webhooks: crate::jmap::webhook_policy::WebhookPolicy,
    fingerprint: String,
}

impl ServerInfo {
    pub fn new(
        base_url: &str,
        limits: Limits,
        capabilities: BTreeMap<&'static str, Value>,
        account_capabilities: BTreeMap<&'static str, Value>,
        strict_using: bool,
    ) -> Self {
        let mut info = ServerInfo {
            base_url: base_url.trim_end_matches('/').to_owned(),
            limits,
            capabilities,
            account_capabilities,
            strict_using,
            mail_domain: "localhost".into(),
            relay_url: String::new(),
            max_delayed_send_secs: 0,
            vacation_reply_interval_secs: 7 * 24 * 3600,
            query_limits: Default::default(),
            webhooks: Default::default(),
            fingerprint: String::new(),
        };
        let mut h = sha2::Sha256::new();
        h.update(Value::Object(info.capability_objects()).to_string());
        h.update(&info.base_url);
        h.update(Value::Object(info.account_capabilities()).to_string());
        info.fingerprint = hex(&h.finalize()[..8]);
        info
    }

    /// The capability URNs a request may name in `using` and have take effect.
    pub fn supported(&self) -> Vec<&'static str> {
        let mut v = vec![capability::CORE];
        v.extend(self.capabilities.keys().copied());
        v
    }

    /// Whether an account offers `capability` (RFC 8620 §2 `accountCapabilities`).
    pub fn account_has(&self, account: &AccountAccess, capability: &str) -> bool {
        capability == capability::CORE
            || (self.account_capabilities.contains_key(capability)
                && (account.is_personal || !PERSONAL_ONLY.contains(&capability)))
    }

    /// The capability objects of one account: only those usable in it (RFC 8621 §1.4, MCAP-05).
    pub fn capabilities_of(&self, account: &AccountAccess) -> Map<String, Value> {
        self.account_capabilities
            .iter()
            .filter(|(k, _)| self.account_has(account, k))
            .map(|(k, v)| {
                let mut v = v.clone();
                // MCAP-02: a read-only account cannot get new mailboxes.
                if *k == capability::MAIL
                    && account.read_only
                    && let Some(o) = v.as_object_mut()
                {
                    o.insert("mayCreateTopLevelMailbox".into(), Value::Bool(false));
                }
                // RFC 4865 §3: FUTURERELEASE's arguments are the longest hold and the latest
                // release date-time, which moves with the clock.
                if *k == capability::SUBMISSION
                    && self.max_delayed_send_secs > 0
                    && let Some(o) = v.as_object_mut()
                {
                    let latest = chrono::Utc::now()
                        + chrono::Duration::seconds(self.max_delayed_send_secs as i64);
                    o.insert(
                        "submissionExtensions".into(),
                        serde_json::json!({"FUTURERELEASE": [
                            self.max_delayed_send_secs.to_string(),
                            latest.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        ]}),
                    );
                }
                ((*k).to_owned(), v)
            })
            .collect()
    }

    fn capability_objects(&self) -> Map<String, Value> {
        let l = &self.limits;
        let mut caps = Map::new();
        caps.insert(
            capability::CORE.into(),
            json!({
                "maxSizeUpload": l.max_size_upload,
                "maxConcurrentUpload": l.max_concurrent_upload,
                "maxSizeRequest": l.max_size_request,
                "maxConcurrentRequests": l.max_concurrent_requests,
                "maxCallsInRequest": l.max_calls_in_request,
                "maxObjectsInGet": l.max_objects_in_get,
                "maxObjectsInSet": l.max_objects_in_set,
                "collationAlgorithms": ["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"],
            }),
        );
        for (urn, obj) in &self.capabilities {
            caps.insert((*urn).into(), obj.clone());
        }
        caps
    }

    fn account_capabilities(&self) -> Map<String, Value> {
        self.account_capabilities
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// The API URL.
    pub fn api_url(&self) -> String {
        format!("{}/jmap/api", self.base_url)
    }
}

/// The session `state`: changes exactly when the session's contents change (RFC 8620 §2).
pub fn session_state(server: &ServerInfo, principal: &Principal) -> String {
    let mut h = sha2::Sha256::new();
    h.update(&server.fingerprint);
    h.update(principal.username.as_bytes());
    for a in &principal.accounts {
        h.update([0]);
        h.update(a.account_id.as_bytes());
        h.update([0]);
        h.update(a.name.as_bytes());
        h.update([a.is_personal as u8, a.read_only as u8]);
    }
    format!("s{}", hex(&h.finalize()[..8]))
}

/// The session object for `principal` (RFC 8620 §2).
pub fn session_object(server: &ServerInfo, principal: &Principal) -> Value {
    let mut accounts = Map::new();
    for a in &principal.accounts {
        accounts.insert(
            a.account_id.clone(),
            json!({
                "name": a.name,
                "isPersonal": a.is_personal,
                "isReadOnly": a.read_only,
                "accountCapabilities": Value::Object(server.capabilities_of(a)),
            }),
        );
    }
    // RFC 8620 §2: core SHOULD NOT appear in primaryAccounts.
    let mut primary = Map::new();
    if let Some(own) = principal.personal_account() {
        for urn in server.account_capabilities.keys() {
            primary.insert((*urn).into(), Value::from(own.account_id.clone()));
        }
    }
    let base = &server.base_url;
    json!({
        "capabilities": Value::Object(server.capability_objects()),
        "accounts": accounts,
        "primaryAccounts": primary,
        "username": principal.username,
        "apiUrl": server.api_url(),
        // RFC 8620 §2: {type} in the query string, since level-1 expansion escapes its '/'.
        "downloadUrl": format!("{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?type={{type}}"),
        "uploadUrl": format!("{base}/jmap/upload/{{accountId}}/"),
        "eventSourceUrl": format!("{base}/jmap/eventsource/?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"),
        "state": session_state(server, principal),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(read_only: bool) -> Principal {
        Principal {
            user_id: "u1".into(),
            username: "alice".into(),
            accounts: vec![AccountAccess {
                account_id: "a1".into(),
                name: "alice".into(),
                is_personal: true,
                read_only,
            }],
            token_hash: None,
            password_stamp: None,
        }
    }

    #[test]
    fn the_session_state_changes_when_the_sessions_contents_change() {
        let server = ServerInfo::new(
            "http://h/",
            Limits::default(),
            BTreeMap::new(),
            BTreeMap::new(),
            false,
        );
        let s1 = session_state(&server, &principal(false));
        assert_eq!(s1, session_state(&server, &principal(false)));
        assert_ne!(s1, session_state(&server, &principal(true)));
        let other = ServerInfo::new(
            "http://other",
            Limits::default(),
            BTreeMap::new(),
            BTreeMap::new(),
            false,
        );
        assert_ne!(s1, session_state(&other, &principal(false)));
        let obj = session_object(&server, &principal(false));
        assert_eq!(obj["state"], s1);
        assert_eq!(obj["apiUrl"], "http://h/jmap/api");
    }
}
