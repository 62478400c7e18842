//! Header fields and their parsed forms (RFC 8621 §4.1.2, checklist EML-05..EML-08).

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue};
use serde_json::{Value, json};

/// One header field as it appears in the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The field name in its original case.
    pub name: String,
    /// The octets after the colon, up to but excluding the terminating CRLF.
    pub raw: Vec<u8>,
}

impl Header {
    /// The Raw form (EML-08): the value as UTF-8, NULs dropped, invalid octets as U+FFFD.
    pub fn raw_value(&self) -> String {
        String::from_utf8_lossy(&self.raw).replace('\0', "")
    }

    /// `{name, value}` as in the `headers` property (EML-05).
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "value": self.raw_value()})
    }

    /// Whether this field is named `name` (case-insensitively).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// A parsed form of a header field value (RFC 8621 §4.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderForm {
    Raw,
    Text,
    Addresses,
    GroupedAddresses,
    MessageIds,
    Date,
    Urls,
}

impl HeaderForm {
    /// The form named by a property suffix (`asText` …).
    pub fn from_suffix(s: &str) -> Option<HeaderForm> {
        Some(match s {
            "asRaw" => HeaderForm::Raw,
            "asText" => HeaderForm::Text,
            "asAddresses" => HeaderForm::Addresses,
            "asGroupedAddresses" => HeaderForm::GroupedAddresses,
            "asMessageIds" => HeaderForm::MessageIds,
            "asDate" => HeaderForm::Date,
            "asURLs" => HeaderForm::Urls,
            _ => return None,
        })
    }
}

/// A `header:{Name}[:as{Form}][:all]` property (EML-06).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderProperty {
    pub name: String,
    pub form: HeaderForm,
    pub all: bool,
}

/// Why a property cannot be served: the caller answers `invalidArguments` (EML-07).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PropertyError(pub String);

/// Header fields defined by RFC 5322 and RFC 2369, lowercase: only these restrict the forms.
const STANDARD: &[&str] = &[
    "date",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "message-id",
    "in-reply-to",
    "references",
    "subject",
    "comments",
    "keywords",
    "resent-date",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "resent-message-id",
    "return-path",
    "received",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

/// Whether `form` may be used on header `name` (EML-07).
pub fn form_allowed(name: &str, form: HeaderForm) -> bool {
    let lower = name.to_ascii_lowercase();
    if form == HeaderForm::Raw || !STANDARD.contains(&lower.as_str()) {
        return true;
    }
    let allowed: &[&str] = match form {
        HeaderForm::Raw => return true,
        HeaderForm::Text => &["subject", "comments", "keywords", "list-id"],
        HeaderForm::Addresses | HeaderForm::GroupedAddresses => &[
            "from",
            "sender",
            "reply-to",
            "to",
            "cc",
            "bcc",
            "resent-from",
            "resent-sender",
            "resent-reply-to",
            "resent-to",
            "resent-cc",
            "resent-bcc",
        ],
        HeaderForm::MessageIds => &[
            "message-id",
            "in-reply-to",
            "references",
            "resent-message-id",
        ],
        HeaderForm::Date => &["date", "resent-date"],
        HeaderForm::Urls => &[
            "list-help",
            "list-unsubscribe",
            "list-subscribe",
            "list-post",
            "list-owner",
            "list-archive",
        ],
    };
    allowed.contains(&lower.as_str())
}

impl HeaderProperty {
    /// Parses a property name. `Ok(None)`: not a `header:` property. `Err`: a malformed one, or a
    /// form not allowed on that header (EML-07).
    pub fn parse(property: &str) -> Result<Option<HeaderProperty>, PropertyError> {
        let Some(rest) = property.strip_prefix("header:") else {
            return Ok(None);
        };
        let bad = || PropertyError(format!("{property:?} is not a valid header property"));
        let mut pieces = rest.split(':');
        let name = pieces.next().filter(|n| is_field_name(n)).ok_or_else(bad)?;
        let mut form = HeaderForm::Raw;
        let mut all = false;
        let mut next = pieces.next();
        if let Some(suffix) = next
            && suffix != "all"
        {
            form = HeaderForm::from_suffix(suffix).ok_or_else(bad)?;
            next = pieces.next();
        }
        if let Some(suffix) = next {
            if suffix != "all" {
                return Err(bad());
            }
            all = true;
        }
        if pieces.next().is_some() {
            return Err(bad());
        }
        if !form_allowed(name, form) {
            return Err(PropertyError(format!(
                "{property:?}: that form is not allowed on the {name} header"
            )));
        }
        Ok(Some(HeaderProperty {
            name: name.to_owned(),
            form,
            all,
        }))
    }

    /// The property's value over `headers`: the last instance (or `null`), or with `:all` every
    /// instance in order (or `[]`) (EML-06).
    pub fn value(&self, headers: &[Header]) -> Value {
        let mut matching = headers.iter().filter(|h| h.is(&self.name));
        if self.all {
            Value::Array(matching.map(|h| form_value(&h.raw, self.form)).collect())
        } else {
            matching
                .next_back()
                .map_or(Value::Null, |h| form_value(&h.raw, self.form))
        }
    }
}

/// RFC 5322 field name: printable ASCII except `:`.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// A header value (without its CRLF) in `form`, as JSON (EML-08).
pub fn form_value(raw: &[u8], form: HeaderForm) -> Value {
    match form {
        HeaderForm::Raw => Value::from(String::from_utf8_lossy(raw).replace('\0', "")),
        HeaderForm::Text => Value::from(text(raw)),
        HeaderForm::Addresses => addresses_json(&addresses(raw)),
        HeaderForm::GroupedAddresses => grouped_json(raw),
        HeaderForm::MessageIds => message_ids(raw).map_or(Value::Null, Value::from),
        HeaderForm::Date => date(raw).map_or(Value::Null, |ts| Value::from(utc_date(ts))),
        HeaderForm::Urls => urls(raw).map_or(Value::Null, Value::from),
    }
}

/// The value with a line end, as mail-parser's field parsers expect to find one.
fn terminated(raw: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(raw.len() + 2);
    v.extend_from_slice(raw);
    v.extend_from_slice(b"\r\n");
    v
}

/// The Text form: unfolded, RFC 2047 words decoded, leading and trailing white space trimmed,
/// normalised to NFC (RFC 8621 §4.1.2.2).
pub fn text(raw: &[u8]) -> String {
    use unicode_normalization::UnicodeNormalization;
    let bytes = terminated(raw);
    let value = match MessageStream::new(&bytes).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        HeaderValue::TextList(list) => list.join(" "),
        _ => String::new(),
    };
    value.replace('\0', "").trim().nfc().collect()
}

