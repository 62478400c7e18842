//! PushSubscription/set (RFC 8620 §7.2.2): what a client may create and change, checked against
//! the webhook policy (target addresses, expiry, per-user caps, creation rate).

use serde_json::{Map, Value, json};

use super::keys::UaKeys;
use super::{
    KNOWN_TYPES, NewSubscription, PushSubscriptionStore, Subscription, SubscriptionChange,
    WebhookPolicy, own_subscriptions, parse_utc_date, set_error, utc_date,
};
use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::standard::{SetError, SetErrorType, SetResponse};

/// Clamps a requested `expires` to the policy (PSUB-08: the server may shorten it).
fn effective_expires(
    requested: Option<&Value>,
    now: i64,
    policy: &WebhookPolicy,
) -> Result<i64, SetError> {
    let cap = now + policy.max_expires_secs;
    match requested {
        None | Some(Value::Null) => Ok(cap),
        Some(Value::String(s)) => match parse_utc_date(s) {
            Some(t) if t <= now => Err(set_error(
                SetErrorType::InvalidProperties,
                "expires is in the past",
                &["expires"],
            )),
            Some(t) => Ok(t.min(cap)),
            None => Err(set_error(
                SetErrorType::InvalidProperties,
                "expires is not a UTCDate",
                &["expires"],
            )),
        },
        Some(_) => Err(set_error(
            SetErrorType::InvalidProperties,
            "expires is not a UTCDate",
            &["expires"],
        )),
    }
}

fn parse_types(v: &Value) -> Result<Option<Vec<String>>, SetError> {
    let bad = |d: String| set_error(SetErrorType::InvalidProperties, d, &["types"]);
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => {
            let mut types = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(t) if KNOWN_TYPES.contains(&t) => {
                        if !types.iter().any(|x: &String| x == t) {
                            types.push(t.to_owned());
                        }
                    }
                    Some(t) => return Err(bad(format!("{t:?} is not a known type name"))),
                    None => return Err(bad("types must be strings".into())),
                }
            }
            Ok(Some(types))
        }
        _ => Err(bad("types must be an array of type names or null".into())),
    }
}

fn parse_keys(v: &Value) -> Result<Option<UaKeys>, SetError> {
    let bad = |d: String| set_error(SetErrorType::InvalidProperties, d, &["keys"]);
    match v {
        Value::Null => Ok(None),
        Value::Object(o) => {
            if let Some(k) = o.keys().find(|k| *k != "p256dh" && *k != "auth") {
                return Err(bad(format!("keys has an unknown member {k:?}")));
            }
            let (Some(p256dh), Some(auth)) = (
                o.get("p256dh").and_then(Value::as_str),
                o.get("auth").and_then(Value::as_str),
            ) else {
                return Err(bad("keys needs the strings p256dh and auth".into()));
            };
            UaKeys::parse(p256dh, auth)
                .map(Some)
                .map_err(|e| bad(format!("keys: {e}")))
        }
        _ => Err(bad("keys must be an object or null".into())),
    }
}

