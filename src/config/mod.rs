//! `config.toml`, with every key overridable by a `HERALD_<SECTION>_<KEY>` environment variable.
//!
//! A missing file means all defaults. Unknown sections or keys are errors, in the file and in the
//! environment alike, so a typo never silently does nothing.

use std::path::Path;

use serde::Deserialize;

mod check;
pub mod limits;
pub mod redact;

use limits::{Limits, QueryLimits};

/// A configuration problem, reported as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Parse(String, String),
    #[error("environment variable {0}: {1}")]
    Env(String, String),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub query: QueryLimits,
    pub jmap: JmapConfig,
    pub submission: SubmissionConfig,
    pub push: PushConfig,
    pub lmtp: LmtpConfig,
    pub metrics: MetricsConfig,
}

/// `[metrics]`: Prometheus metrics (docs/operating.md).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` of a listener that serves only `GET /metrics`; empty (the default) for none.
    /// Keep it on loopback or a private network: it is not authenticated.
    pub listen: String,
}

/// `[server]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Public base URL used in the session's URLs; empty = `http://<listen address>`.
    pub base_url: String,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Dispatcher threads (each holds one store connection while it runs a request); 0 = 2 per core.
    pub dispatcher_threads: usize,
    /// Seconds a graceful shutdown waits for open connections.
    pub shutdown_timeout_secs: u64,
    /// Seconds an API request's body may take to arrive; a slower one is answered 408.
    pub request_body_timeout_secs: u64,
    /// Seconds between returns of freed memory to the system (glibc `malloc_trim`); 0 = never.
    pub memory_trim_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            base_url: String::new(),
            workers: 0,
            dispatcher_threads: 0,
            shutdown_timeout_secs: 5,
            request_body_timeout_secs: 30,
            memory_trim_secs: 10,
        }
    }
}

/// `[store]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (embedded) or `postgres://…`.
    pub url: String,
    /// Connections in the pool; 0 = dispatcher threads + 4.
    pub pool_size: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://data/herald.db".into(),
            pool_size: 0,
        }
    }
}

/// `[auth]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Seconds a verified password is remembered (the stored hash is still checked every time).
    pub credential_cache_secs: u64,
    /// Failed logins per client address and minute before it gets 429 (0: no limit).
    pub max_failed_logins_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            credential_cache_secs: 300,
            max_failed_logins_per_minute: 30,
        }
    }
}

/// `[jmap]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JmapConfig {
    /// Answer `unknownCapability` for every unsupported URN in `using`, registered or not.
    pub strict_using: bool,
}

/// `[lmtp]`: mail from an MTA (RFC 2033), see docs/operating.md.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmtpConfig {
    /// `host:port`, `unix:/path/to/socket`, or empty for no LMTP listener.
    pub listen: String,
    /// Permissions of the UNIX socket, in octal (`"0660"`, or `660` from the environment).
    #[serde(deserialize_with = "octal_mode")]
    pub socket_mode: u32,
    /// LMTP connections at once; more are answered `421` and closed.
    pub max_connections: usize,
    /// Recipients in one transaction; more are answered `452 4.5.3`.
    pub max_recipients: usize,
    /// Seconds to wait for a command (RFC 5321 §4.5.3.2 suggests 5 minutes).
    pub command_timeout_secs: u64,
    /// Seconds the whole DATA section may take.
    pub data_timeout_secs: u64,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        LmtpConfig {
            listen: "127.0.0.1:2424".into(),
            socket_mode: 0o660,
            max_connections: 100,
            max_recipients: 100,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
        }
    }
}

/// A file mode written in octal digits, as a string or (from the environment) an integer.
fn octal_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Text(String),
        Digits(u64),
    }
    let digits = match Mode::deserialize(d)? {
        Mode::Text(s) => s,
        Mode::Digits(n) => n.to_string(),
    };
    u32::from_str_radix(digits.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| serde::de::Error::custom(format!("{digits:?} is not an octal file mode")))
}

