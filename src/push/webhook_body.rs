//! What a webhook POST carries (RFC 8620 §7.1, §7.2), as JSON octets.
//!
//! An encrypted push is one RFC 8291 record, so its plaintext has a ceiling
//! ([`super::webpush::MAX_PLAINTEXT`]). A StateChange naming many accounts (a user with many
//! shared accounts whose push service was unreachable for a while) can outgrow it; it is then
//! split into several StateChanges, each naming a share of the accounts, which together say
//! everything the single one would have (RFC 8620 §7.1 lets a client receive any number of them).

use serde_json::{Map, Value, json};

use crate::jmap::changes::state_string;
use crate::store::webhook_outbox::ChangedStates;

/// The PushVerification object (RFC 8620 §7.2.2).
pub fn verification(subscription_id: &str, code: &str) -> Vec<u8> {
    json!({
        "@type": "PushVerification",
        "pushSubscriptionId": subscription_id,
        "verificationCode": code,
    })
    .to_string()
    .into_bytes()
}

/// The StateChange objects that announce `changed`: one, unless `max` octets (the encrypted
/// record's ceiling) cannot hold it; then as few as hold each account whole, in account order.
pub fn state_changes(changed: &ChangedStates, max: Option<usize>) -> Vec<Vec<u8>> {
    let whole = state_change(changed.iter());
    let Some(max) = max else {
        return vec![whole];
    };
    if whole.len() <= max {
        return vec![whole];
    }
    // The object's frame plus, per account, its entry and a comma: exact for serde_json's
    // compact output, so every part fits.
    let frame = state_change(std::iter::empty()).len();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut size = frame;
    let accounts: Vec<_> = changed.iter().collect();
    for (i, (account, types)) in accounts.iter().enumerate() {
        let entry = entry_len(account, types) + usize::from(i > start);
        if i > start && size + entry > max {
            parts.push(state_change(accounts[start..i].iter().copied()));
            start = i;
            size = frame + entry_len(account, types);
        } else {
            size += entry;
        }
    }
    parts.push(state_change(accounts[start..].iter().copied()));
    parts
}

fn state_change<'a>(
    accounts: impl Iterator<Item = (&'a String, &'a std::collections::BTreeMap<String, i64>)>,
) -> Vec<u8> {
    let changed: Map<String, Value> = accounts
        .map(|(account, types)| (account.clone(), types_object(types)))
        .collect();
    json!({"@type": "StateChange", "changed": changed})
        .to_string()
        .into_bytes()
}

fn types_object(types: &std::collections::BTreeMap<String, i64>) -> Value {
    Value::Object(
        types
            .iter()
            .map(|(t, seq)| (t.clone(), json!(state_string(*seq))))
            .collect(),
    )
}

/// The octets of `"account":{…}` in compact JSON.
fn entry_len(account: &str, types: &std::collections::BTreeMap<String, i64>) -> usize {
    Value::from(account).to_string().len() + 1 + types_object(types).to_string().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(accounts: usize) -> ChangedStates {
        (0..accounts)
            .map(|i| {
                let types = [("Email".to_owned(), 1000 + i as i64), ("Mailbox".into(), 7)];
                (format!("account-{i:04}"), types.into_iter().collect())
            })
            .collect()
    }

    fn merged(parts: &[Vec<u8>]) -> Map<String, Value> {
        let mut all = Map::new();
        for part in parts {
            let v: Value = serde_json::from_slice(part).unwrap();
            assert_eq!(v["@type"], "StateChange");
            for (k, types) in v["changed"].as_object().unwrap() {
                assert!(all.insert(k.clone(), types.clone()).is_none(), "{k} twice");
            }
        }
        all
    }

    #[test]
    fn a_state_change_that_fits_is_sent_whole() {
        let c = changed(3);
        let parts = state_changes(&c, Some(3993));
        assert_eq!(parts, vec![state_changes(&c, None)[0].clone()]);
        let v: Value = serde_json::from_slice(&parts[0]).unwrap();
        assert_eq!(v["changed"]["account-0002"]["Email"], "1002");
    }

    #[test]
    fn a_state_change_over_the_ceiling_is_split_into_parts_that_each_fit_and_say_it_all() {
        let c = changed(200);
        let whole = &state_changes(&c, None)[0];
        for max in [3993, 1000, 200] {
            let parts = state_changes(&c, Some(max));
            assert!(parts.len() >= whole.len() / max, "{max}: {}", parts.len());
            assert!(parts.iter().all(|p| p.len() <= max), "{max}");
            let whole: Value = serde_json::from_slice(whole).unwrap();
            assert_eq!(Value::Object(merged(&parts)), whole["changed"]);
        }
        // Parts are filled: the first part has no room for the next account.
        let parts = state_changes(&c, Some(3993));
        assert!(parts[0].len() + 50 > 3993, "{}", parts[0].len());
    }

    #[test]
    fn an_account_larger_than_the_ceiling_still_goes_out_alone() {
        let c = changed(3);
        let parts = state_changes(&c, Some(10));
        assert_eq!(parts.len(), 3);
        assert_eq!(merged(&parts).len(), 3);
    }
}