/// Validates one creation (PSUB-01, PSUB-05, PSUB-11, PSUB-12).
fn validate_create<C: PushSubscriptionStore>(
    ctx: &mut C,
    policy: &WebhookPolicy,
    obj: &Value,
) -> Result<NewSubscription, SetError> {
    let Value::Object(obj) = obj else {
        return Err(set_error(
            SetErrorType::InvalidProperties,
            "a PushSubscription is an object",
            &[],
        ));
    };
    const ALLOWED: &[&str] = &[
        "deviceClientId",
        "url",
        "keys",
        "verificationCode",
        "expires",
        "types",
    ];
    let unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !ALLOWED.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(set_error(
            SetErrorType::InvalidProperties,
            "unknown or server-set properties",
            &unknown,
        ));
    }
    if !matches!(obj.get("verificationCode"), None | Some(Value::Null)) {
        return Err(set_error(
            SetErrorType::InvalidProperties,
            "verificationCode must be null on create",
            &["verificationCode"],
        ));
    }
    let device_client_id = match obj.get("deviceClientId") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        _ => {
            return Err(set_error(
                SetErrorType::InvalidProperties,
                "deviceClientId must be a string of 1 to 255 octets",
                &["deviceClientId"],
            ));
        }
    };
    let url = match obj.get("url") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(set_error(
                SetErrorType::InvalidProperties,
                "url must be a string",
                &["url"],
            ));
        }
    };
    let target = policy
        .target
        .parse(&url)
        .map_err(|d| set_error(SetErrorType::InvalidProperties, d, &["url"]))?;
    if target.ip().is_none() && !policy.target.allow_private_targets {
        let addrs = ctx
            .resolve_host(&target.host, target.port)
            .map_err(|d| set_error(SetErrorType::InvalidProperties, d, &["url"]))?;
        policy
            .target
            .check_addresses(&target, &addrs)
            .map_err(|d| set_error(SetErrorType::InvalidProperties, d, &["url"]))?;
    }
    let keys = parse_keys(obj.get("keys").unwrap_or(&Value::Null))?;
    let types = parse_types(obj.get("types").unwrap_or(&Value::Null))?;
    let expires = effective_expires(obj.get("expires"), ctx.now(), policy)?;
    Ok(NewSubscription {
        device_client_id,
        url,
        keys,
        expires,
        types,
        token_hash: None,
    })
}

/// Validates one update (PSUB-06, PSUB-07, PSUB-08). Returns the change and what to report in
/// `updated` beyond the patch.
fn validate_update(
    current: &Subscription,
    patch: &Value,
    now: i64,
    policy: &WebhookPolicy,
) -> Result<(SubscriptionChange, Map<String, Value>), SetError> {
    let Value::Object(patch) = patch else {
        return Err(set_error(
            SetErrorType::InvalidPatch,
            "a PatchObject is an object",
            &[],
        ));
    };
    let mut change = SubscriptionChange::default();
    let mut reported = Map::new();
    for (key, value) in patch {
        match key.as_str() {
            "verificationCode" => match value.as_str() {
                Some(code) if code == current.verification_code => change.verify = true,
                _ => {
                    return Err(set_error(
                        SetErrorType::InvalidProperties,
                        "the verification code is wrong",
                        &["verificationCode"],
                    ));
                }
            },
            "expires" => {
                let expires = effective_expires(Some(value), now, policy)?;
                change.expires = Some(expires);
                reported.insert("expires".into(), json!(utc_date(expires)));
            }
            "types" => change.types = Some(parse_types(value)?),
            // Immutable (PSUB-07): allowed only unchanged.
            "id" if value.as_str() == Some(current.id.as_str()) => {}
            "deviceClientId" if value.as_str() == Some(current.device_client_id.as_str()) => {}
            "url" if value.as_str() == Some(current.url.as_str()) => {}
            "keys" if parse_keys(value).ok() == Some(current.keys.clone()) => {}
            "id" | "deviceClientId" | "url" | "keys" => {
                return Err(set_error(
                    SetErrorType::InvalidProperties,
                    format!("{key} cannot be changed; destroy and recreate the subscription"),
                    &[key.as_str()],
                ));
            }
            other => {
                return Err(set_error(
                    SetErrorType::InvalidProperties,
                    format!("{other:?} is not a PushSubscription property"),
                    &[other],
                ));
            }
        }
    }
    Ok((change, reported))
}