/// One address of the Addresses form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailAddress {
    pub name: Option<String>,
    pub email: String,
}

impl EmailAddress {
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "email": self.email})
    }
}

fn addr(a: &mail_parser::Addr<'_>) -> EmailAddress {
    EmailAddress {
        name: a
            .name
            .as_ref()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        email: a
            .address
            .as_ref()
            .map(|e| e.trim().to_owned())
            .unwrap_or_default(),
    }
}

fn parse_address(raw: &[u8]) -> Option<Address<'static>> {
    let bytes = terminated(raw);
    match MessageStream::new(&bytes).parse_address() {
        HeaderValue::Address(a) => Some(a.into_owned()),
        _ => None,
    }
}

/// The Addresses form: every address, groups flattened.
pub fn addresses(raw: &[u8]) -> Vec<EmailAddress> {
    match parse_address(raw) {
        Some(Address::List(list)) => list.iter().map(addr).collect(),
        Some(Address::Group(groups)) => groups
            .iter()
            .flat_map(|g| g.addresses.iter().map(addr))
            .collect(),
        None => Vec::new(),
    }
}

fn addresses_json(list: &[EmailAddress]) -> Value {
    Value::Array(list.iter().map(EmailAddress::to_json).collect())
}

fn grouped_json(raw: &[u8]) -> Value {
    let group = |name: Option<&str>, list: Vec<EmailAddress>| json!({"name": name, "addresses": addresses_json(&list)});
    match parse_address(raw) {
        Some(Address::List(list)) => {
            Value::Array(vec![group(None, list.iter().map(addr).collect())])
        }
        Some(Address::Group(groups)) => Value::Array(
            groups
                .iter()
                .map(|g| group(g.name.as_deref(), g.addresses.iter().map(addr).collect()))
                .collect(),
        ),
        None => Value::Array(Vec::new()),
    }
}

