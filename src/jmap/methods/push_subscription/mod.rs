//! `PushSubscription/get` and `PushSubscription/set` (RFC 8620 §7.2; checklist PSUB-01..PSUB-12).
//!
//! Subscriptions are not account-scoped: they belong to the authenticated user, take and return
//! no `accountId` and have no state. The URL and keys are write-only. A new subscription is
//! verified by a `PushVerification` POST that the webhook sender delivers from the outbox; until
//! the client echoes the code back, nothing else is sent to the URL.

pub mod keys;
mod set;

pub use set::set;

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::standard::{SetError, SetErrorType};
use crate::jmap::webhook_policy::WebhookPolicy;
use keys::UaKeys;

/// Type names a subscription may filter on (checklist PSH-05, PSUB-12).
pub const KNOWN_TYPES: &[&str] = &[
    "Mailbox",
    "Thread",
    "Email",
    "EmailDelivery",
    "Identity",
    "EmailSubmission",
    "VacationResponse",
];

/// Properties `/get` may return; `url` and `keys` never (PSUB-04).
const READABLE: &[&str] = &[
    "id",
    "deviceClientId",
    "verificationCode",
    "expires",
    "types",
];

/// A stored subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub device_client_id: String,
    pub url: String,
    pub keys: Option<UaKeys>,
    /// The code sent in the PushVerification.
    pub verification_code: String,
    /// The client has echoed the code back.
    pub verified: bool,
    /// Unix seconds.
    pub expires: i64,
    /// `None` = all types.
    pub types: Option<Vec<String>>,
    /// The credentials that created it: the bearer token's hash, `None` for a password. Only
    /// the same credentials see it (PSUB-03).
    pub token_hash: Option<String>,
}

/// The subscriptions the call's credentials created: a subscription belongs to the credentials
/// that created it, and no others see it (RFC 8620 §7.2, PSUB-03).
pub fn own_subscriptions<C: PushSubscriptionStore>(
    ctx: &mut C,
    call: &Call<'_>,
) -> Result<Vec<Subscription>, MethodError> {
    let mut all = ctx.push_subscriptions(&call.principal.user_id)?;
    all.retain(|s| s.token_hash == call.principal.token_hash);
    Ok(all)
}

/// A validated creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSubscription {
    pub device_client_id: String,
    pub url: String,
    pub keys: Option<UaKeys>,
    pub expires: i64,
    pub types: Option<Vec<String>>,
    /// The credentials of the call that creates it ([`Subscription::token_hash`]).
    pub token_hash: Option<String>,
}

/// A validated update; `None` fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionChange {
    /// The client sent the right verification code.
    pub verify: bool,
    pub expires: Option<i64>,
    pub types: Option<Option<Vec<String>>>,
}

/// What `PushSubscription/*` needs from the store. Every method acts on one user's subscriptions.
pub trait PushSubscriptionStore {
    /// The user's subscriptions.
    fn push_subscriptions(&mut self, user_id: &str) -> Result<Vec<Subscription>, MethodError>;
    /// Stores a subscription with a fresh id and verification code, and queues its
    /// PushVerification, in one transaction. Returns the id.
    fn create_push_subscription(
        &mut self,
        user_id: &str,
        new: &NewSubscription,
    ) -> Result<String, MethodError>;
    /// Applies a change to one of the user's subscriptions.
    fn update_push_subscription(
        &mut self,
        user_id: &str,
        id: &str,
        change: &SubscriptionChange,
    ) -> Result<(), MethodError>;
    /// Destroys one of the user's subscriptions and its pending deliveries; `false` if unknown.
    fn destroy_push_subscription(&mut self, user_id: &str, id: &str) -> Result<bool, MethodError>;
    /// Counts one creation by the user against `limit` per `window_secs`; `false` (and nothing
    /// counted) when the user has used up the window.
    fn take_creation_slot(
        &mut self,
        user_id: &str,
        limit: u64,
        window_secs: i64,
    ) -> Result<bool, MethodError>;
    /// Resolves a push URL's host (SSRF check at create, PSUB-11).
    fn resolve_host(&mut self, host: &str, port: u16) -> Result<Vec<IpAddr>, String>;
    /// Unix seconds.
    fn now(&self) -> i64;
}

