//! Which push URLs Herald will POST to (RFC 8620 §8.6, checklist PSUB-11): by default only
//! `https` URLs whose host resolves to globally routable addresses, so a client cannot make the
//! server reach loopback, private networks or cloud metadata endpoints (SSRF).
//!
//! Pure: resolution is the caller's (at create time on the dispatcher thread, at delivery time in
//! the webhook sender, because DNS answers can change in between).

//!
//! [`WebhookPolicy`] adds the per-user limits on subscriptions; both come from `[push]`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::PushConfig;

/// Limits and policy for subscriptions, from `[push]` in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookPolicy {
    pub target: TargetPolicy,
    /// The latest `expires` allowed, in seconds from now; also the default (PSUB-08, PSUB-09).
    pub max_expires_secs: i64,
    /// Subscriptions one user may have (PSUB-11).
    pub max_per_user: u64,
    /// Subscriptions one user may create per hour, destroyed ones included (PSUB-11).
    pub creations_per_hour: u64,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        WebhookPolicy {
            target: TargetPolicy::default(),
            max_expires_secs: 7 * 24 * 3600,
            max_per_user: 20,
            creations_per_hour: 60,
        }
    }
}

impl WebhookPolicy {
    /// The part of `[push]` the JMAP methods enforce.
    pub fn from_config(push: &PushConfig) -> Self {
        WebhookPolicy {
            target: TargetPolicy {
                allow_private_targets: push.allow_private_targets,
                allowed_hosts: push.allowed_hosts.clone(),
            },
            max_expires_secs: push.subscription_max_expires_secs,
            max_per_user: push.subscriptions_per_user,
            creations_per_hour: push.subscription_creations_per_hour,
        }
    }
}

/// The SSRF policy, from `[push]` in the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Allow plain `http` and non-global addresses (tests, private deployments).
    pub allow_private_targets: bool,
    /// Host names (or IP literals) exempt from the address check, compared case-insensitively.
    pub allowed_hosts: Vec<String>,
}

/// The parts of a push URL the policy looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// Lowercase host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The host as an IP address, if it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl TargetPolicy {
    /// Parses `url` and checks what can be checked without DNS: scheme, shape, literal address.
    pub fn parse(&self, url: &str) -> Result<Target, String> {
        let (https, rest) = if let Some(r) = strip_prefix_ci(url, "https://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(url, "http://") {
            (false, r)
        } else {
            return Err("url must be an https:// URL".into());
        };
        if !https && !self.allow_private_targets {
            return Err("url must use https".into());
        }
        if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("url is too long or contains spaces or control characters".into());
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err("url must not contain user information".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| "url has an unterminated IPv6 literal".to_string())?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| "url has a malformed port".to_string())?,
                ),
            };
            if host.parse::<Ipv6Addr>().is_err() {
                return Err("url has a malformed IPv6 literal".into());
            }
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| "url has a malformed port".to_string())?,
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))
        {
            return Err("url has no valid host".into());
        }
        let target = Target {
            https,
            host: host.to_ascii_lowercase(),
            port,
        };
        if let Some(ip) = target.ip() {
            self.check_addresses(&target, &[ip])?;
        } else if !self.allow_private_targets
            && !self.is_allowed_host(&target.host)
            && (target.host == "localhost" || target.host.ends_with(".localhost"))
        {
            return Err("url must not name localhost".into());
        }
        Ok(target)
    }

    fn is_allowed_host(&self, host: &str) -> bool {
        self.allowed_hosts
            .iter()
            .any(|h| h.trim().eq_ignore_ascii_case(host))
    }

    /// Checks the addresses `target`'s host resolved to: all must be globally routable, unless
    /// the policy allows private targets or lists the host.
    pub fn check_addresses(&self, target: &Target, addrs: &[IpAddr]) -> Result<(), String> {
        if self.allow_private_targets || self.is_allowed_host(&target.host) {
            return Ok(());
        }
        if addrs.is_empty() {
            return Err(format!("{} does not resolve", target.host));
        }
        match addrs.iter().find(|ip| !is_global(**ip)) {
            Some(ip) => Err(format!(
                "{} resolves to {ip}, which is not a public address",
                target.host
            )),
            None => Ok(()),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Whether `ip` is globally routable: not loopback, private, link-local, shared (CGN),
/// documentation, benchmarking, multicast, reserved or unspecified (IANA special-purpose
/// registries). IPv4-mapped and NAT64 IPv6 addresses are judged by their IPv4 address.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_global_v4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return is_global_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only
                || s[0] == 0 // IPv4-compatible and other reserved
                || (s[0] & 0xe000) != 0x2000) // outside global unicast 2000::/3
        }
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // includes 169.254.169.254, the cloud metadata endpoint
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> TargetPolicy {
        TargetPolicy::default()
    }

    #[test]
    fn non_global_addresses_are_recognised() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_global(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_global(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn plain_http_loopback_and_user_info_are_refused_by_default() {
        assert!(strict().parse("http://push.example.com/x").is_err());
        assert!(strict().parse("https://127.0.0.1/x").is_err());
        assert!(strict().parse("https://[::1]:8443/x").is_err());
        assert!(strict().parse("https://localhost/x").is_err());
        assert!(strict().parse("https://u:p@push.example.com/x").is_err());
        assert!(strict().parse("ftp://push.example.com/").is_err());
        assert!(strict().parse("https:///x").is_err());
        let t = strict().parse("https://Push.Example.com:8443/a?b").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port),
            (true, "push.example.com", 8443)
        );
        let t = strict().parse("https://push.example.com").unwrap();
        assert_eq!(t.port, 443);
        // Resolution result is checked separately.
        assert!(
            strict()
                .check_addresses(&t, &["10.0.0.1".parse().unwrap()])
                .is_err()
        );
        assert!(
            strict()
                .check_addresses(&t, &["93.184.216.34".parse().unwrap()])
                .is_ok()
        );
    }

    #[test]
    fn the_policy_can_allow_private_targets_or_listed_hosts() {
        let open = TargetPolicy {
            allow_private_targets: true,
            allowed_hosts: vec![],
        };
        let t = open.parse("http://127.0.0.1:9000/sink").unwrap();
        assert_eq!((t.https, t.port), (false, 9000));
        let listed = TargetPolicy {
            allow_private_targets: false,
            allowed_hosts: vec!["gateway.internal".into()],
        };
        let t = listed.parse("https://gateway.internal/p").unwrap();
        assert!(
            listed
                .check_addresses(&t, &["10.0.0.5".parse().unwrap()])
                .is_ok()
        );
        assert!(listed.parse("http://gateway.internal/p").is_err());
    }
}
