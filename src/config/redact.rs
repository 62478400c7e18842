//! URLs as they may be shown: the store URL (`postgres://herald:secret@db/herald`) and the relay
//! URL (`smtp://user:secret@host:587`) carry passwords, and whatever Herald prints or logs ends up
//! in terminals, journals and bug reports.

/// What replaces a password.
const HIDDEN: &str = "***";

/// `url` with its password hidden: the one in the user information (`user:secret@host`) and a
/// libpq `password=` parameter. Anything that is not a URL comes back as it is, but for such a
/// parameter.
pub fn redact_password(url: &str) -> String {
    let (head, query) = match url.find(['?', '#']) {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    // The last `@` before the query ends the user information, so a password holding `/` or `@`
    // is hidden whole (a path holding `@` hides more than it needs, never less).
    let head = match head
        .split_once("://")
        .and_then(|(scheme, rest)| Some((scheme, rest.rsplit_once('@')?)))
    {
        Some((scheme, (userinfo, host))) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:{HIDDEN}@{host}"),
            None => head.to_owned(),
        },
        None => head.to_owned(),
    };
    hide_password_parameters(&format!("{head}{}", redact_query(query)))
}

/// `message` (a driver's error, which may repeat the URL it was given) with the password of
/// `url` hidden wherever it appears, and any `password=` parameter.
pub fn redact_message(url: &str, message: &str) -> String {
    let hidden = match password_of(url) {
        Some(password) if !password.is_empty() => message.replace(password, HIDDEN),
        _ => message.to_owned(),
    };
    hide_password_parameters(&hidden)
}

/// The password in `url`'s user information or `password=` parameter.
fn password_of(url: &str) -> Option<&str> {
    let head = url.split(['?', '#']).next().unwrap_or(url);
    if let Some((_, rest)) = head.split_once("://")
        && let Some((userinfo, _)) = rest.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        return Some(password);
    }
    let lower = url.to_ascii_lowercase();
    let at = lower.find("password=")? + "password=".len();
    let value = &url[at..];
    Some(&value[..value.find([' ', '&', '#']).unwrap_or(value.len())])
}

/// `text` with the value of every `password=` parameter hidden: in a query (`&password=…`) and in
/// a libpq key/value string (`host=db password=…`).
fn hide_password_parameters(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("password=") {
        let value = from + found + "password=".len();
        let end = text[value..]
            .find([' ', '&', '#', '"'])
            .map_or(text.len(), |e| value + e);
        out.push_str(&text[copied..value]);
        if end > value {
            out.push_str(HIDDEN);
        }
        copied = end;
        from = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// A query (`?a=b&password=secret`) with the value of any `password` parameter hidden.
fn redact_query(query: &str) -> String {
    let (query, fragment) = match query.find('#') {
        Some(at) => query.split_at(at),
        None => (query, ""),
    };
    let Some(params) = query.strip_prefix('?') else {
        return format!("{query}{fragment}");
    };
    let params: Vec<String> = params
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={HIDDEN}"),
            _ => param.to_owned(),
        })
        .collect();
    format!("?{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::{redact_message, redact_password};

    #[test]
    fn a_drivers_message_and_a_libpq_string_lose_their_passwords() {
        let url = "postgres://herald:s3cr3tPW@[bad/herald";
        let message = format!("invalid IPv6 host in URI: \"{url}\"");
        assert!(!redact_message(url, &message).contains("s3cr3tPW"));
        let keyvalue = "host=127.0.0.1 port=5432 user=herald password=s3cr3tPW dbname=h";
        assert_eq!(
            redact_password(keyvalue),
            "host=127.0.0.1 port=5432 user=herald password=*** dbname=h"
        );
        let message = format!("store URL \"{keyvalue}\" is not sqlite://PATH");
        assert!(!redact_message(keyvalue, &message).contains("s3cr3tPW"));
        assert_eq!(
            redact_password("sqlite://herald:s3cr3tPW@/tmp/x.db"),
            "sqlite://herald:***@/tmp/x.db"
        );
    }

    #[test]
    fn passwords_are_hidden_and_everything_else_is_kept() {
        let cases = [
            (
                "postgres://postgres:S3CRETpw@db.example:5432/herald",
                "postgres://postgres:***@db.example:5432/herald",
            ),
            (
                "postgres://u:pa/ss@word@host/db?sslmode=require",
                "postgres://u:***@host/db?sslmode=require",
            ),
            (
                "postgresql://u@/db?host=/run/pg&password=S3CRET&port=5433",
                "postgresql://u@/db?host=/run/pg&password=***&port=5433",
            ),
            (
                "smtp://user:S3CRET@relay.example:587?tls=required",
                "smtp://user:***@relay.example:587?tls=required",
            ),
            ("postgres://herald@db/herald", "postgres://herald@db/herald"),
            ("sqlite://data/herald.db", "sqlite://data/herald.db"),
            ("garbage", "garbage"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_password(url), shown, "{url}");
        }
    }
}