/// `[submission]`
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionConfig {
    /// Domain of the default identity of a user whose name has no `@` (`<name>@<domain>`).
    pub domain: String,
    /// SMTP relay for recipients who are not local users; empty = local delivery only.
    pub relay: String,
    /// The longest delay a client may ask for with `HOLDFOR`/`HOLDUNTIL` (RFC 4865), in seconds;
    /// advertised as `maxDelayedSend` (RFC 8621 §7). 0: no delayed send.
    pub max_delayed_send_secs: u64,
    /// SMTP sessions (and local deliveries) of the outbox in flight at once.
    pub max_in_flight: usize,
    /// First retry delay after a temporary failure (4xx, unreachable relay), in seconds; doubles
    /// per attempt, with jitter.
    pub retry_base_secs: u64,
    /// Longest retry delay, in seconds.
    pub retry_cap_secs: u64,
    /// A recipient still failing this many seconds after it was queued is given up, and the
    /// sender gets a delivery status notification.
    pub give_up_secs: u64,
    /// Timeout of each step of an SMTP session with the relay, in seconds.
    pub relay_timeout_secs: u64,
    /// How long a node's claim on an outbox row lasts, in seconds: a node that dies mid-send
    /// delays the row this long before it is tried again. Keep it well above a session's length.
    pub claim_lease_secs: u64,
    /// How often the outbox is rescanned for due rows (retries, rows queued elsewhere), in seconds.
    pub outbox_poll_secs: u64,
    /// A sender gets at most one vacation reply (RFC 8621 §8) per this many seconds (RFC 5230
    /// `:days`); changing the VacationResponse starts afresh.
    pub vacation_reply_interval_secs: u64,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            domain: "localhost".into(),
            relay: String::new(),
            max_delayed_send_secs: 7 * 24 * 3600,
            max_in_flight: 16,
            retry_base_secs: 60,
            retry_cap_secs: 3600,
            give_up_secs: 5 * 24 * 3600,
            relay_timeout_secs: 30,
            claim_lease_secs: 600,
            outbox_poll_secs: 30,
            vacation_reply_interval_secs: 7 * 24 * 3600,
        }
    }
}

