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
    format!("{head}{}", redact_query(query))
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
    use super::redact_password;

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