/// Creates within the user's cap (PSUB-11: `overQuota`) and creation rate (`rateLimit`).
fn create_all<C: PushSubscriptionStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
    create: Map<String, Value>,
    response: &mut SetResponse,
) -> Result<(), MethodError> {
    let policy = &call.server.webhooks;
    let user_id = call.principal.user_id.clone();
    let mut count = ctx.push_subscriptions(&user_id)?.len() as u64;
    for (cid, obj) in create {
        if count >= policy.max_per_user {
            let why = format!(
                "a user may have at most {} push subscriptions",
                policy.max_per_user
            );
            response.create_failed(&cid, set_error(SetErrorType::OverQuota, why, &[]));
            continue;
        }
        let new = match validate_create(ctx, policy, &obj) {
            Ok(new) => NewSubscription {
                token_hash: call.principal.token_hash.clone(),
                ..new
            },
            Err(e) => {
                response.create_failed(&cid, e);
                continue;
            }
        };
        if !ctx.take_creation_slot(&user_id, policy.creations_per_hour, 3600)? {
            let why = format!(
                "a user may create at most {} push subscriptions per hour",
                policy.creations_per_hour
            );
            response.create_failed(&cid, set_error(SetErrorType::RateLimit, why, &[]));
            continue;
        }
        let id = ctx.create_push_subscription(&user_id, &new)?;
        count += 1;
        call.created_ids.insert(cid.clone(), id.clone());
        response.created.insert(
            cid,
            json!({"id": id, "expires": utc_date(new.expires), "verificationCode": null}),
        );
    }
    Ok(())
}

/// `PushSubscription/set` (RFC 8620 §7.2.2). No `accountId`, `ifInState`, `oldState` or
/// `newState` (PSUB-02).
pub fn set<C: PushSubscriptionStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let create: Option<Map<String, Value>> = call.args.optional("create")?;
    let update: Option<Map<String, Value>> = call.args.optional("update")?;
    let destroy: Option<Vec<Id>> = call.args.optional("destroy")?;
    std::mem::take(&mut call.args).finish()?;
    let total = create.as_ref().map_or(0, Map::len)
        + update.as_ref().map_or(0, Map::len)
        + destroy.as_ref().map_or(0, Vec::len);
    let max = call.server.limits.max_objects_in_set;
    if total as u64 > max {
        return Err(MethodError::RequestTooLarge(format!(
            "{total} operations; maxObjectsInSet is {max}"
        )));
    }
    let policy = &call.server.webhooks;
    let user_id = call.principal.user_id.clone();

    let mut response = SetResponse::default();
    if let Some(create) = create {
        create_all(ctx, call, create, &mut response)?;
    }

    if let Some(update) = update {
        let now = ctx.now();
        for (id, patch) in update {
            let Some(resolved) = call.resolve_id(&id) else {
                response.update_failed(
                    &id,
                    set_error(SetErrorType::NotFound, "unknown creation id", &[]),
                );
                continue;
            };
            let current = own_subscriptions(ctx, call)?
                .into_iter()
                .find(|s| s.id == resolved);
            let Some(current) = current else {
                response.update_failed(
                    &id,
                    set_error(SetErrorType::NotFound, "no such PushSubscription", &[]),
                );
                continue;
            };
            match validate_update(&current, &patch, now, policy) {
                Ok((change, reported)) => {
                    ctx.update_push_subscription(&user_id, &resolved, &change)?;
                    response.updated.insert(
                        id,
                        if reported.is_empty() {
                            Value::Null
                        } else {
                            Value::Object(reported)
                        },
                    );
                }
                Err(e) => {
                    response.update_failed(&id, e);
                }
            }
        }
    }

    let own: Vec<String> = own_subscriptions(ctx, call)?
        .into_iter()
        .map(|s| s.id)
        .collect();
    for id in destroy.unwrap_or_default() {
        let resolved = call.resolve_id(&id.0).filter(|r| own.contains(r));
        match resolved {
            Some(r) if ctx.destroy_push_subscription(&user_id, &r)? => {
                response.destroyed.push(r);
            }
            _ => {
                response.destroy_failed(
                    &id.0,
                    set_error(SetErrorType::NotFound, "no such PushSubscription", &[]),
                );
            }
        }
    }

    Ok(response.to_response(None, None))
}