/// `[push]`: WebSocket (RFC 8887) and EventSource (RFC 8620 §7.3) connections, PushSubscription
/// limits and webhook delivery (RFC 8620 §7.2, docs/push.md, docs/webhooks.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Open push connections (WebSocket and EventSource together) one user may hold.
    pub max_connections_per_user: usize,
    /// Open push connections on this node.
    pub max_connections: usize,
    /// Seconds between WebSocket pings; also how often an EventSource stream checks that its
    /// client is still there.
    pub heartbeat_secs: u64,
    /// A WebSocket that sends nothing (not even a pong) for this many seconds is closed.
    pub idle_timeout_secs: u64,
    /// StateChanges one connection may send per second, and back to back (a token bucket); the
    /// changes beyond wait and merge. A safety net against a pathological writer: changes go out
    /// at once otherwise, merging only while a client reads slower than they come. 0: no cap.
    pub max_state_changes_per_sec: u32,
    /// EventSource `ping` below this is raised to it (RFC 8620 §7.3: at most 30).
    pub ping_min_secs: u64,
    /// EventSource `ping` above this is lowered to it (RFC 8620 §7.3: at least 300).
    pub ping_max_secs: u64,
    /// Seconds a ticket from `POST /jmap/ticket` stays valid.
    pub ticket_ttl_secs: u64,
    /// Unused, unexpired tickets one user may hold.
    pub max_tickets: usize,
    /// Seconds between checks that open push connections may still read their accounts (access
    /// withdrawn by `herald account unshare`, `herald user remove` or another node).
    pub access_check_secs: u64,
    /// SQLite: milliseconds between checks for commits made by other processes on the same
    /// database file (`herald deliver`, `herald account …`), which are then pushed.
    pub change_poll_ms: u64,
    /// Allow plain `http` push URLs and hosts that resolve to loopback, private or other
    /// non-global addresses. Off by default: it is an SSRF hole on a shared server.
    pub allow_private_targets: bool,
    /// Host names exempt from the address check (e.g. an internal push gateway); still https.
    pub allowed_hosts: Vec<String>,
    /// The latest `expires` a subscription may have, in seconds from now; also the default.
    pub subscription_max_expires_secs: i64,
    /// PushSubscriptions one user may have.
    pub subscriptions_per_user: u64,
    /// PushSubscriptions one user may create per hour, destroyed ones included.
    pub subscription_creations_per_hour: u64,
    /// First retry delay after a failed webhook POST, in milliseconds; doubles per attempt.
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_cap_ms: u64,
    /// A delivery still failing this many seconds after it was queued is dropped.
    pub give_up_secs: u64,
    /// Timeout of one webhook POST, in seconds.
    pub request_timeout_secs: u64,
    /// How long a node's claim on an outbox row lasts, in seconds: a node that dies mid-POST
    /// delays the row this long before another node sends it. 0: `request_timeout_secs + 30`.
    /// Keep it above `request_timeout_secs`, or a slow POST may be sent twice.
    pub claim_lease_secs: u64,
    /// The `TTL` header sent with every push (RFC 8030 §5.2), in seconds.
    pub ttl_secs: u64,
    /// The contact push services see in the VAPID token (RFC 8292 §2.1), a `mailto:` or
    /// `https:` URI; empty = `mailto:postmaster@<[submission] domain>`.
    pub vapid_subject: String,
    /// How often the outbox is rescanned for rows queued elsewhere, in seconds.
    pub outbox_poll_secs: u64,
    /// Webhook POSTs in flight at once, over all subscriptions.
    pub max_in_flight: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            allow_private_targets: false,
            allowed_hosts: Vec::new(),
            subscription_max_expires_secs: 7 * 24 * 3600,
            subscriptions_per_user: 20,
            subscription_creations_per_hour: 60,
            retry_base_ms: 1000,
            retry_cap_ms: 3_600_000,
            give_up_secs: 3 * 24 * 3600,
            request_timeout_secs: 30,
            claim_lease_secs: 0,
            ttl_secs: 86_400,
            vapid_subject: String::new(),
            outbox_poll_secs: 30,
            max_in_flight: 256,
            max_connections_per_user: 32,
            max_connections: 10_000,
            heartbeat_secs: 30,
            idle_timeout_secs: 90,
            max_state_changes_per_sec: 1000,
            ping_min_secs: 10,
            ping_max_secs: 600,
            ticket_ttl_secs: 60,
            max_tickets: 32,
            access_check_secs: 5,
            change_poll_ms: 50,
        }
    }
}

impl PushConfig {
    /// The EventSource ping bounds actually used: the RFC's constraints win over the file.
    pub fn ping_bounds(&self) -> (u64, u64) {
        let min = self.ping_min_secs.clamp(1, 30);
        (min, self.ping_max_secs.max(300))
    }
}

impl Config {
    /// Reads `path` (missing = defaults), then applies `HERALD_*` variables from `env`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let mut table = match std::fs::read_to_string(path) {
            Ok(text) => text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Parse(name.clone(), one_line(&e.to_string())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
            Err(e) => return Err(ConfigError::Read(name, e)),
        };
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("HERALD_") else {
                continue;
            };
            let Some((section, key)) = rest.split_once('_') else {
                return Err(ConfigError::Env(
                    var.clone(),
                    "expected HERALD_<SECTION>_<KEY>".into(),
                ));
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = entry else {
                return Err(ConfigError::Env(
                    var.clone(),
                    format!("{section} is not a section"),
                ));
            };
            section_table.insert(key, env_value(&value));
        }
        toml::Value::Table(table)
            .try_into::<Config>()
            .map_err(|e| ConfigError::Parse(name, one_line(&e.to_string())))
    }
}