/// The MessageIds form: ids without angle brackets; `None` when none parse.
pub fn message_ids(raw: &[u8]) -> Option<Vec<String>> {
    let bytes = terminated(raw);
    let ids: Vec<String> = match MessageStream::new(&bytes).parse_id() {
        HeaderValue::Text(id) => vec![id.into_owned()],
        HeaderValue::TextList(ids) => ids.into_iter().map(|i| i.into_owned()).collect(),
        _ => Vec::new(),
    };
    let ids: Vec<String> = ids
        .into_iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty() && !i.contains(char::is_whitespace))
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// The Date form as seconds since the epoch; `None` when it does not parse.
pub fn date(raw: &[u8]) -> Option<i64> {
    let bytes = terminated(raw);
    match MessageStream::new(&bytes).parse_date() {
        HeaderValue::DateTime(dt) if dt.is_valid() => Some(dt.to_timestamp()),
        _ => None,
    }
}

/// A UTCDate string: `2014-10-30T06:12:00Z` (T-05).
pub fn utc_date(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0).map_or_else(
        || "1970-01-01T00:00:00Z".into(),
        |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// The URLs form: the URLs in angle brackets (RFC 2369), white space removed; `None` if none.
pub fn urls(raw: &[u8]) -> Option<Vec<String>> {
    let value = String::from_utf8_lossy(raw);
    let mut out = Vec::new();
    let mut rest = value.as_ref();
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        let url: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !url.is_empty() {
            out.push(url);
        }
        rest = &after[end + 1..];
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_properties_parse_with_their_form_and_all_suffix() {
        let p = HeaderProperty::parse("header:X-Foo:asText:all")
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            HeaderProperty {
                name: "X-Foo".into(),
                form: HeaderForm::Text,
                all: true
            }
        );
        let p = HeaderProperty::parse("header:subject:all")
            .unwrap()
            .unwrap();
        assert_eq!((p.form, p.all), (HeaderForm::Raw, true));
        assert_eq!(HeaderProperty::parse("subject").unwrap(), None);
        for bad in [
            "header:",
            "header:From:asBogus",
            "header:From:all:asRaw",
            "header:From:asRaw:all:x",
        ] {
            assert!(HeaderProperty::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forms_not_allowed_on_a_standard_header_are_errors() {
        // EML-07
        assert!(HeaderProperty::parse("header:From:asDate").is_err());
        assert!(HeaderProperty::parse("header:Subject:asAddresses").is_err());
        assert!(HeaderProperty::parse("header:Received:asText").is_err());
        assert!(HeaderProperty::parse("header:from:asAddresses").is_ok());
        assert!(HeaderProperty::parse("header:X-Custom:asDate").is_ok());
        assert!(HeaderProperty::parse("header:List-Id:asText").is_ok());
        assert!(HeaderProperty::parse("header:List-Post:asURLs").is_ok());
    }

    #[test]
    fn each_form_parses_its_kind_of_value() {
        assert_eq!(text(b" =?UTF-8?Q?caf=C3=A9?=\r\n  ok"), "café ok");
        // "e" + combining acute becomes one "é" (NFC).
        assert_eq!(text(b" =?UTF-8?Q?cafe=CC=81?="), "caf\u{e9}");
        assert_eq!(
            addresses(b" \"Doe, Jane\" <jane@example.com>, bob@example.org"),
            vec![
                EmailAddress {
                    name: Some("Doe, Jane".into()),
                    email: "jane@example.com".into()
                },
                EmailAddress {
                    name: None,
                    email: "bob@example.org".into()
                }
            ]
        );
        assert_eq!(
            grouped_json(b" Friends: a@x.org, b@x.org;, c@y.org")[0]["name"],
            "Friends"
        );
        assert_eq!(
            message_ids(b" <a@b> <c@d>"),
            Some(vec!["a@b".to_owned(), "c@d".to_owned()])
        );
        assert_eq!(
            date(b" Thu, 30 Oct 2014 14:12:00 +0800").map(utc_date),
            Some("2014-10-30T06:12:00Z".to_owned())
        );
        assert_eq!(date(b" not a date"), None);
        assert_eq!(
            urls(b" <mailto:list@x.org?subject=help>, (comment) <https://x.org/\r\n help>"),
            Some(vec![
                "mailto:list@x.org?subject=help".to_owned(),
                "https://x.org/help".to_owned()
            ])
        );
        assert_eq!(urls(b" nothing"), None);
        assert_eq!(form_value(b" a\0b\xff", HeaderForm::Raw), " ab\u{fffd}");
    }
}