/// Formats unix seconds as a UTCDate (RFC 8620 §1.4).
pub fn utc_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Parses a UTCDate (RFC 8620 §1.4: RFC 3339 with `Z`) to unix seconds.
pub fn parse_utc_date(s: &str) -> Option<i64> {
    if !s.ends_with('Z') {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

fn set_error(kind: SetErrorType, description: impl Into<String>, properties: &[&str]) -> SetError {
    let mut e = SetError::new(kind, description);
    if !properties.is_empty() {
        e.properties = Some(properties.iter().map(|p| (*p).to_owned()).collect());
    }
    e
}

/// `PushSubscription/get` (RFC 8620 §7.2.1).
pub fn get<C: PushSubscriptionStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let ids: Option<Vec<Id>> = call.args.optional("ids")?;
    let properties: Option<Vec<String>> = call.args.optional("properties")?;
    std::mem::take(&mut call.args).finish()?;
    let properties: Vec<String> = match properties {
        None => READABLE.iter().map(|p| p.to_string()).collect(),
        Some(props) => {
            // PSUB-04: asking for url or keys is forbidden, not silently ignored.
            if let Some(p) = props.iter().find(|p| *p == "url" || *p == "keys") {
                return Err(MethodError::Forbidden(format!(
                    "the {p} of a PushSubscription cannot be read"
                )));
            }
            if let Some(p) = props.iter().find(|p| !READABLE.contains(&p.as_str())) {
                return Err(MethodError::InvalidArguments(format!(
                    "unknown property {p:?}"
                )));
            }
            props
        }
    };
    let max = call.server.limits.max_objects_in_get;
    if let Some(ids) = &ids
        && ids.len() as u64 > max
    {
        return Err(MethodError::RequestTooLarge(format!(
            "{} ids asked for; maxObjectsInGet is {max}",
            ids.len()
        )));
    }
    let all = own_subscriptions(ctx, call)?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    let mut render = |s: &Subscription| {
        let mut o = Map::new();
        o.insert("id".into(), json!(s.id));
        for p in &properties {
            let v = match p.as_str() {
                "deviceClientId" => json!(s.device_client_id),
                "verificationCode" => {
                    if s.verified {
                        json!(s.verification_code)
                    } else {
                        Value::Null
                    }
                }
                "expires" => json!(utc_date(s.expires)),
                "types" => json!(s.types),
                _ => continue,
            };
            o.insert(p.clone(), v);
        }
        Value::Object(o)
    };
    match ids {
        None => list.extend(all.iter().map(&mut render)),
        Some(ids) => {
            for id in ids {
                let id = call.resolve_id(&id.0).unwrap_or(id.0);
                match all.iter().find(|s| s.id == id) {
                    Some(s) => list.push(render(s)),
                    None => not_found.push(json!(id)),
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("list".into(), Value::Array(list));
    out.insert("notFound".into(), Value::Array(not_found));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::Limits;
    use crate::jmap::args::Arguments;
    use crate::jmap::session::{Principal, ServerInfo};
    use std::collections::{BTreeMap, HashMap};

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const NOW: i64 = 1_800_000_000;

    /// An in-memory store: enough to exercise the protocol rules on their own.
    #[derive(Default)]
    struct Memory {
        subs: Vec<(String, Subscription)>,
        next: u32,
        creations: u64,
    }

    impl PushSubscriptionStore for Memory {
        fn push_subscriptions(&mut self, user: &str) -> Result<Vec<Subscription>, MethodError> {
            Ok(self
                .subs
                .iter()
                .filter(|(u, _)| u == user)
                .map(|(_, s)| s.clone())
                .collect())
        }
        fn create_push_subscription(
            &mut self,
            user: &str,
            new: &NewSubscription,
        ) -> Result<String, MethodError> {
            self.next += 1;
            let id = format!("p{}", self.next);
            self.subs.push((
                user.into(),
                Subscription {
                    id: id.clone(),
                    device_client_id: new.device_client_id.clone(),
                    url: new.url.clone(),
                    keys: new.keys.clone(),
                    verification_code: format!("code{}", self.next),
                    verified: false,
                    expires: new.expires,
                    types: new.types.clone(),
                    token_hash: new.token_hash.clone(),
                },
            ));
            Ok(id)
        }
        fn update_push_subscription(
            &mut self,
            user: &str,
            id: &str,
            change: &SubscriptionChange,
        ) -> Result<(), MethodError> {
            let (_, s) = self
                .subs
                .iter_mut()
                .find(|(u, s)| u == user && s.id == id)
                .unwrap();
            s.verified |= change.verify;
            if let Some(e) = change.expires {
                s.expires = e;
            }
            if let Some(t) = &change.types {
                s.types = t.clone();
            }
            Ok(())
        }
        fn destroy_push_subscription(&mut self, user: &str, id: &str) -> Result<bool, MethodError> {
            let before = self.subs.len();
            self.subs.retain(|(u, s)| !(u == user && s.id == id));
            Ok(self.subs.len() < before)
        }
        fn take_creation_slot(&mut self, _: &str, limit: u64, _: i64) -> Result<bool, MethodError> {
            self.creations += 1;
            Ok(self.creations <= limit)
        }
        fn resolve_host(&mut self, host: &str, _: u16) -> Result<Vec<IpAddr>, String> {
            match host {
                "push.example.com" => Ok(vec!["93.184.216.34".parse().unwrap()]),
                "evil.example.com" => Ok(vec!["10.0.0.7".parse().unwrap()]),
                _ => Err(format!("{host} does not resolve")),
            }
        }
        fn now(&self) -> i64 {
            NOW
        }
    }

    fn server() -> ServerInfo {
        let mut s = ServerInfo::new(
            "http://h",
            Limits::default(),
            BTreeMap::new(),
            BTreeMap::new(),
            false,
        );
        s.webhooks.max_per_user = 2;
        s
    }

    fn run(
        store: &mut Memory,
        user: &str,
        handler: crate::jmap::dispatch::Handler<Memory>,
        args: Value,
    ) -> Result<Value, MethodError> {
        let principal = Principal {
            user_id: user.into(),
            username: user.into(),
            accounts: vec![],
            token_hash: None,
            password_stamp: None,
        };
        let server = server();
        let mut created_ids = HashMap::new();
        let mut call = Call {
            call_id: "c",
            args: Arguments::new(args.as_object().unwrap().clone()),
            account: None,
            principal: &principal,
            server: &server,
            created_ids: &mut created_ids,
            implicit: vec![],
        };
        handler(store, &mut call).map(Value::Object)
    }

    fn create(store: &mut Memory, user: &str, sub: Value) -> Value {
        run(store, user, set, json!({"create": {"k": sub}})).unwrap()
    }

    #[test]
    fn create_caps_expires_and_returns_it_with_the_id() {
        let mut m = Memory::default();
        let r = create(
            &mut m,
            "u",
            json!({"deviceClientId": "d", "url": "https://push.example.com/x", "expires": "2099-01-01T00:00:00Z"}),
        );
        // PSUB-08: shortened to the cap and returned in created.
        assert_eq!(r["created"]["k"]["expires"], utc_date(NOW + 7 * 24 * 3600));
        assert_eq!(r["created"]["k"]["id"], "p1");
        // SET-09: empty members are null; PSUB-02: no state.
        assert_eq!(r["notCreated"], Value::Null);
        assert_eq!(r["updated"], Value::Null);
        assert!(r.get("newState").is_none() && r.get("accountId").is_none());
    }

    #[test]
    fn bad_urls_keys_types_and_codes_are_invalid_properties() {
        let mut m = Memory::default();
        for (sub, prop) in [
            (
                json!({"deviceClientId": "d", "url": "http://push.example.com/x"}),
                "url",
            ),
            (
                json!({"deviceClientId": "d", "url": "https://evil.example.com/x"}),
                "url",
            ),
            (
                json!({"deviceClientId": "d", "url": "https://10.0.0.1/x"}),
                "url",
            ),
            (
                json!({"deviceClientId": "d", "url": "https://push.example.com/x", "keys": {"p256dh": P256DH, "auth": "AAAA"}}),
                "keys",
            ),
            (
                json!({"deviceClientId": "d", "url": "https://push.example.com/x", "types": ["Nope"]}),
                "types",
            ),
            (
                json!({"deviceClientId": "d", "url": "https://push.example.com/x", "verificationCode": "x"}),
                "verificationCode",
            ),
            (
                json!({"deviceClientId": "d", "url": "https://push.example.com/x", "id": "x"}),
                "id",
            ),
            (
                json!({"url": "https://push.example.com/x"}),
                "deviceClientId",
            ),
        ] {
            let r = create(&mut m, "u", sub.clone());
            let e = &r["notCreated"]["k"];
            assert_eq!(e["type"], "invalidProperties", "{sub}");
            assert_eq!(e["properties"], json!([prop]), "{sub}");
        }
        assert!(m.subs.is_empty());
    }

    #[test]
    fn the_per_user_cap_is_over_quota_and_counts_only_that_user() {
        let mut m = Memory::default();
        let sub = json!({"deviceClientId": "d", "url": "https://push.example.com/x"});
        create(&mut m, "u", sub.clone());
        create(&mut m, "u", sub.clone());
        assert_eq!(
            create(&mut m, "u", sub.clone())["notCreated"]["k"]["type"],
            "overQuota"
        );
        assert!(create(&mut m, "v", sub)["created"]["k"].is_object());
    }

    #[test]
    fn get_hides_url_and_keys_and_refuses_to_show_them() {
        let mut m = Memory::default();
        create(
            &mut m,
            "u",
            json!({"deviceClientId": "d", "url": "https://push.example.com/x", "keys": {"p256dh": P256DH, "auth": "BTBZMqHH6r4Tts7J_aSIgg"}}),
        );
        let r = run(&mut m, "u", get, json!({"ids": null})).unwrap();
        let item = &r["list"][0];
        assert!(item.get("url").is_none() && item.get("keys").is_none());
        assert_eq!(item["verificationCode"], Value::Null);
        assert!(r.get("state").is_none());
        let e = run(&mut m, "u", get, json!({"properties": ["id", "url"]})).unwrap_err();
        assert_eq!(e.wire_type(), "forbidden");
        // Another user sees nothing (PSUB-03).
        let r = run(&mut m, "v", get, json!({"ids": ["p1"]})).unwrap();
        assert_eq!(r["list"], json!([]));
        assert_eq!(r["notFound"], json!(["p1"]));
        // Not account-scoped: accountId is an unknown argument.
        assert!(run(&mut m, "u", get, json!({"accountId": "a"})).is_err());
    }

    #[test]
    fn only_the_right_code_verifies_and_url_is_immutable() {
        let mut m = Memory::default();
        create(
            &mut m,
            "u",
            json!({"deviceClientId": "d", "url": "https://push.example.com/x"}),
        );
        let r = run(
            &mut m,
            "u",
            set,
            json!({"update": {"p1": {"verificationCode": "wrong"}}}),
        )
        .unwrap();
        assert_eq!(r["notUpdated"]["p1"]["type"], "invalidProperties");
        assert!(!m.subs[0].1.verified);
        let r = run(
            &mut m,
            "u",
            set,
            json!({"update": {"p1": {"url": "https://push.example.com/y"}}}),
        )
        .unwrap();
        assert_eq!(r["notUpdated"]["p1"]["properties"], json!(["url"]));
        let r = run(
            &mut m,
            "u",
            set,
            json!({"update": {"p1": {"verificationCode": "code1"}}}),
        )
        .unwrap();
        assert_eq!(r["updated"], json!({"p1": null}));
        assert!(m.subs[0].1.verified);
        let r = run(
            &mut m,
            "v",
            set,
            json!({"update": {"p1": {"types": null}}, "destroy": ["p1"]}),
        )
        .unwrap();
        assert_eq!(r["notUpdated"]["p1"]["type"], "notFound");
        assert_eq!(r["notDestroyed"]["p1"]["type"], "notFound");
        let r = run(&mut m, "u", set, json!({"destroy": ["p1"]})).unwrap();
        assert_eq!(r["destroyed"], json!(["p1"]));
    }

    #[test]
    fn utc_dates_round_trip() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_utc_date("2026-11-23T19:00:00Z"), Some(1_795_460_400));
        assert_eq!(parse_utc_date("2026-11-23T19:00:00+01:00"), None);
    }
}