/// An environment value as TOML: numbers and booleans as such, anything else as a string.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if raw.starts_with('[')
        && let Ok(t) = format!("v = {raw}").parse::<toml::Table>()
        && let Some(v) = t.get("v")
    {
        return v.clone();
    }
    toml::Value::String(raw.to_owned())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_missing_file_gives_defaults_and_environment_variables_override() {
        let c = Config::load(
            Path::new("/nonexistent/config.toml"),
            env(&[
                ("HERALD_SERVER_LISTEN", "127.0.0.1:0"),
                ("HERALD_SERVER_BASE_URL", "https://mail.example.com"),
                ("HERALD_LIMITS_MAX_CALLS_IN_REQUEST", "7"),
                ("HERALD_JMAP_STRICT_USING", "true"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:0");
        assert_eq!(c.server.base_url, "https://mail.example.com");
        assert_eq!(c.limits.max_calls_in_request, 7);
        assert!(c.jmap.strict_using);
        assert_eq!(c.store.url, "sqlite://data/herald.db");
    }

    #[test]
    fn unknown_keys_are_errors_in_one_line() {
        let e = Config::load(
            Path::new("/nonexistent"),
            env(&[("HERALD_SERVER_LISTN", "x")]),
        )
        .unwrap_err();
        assert!(!e.to_string().contains('\n'));
        assert!(e.to_string().contains("listn"), "{e}");
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one comparison per section of the shipped file"
    )]
    fn the_shipped_config_toml_parses_to_the_defaults() {
        let shipped = Config::load(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")),
            vec![],
        )
        .unwrap();
        let defaults = Config::default();
        assert_eq!(shipped.server.listen, defaults.server.listen);
        assert_eq!(shipped.store.url, defaults.store.url);
        assert_eq!(shipped.limits, defaults.limits);
        assert_eq!(
            shipped.auth.credential_cache_secs,
            defaults.auth.credential_cache_secs
        );
        assert_eq!(
            shipped.auth.max_failed_logins_per_minute,
            defaults.auth.max_failed_logins_per_minute
        );
        assert_eq!(shipped.jmap.strict_using, defaults.jmap.strict_using);
        assert_eq!(shipped.submission, defaults.submission);
        let policy = |p: &PushConfig| {
            (
                p.allow_private_targets,
                p.allowed_hosts.clone(),
                p.subscription_max_expires_secs,
                p.subscriptions_per_user,
                p.subscription_creations_per_hour,
            )
        };
        assert_eq!(policy(&shipped.push), policy(&defaults.push));
        assert_eq!(shipped.push.retry_base_ms, defaults.push.retry_base_ms);
        assert_eq!(shipped.push.ttl_secs, defaults.push.ttl_secs);
        assert_eq!(shipped.push.vapid_subject, defaults.push.vapid_subject);
        assert_eq!(shipped.push.change_poll_ms, defaults.push.change_poll_ms);
        assert_eq!(
            shipped.push.access_check_secs,
            defaults.push.access_check_secs
        );
        let (l, d) = (&shipped.lmtp, &defaults.lmtp);
        assert_eq!(
            (
                &l.listen,
                l.socket_mode,
                l.max_connections,
                l.max_recipients
            ),
            (
                &d.listen,
                d.socket_mode,
                d.max_connections,
                d.max_recipients
            )
        );
        assert_eq!(
            (l.command_timeout_secs, l.data_timeout_secs),
            (d.command_timeout_secs, d.data_timeout_secs)
        );
        assert_eq!(shipped.query, defaults.query);
        assert_eq!(shipped.metrics.listen, defaults.metrics.listen);
        assert_eq!(
            shipped.server.request_body_timeout_secs,
            defaults.server.request_body_timeout_secs
        );
        assert_eq!(
            shipped.server.memory_trim_secs,
            defaults.server.memory_trim_secs
        );
        let (p, d) = (&shipped.push, &defaults.push);
        assert_eq!(
            (
                p.max_connections_per_user,
                p.max_connections,
                p.heartbeat_secs
            ),
            (
                d.max_connections_per_user,
                d.max_connections,
                d.heartbeat_secs
            )
        );
        assert_eq!(
            (
                p.idle_timeout_secs,
                p.max_state_changes_per_sec,
                p.ping_min_secs
            ),
            (
                d.idle_timeout_secs,
                d.max_state_changes_per_sec,
                d.ping_min_secs
            )
        );
        assert_eq!(
            (p.ping_max_secs, p.ticket_ttl_secs, p.max_tickets),
            (d.ping_max_secs, d.ticket_ttl_secs, d.max_tickets)
        );
    }
}
