//! Values that parse as strings but cannot work, refused when the server starts rather than found
//! out later: a relay URL that does not parse deferred every remote recipient for days before
//! they bounced, and a base URL or VAPID subject that is not one misleads clients and push
//! services for as long as the server runs. An empty value still means "unset" for each of them.

use super::{Config, ConfigError, redact::redact_password};

impl Config {
    /// Checks `[server] base_url`, `[submission] relay` and `[push] vapid_subject`.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: &str, why: String| {
            ConfigError::Invalid(format!("{key} {:?}", redact_password(value)), why)
        };
        let base_url = self.server.base_url.trim();
        if !base_url.is_empty() {
            check_base_url(base_url).map_err(|why| invalid("[server] base_url", base_url, why))?;
        }
        let relay = self.submission.relay.trim();
        if !relay.is_empty() {
            // The parser the outbox sends with (`outbound::relay`), so what passes here is what
            // it will use.
            lettre::SmtpTransport::from_url(relay).map_err(|e| {
                // lettre adds a note on its TLS features, which are built in: not the problem.
                let e = e.to_string();
                let e = e.split(", note that").next().unwrap_or_default();
                invalid(
                    "[submission] relay",
                    relay,
                    format!(
                        "{e} (expected smtp://host:port, smtp://user:password@host:587?tls=required or smtps://host:465)"
                    ),
                )
            })?;
        }
        let subject = self.push.vapid_subject.trim();
        if !subject.is_empty() {
            check_vapid_subject(subject)
                .map_err(|why| invalid("[push] vapid_subject", subject, why))?;
        }
        Ok(())
    }
}

/// The base of the session's URLs: an absolute `http` or `https` URL with a host, to which paths
/// are appended (so no query or fragment).
fn check_base_url(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("{e} (expected https://host)"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("not an http or https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("paths are appended to it, so it has no query or fragment".into());
    }
    // Every session would publish them to every client.
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL has a user name or password, which every session would show".into());
    }
    Ok(())
}

/// RFC 8292 §2.1: the contact is a `mailto:` or an `https:` URI.
fn check_vapid_subject(value: &str) -> Result<(), String> {
    let expected = "expected mailto:someone@example.com or an https: URL";
    let url = url::Url::parse(value).map_err(|e| format!("{e} ({expected})"))?;
    match url.scheme() {
        "mailto" if url.path().contains('@') => Ok(()),
        "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(expected.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(edit: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut config = Config::default();
        edit(&mut config);
        config.check()
    }

    #[test]
    fn empty_values_mean_unset_and_good_ones_pass() {
        assert!(with(|_| {}).is_ok());
        assert!(
            with(|c| {
                c.server.base_url = "https://mail.example.com/".into();
                c.submission.relay = "smtp://u:p@relay.example:587?tls=required".into();
                c.push.vapid_subject = "mailto:postmaster@example.com".into();
            })
            .is_ok()
        );
        assert!(
            with(|c| {
                c.server.base_url = "http://127.0.0.1:8080".into();
                c.submission.relay = " smtps://relay.example:465 ".into();
                c.push.vapid_subject = "https://example.com/contact".into();
            })
            .is_ok()
        );
        assert!(with(|c| c.submission.relay = "   ".into()).is_ok());
    }

    #[test]
    fn values_that_cannot_work_are_refused_naming_the_key_without_the_password() {
        let refused = |edit: fn(&mut Config), key: &str| {
            let e = with(edit).expect_err(key).to_string();
            assert!(e.contains(key), "{e}");
            assert!(!e.contains("S3CRET"), "{e}");
        };
        refused(|c| c.server.base_url = "notaurl".into(), "base_url");
        refused(|c| c.server.base_url = "ftp://host".into(), "base_url");
        refused(|c| c.server.base_url = "https://h/?x=1".into(), "base_url");
        refused(
            |c| c.server.base_url = "https://user:pw@h".into(),
            "base_url",
        );
        refused(|c| c.submission.relay = "garbage".into(), "relay");
        refused(
            |c| c.submission.relay = "http://u:S3CRET@relay.example".into(),
            "relay",
        );
        refused(
            |c| c.submission.relay = "smtp://u:S3CRET@relay.example?tls=maybe".into(),
            "relay",
        );
        refused(|c| c.push.vapid_subject = "bogus".into(), "vapid_subject");
        refused(
            |c| c.push.vapid_subject = "http://example.com".into(),
            "vapid_subject",
        );
        refused(|c| c.push.vapid_subject = "mailto:".into(), "vapid_subject");
    }
}
