//! Capability URNs and the `using` check (RFC 8620 §1.8, §3.3).

use std::collections::BTreeSet;

use crate::jmap::error::RequestError;

pub const CORE: &str = "urn:ietf:params:jmap:core";
pub const MAIL: &str = "urn:ietf:params:jmap:mail";
pub const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
pub const VACATION_RESPONSE: &str = "urn:ietf:params:jmap:vacationresponse";
pub const WEBSOCKET: &str = "urn:ietf:params:jmap:websocket";
pub const WEBPUSH_VAPID: &str = "urn:ietf:params:jmap:webpush-vapid";

/// Capabilities in the IANA "JMAP Capabilities" registry. Widely used clients (the `jmap-client`
/// crate among them) list every one they know in `using` on every request; by default Herald lets
/// such a URN through even when it does not implement it, and the methods that need it still
/// fail with `unknownMethod`.
pub const REGISTERED: &[&str] = &[
    CORE,
    MAIL,
    SUBMISSION,
    VACATION_RESPONSE,
    WEBSOCKET,
    "urn:ietf:params:jmap:mdn",
    "urn:ietf:params:jmap:smimeverify",
    "urn:ietf:params:jmap:blob",
    "urn:ietf:params:jmap:quota",
    "urn:ietf:params:jmap:sieve",
    "urn:ietf:params:jmap:contacts",
    "urn:ietf:params:jmap:calendars",
    "urn:ietf:params:jmap:calendars:parse",
    "urn:ietf:params:jmap:principals",
    "urn:ietf:params:jmap:principals:owner",
    "urn:ietf:params:jmap:principals:availability",
    "urn:ietf:params:jmap:tasks",
    "urn:ietf:params:jmap:tasks:recurrences",
    "urn:ietf:params:jmap:tasks:assignees",
    "urn:ietf:params:jmap:tasks:alerts",
    "urn:ietf:params:jmap:tasks:multilingual",
    "urn:ietf:params:jmap:tasks:customtimezones",
    WEBPUSH_VAPID,
];

/// Checks a request's `using` against what this server `supports`, and returns the capabilities
/// in effect for the request: only these exist while it runs (RFC 8620 §1.8).
///
/// With `strict`, any URN the server does not support is `unknownCapability`, as RFC 8620
/// §3.6.1 reads; otherwise registered-but-unimplemented URNs are ignored.
pub fn check_using(
    using: &[String],
    supports: &[&'static str],
    strict: bool,
) -> Result<BTreeSet<&'static str>, RequestError> {
    let mut enabled = BTreeSet::new();
    for urn in using {
        if let Some(cap) = supports.iter().find(|c| **c == urn.as_str()) {
            enabled.insert(*cap);
        } else if strict || !REGISTERED.contains(&urn.as_str()) {
            return Err(RequestError::unknown_capability(format!(
                "the server does not support the capability {urn:?}"
            )));
        }
    }
    Ok(enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn using(urns: &[&str]) -> Vec<String> {
        urns.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn registered_but_unimplemented_capabilities_are_ignored_unless_strict() {
        let u = using(&[CORE, "urn:ietf:params:jmap:contacts"]);
        assert_eq!(
            check_using(&u, &[CORE], false).unwrap(),
            BTreeSet::from([CORE])
        );
        assert!(check_using(&u, &[CORE], true).is_err());
    }

    #[test]
    fn unregistered_capabilities_are_unknown() {
        let u = using(&[CORE, "https://example.com/apis/foo"]);
        let e = check_using(&u, &[CORE], false).unwrap_err();
        assert_eq!(e.type_uri(), "urn:ietf:params:jmap:error:unknownCapability");
    }
}
