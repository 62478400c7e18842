//! The list-view Email properties of a message, computed once at import and kept by the store, so
//! Email/get can answer them without reading or parsing the message (RFC 8621 §4.1.2.3 convenience
//! properties, §4.1.4 `hasAttachment` and `preview`).
//!
//! [`Summary::of`] renders the header-derived properties through [`super::render_email`] itself,
//! so a stored value is, by construction, the JSON value the parsing path gives. The store keeps
//! [`Summary::headers`] as JSON text ([`Summary::headers_json`]) and `sentAt`, `hasAttachment`
//! and `preview` in columns of their own (Email/query sorts and filters on them).

use serde_json::{Map, Value};

use super::Email;
use super::header;
use super::render::{EmailProperty, FetchOptions, PropertySelection, render_email};

/// Bumped whenever the rendering of a summary property changes: stored summaries of another
/// version count as missing and are computed again from the message.
pub const SUMMARY_VERSION: i64 = 1;

/// The key of the version inside the stored JSON.
const VERSION_KEY: &str = "v";

/// The header-derived properties kept as JSON, by their Email property names.
pub const SUMMARY_HEADER_PROPERTIES: &[&str] = &[
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
];

/// What Email/get serves without the message, beside the store's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The JSON value of each of [`SUMMARY_HEADER_PROPERTIES`] (`null` where the header is absent).
    pub headers: Map<String, Value>,
    /// `sentAt` in seconds since the epoch (the Date field), if it parses.
    pub sent_at: Option<i64>,
    pub has_attachment: bool,
    pub preview: String,
}

impl Summary {
    /// Computes the summary of a parsed message.
    pub fn of(email: &Email) -> Summary {
        let selection = PropertySelection {
            properties: SUMMARY_HEADER_PROPERTIES
                .iter()
                .filter_map(|name| Some((name.to_string(), EmailProperty::parse(name).ok()?)))
                .collect(),
            body_properties: Vec::new(),
        };
        // No body property is selected, so the blob id is never rendered.
        let headers = render_email(email, "", &selection, &FetchOptions::default());
        Summary {
            headers,
            sent_at: email.sent_at(),
            has_attachment: email.has_attachment(),
            preview: email.preview(),
        }
    }

    /// The stored form of [`Summary::headers`]: a JSON object with the version.
    pub fn headers_json(&self) -> String {
        let mut stored = self.headers.clone();
        stored.insert(VERSION_KEY.into(), Value::from(SUMMARY_VERSION));
        Value::Object(stored).to_string()
    }

    /// A summary from its stored parts. `None` when the JSON is not a complete summary of this
    /// version: the caller then computes it again from the message.
    pub fn from_stored(
        headers_json: &str,
        sent_at: Option<i64>,
        has_attachment: bool,
        preview: String,
    ) -> Option<Summary> {
        let Ok(Value::Object(mut headers)) = serde_json::from_str::<Value>(headers_json) else {
            return None;
        };
        if headers.remove(VERSION_KEY) != Some(Value::from(SUMMARY_VERSION))
            || headers.len() != SUMMARY_HEADER_PROPERTIES.len()
            || !SUMMARY_HEADER_PROPERTIES
                .iter()
                .all(|k| headers.contains_key(*k))
        {
            return None;
        }
        Some(Summary {
            headers,
            sent_at,
            has_attachment,
            preview,
        })
    }

    /// The value of `property` if the summary holds it; `None` for properties it does not serve.
    pub fn value(&self, property: &EmailProperty) -> Option<Value> {
        let header = |name: &str| Some(self.headers.get(name).cloned().unwrap_or(Value::Null));
        match property {
            EmailProperty::MessageId => header("messageId"),
            EmailProperty::InReplyTo => header("inReplyTo"),
            EmailProperty::References => header("references"),
            EmailProperty::Sender => header("sender"),
            EmailProperty::From => header("from"),
            EmailProperty::To => header("to"),
            EmailProperty::Cc => header("cc"),
            EmailProperty::Bcc => header("bcc"),
            EmailProperty::ReplyTo => header("replyTo"),
            EmailProperty::Subject => header("subject"),
            EmailProperty::SentAt => Some(
                self.sent_at
                    .map_or(Value::Null, |t| Value::from(header::utc_date(t))),
            ),
            EmailProperty::HasAttachment => Some(Value::Bool(self.has_attachment)),
            EmailProperty::Preview => Some(Value::from(self.preview.clone())),
            _ => None,
        }
    }
}

impl EmailProperty {
    /// Whether a [`Summary`] serves this property.
    pub fn is_summary(&self) -> bool {
        matches!(
            self,
            EmailProperty::MessageId
                | EmailProperty::InReplyTo
                | EmailProperty::References
                | EmailProperty::Sender
                | EmailProperty::From
                | EmailProperty::To
                | EmailProperty::Cc
                | EmailProperty::Bcc
                | EmailProperty::ReplyTo
                | EmailProperty::Subject
                | EmailProperty::SentAt
                | EmailProperty::HasAttachment
                | EmailProperty::Preview
        )
    }
}

impl PropertySelection {
    /// Whether some selected property needs the parsed message: one that neither the store's
    /// metadata nor a [`Summary`] serves (body parts, body values, raw headers, `header:*`).
    pub fn needs_parsed_message(&self) -> bool {
        self.properties
            .iter()
            .any(|(_, p)| !p.is_metadata() && !p.is_summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Email {
        Email::parse(raw.as_bytes()).unwrap()
    }

    fn selection(names: &[&str]) -> PropertySelection {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        PropertySelection::parse(Some(&names), None, &[]).unwrap()
    }

    #[test]
    fn every_summary_property_has_the_value_the_parsing_path_renders() {
        let email = parse(
            "From: =?UTF-8?Q?Caf=C3=A9?= <cafe@example.com>\r\n\
             To: Friends: a@x.org, \"B\" <b@x.org>;, c@y.org\r\n\
             Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus Berlin\r\n\
             Date: Thu, 30 Oct 2014 14:12:00 +0800\r\n\
             Message-ID: <one@example.com>\r\n\
             References: <a@b> <c@d>\r\n\
             Content-Type: text/plain\r\n\r\nHello   world\r\n",
        );
        let summary = Summary::of(&email);
        let names: Vec<&str> = SUMMARY_HEADER_PROPERTIES
            .iter()
            .copied()
            .chain(["sentAt", "hasAttachment", "preview"])
            .collect();
        let sel = selection(&names);
        let rendered = render_email(&email, "b", &sel, &FetchOptions::default());
        for (key, property) in &sel.properties {
            assert!(property.is_summary(), "{key}");
            assert_eq!(summary.value(property).as_ref(), rendered.get(key), "{key}");
        }
        assert_eq!(summary.headers["subject"], "Grüße aus Berlin");
        assert_eq!(summary.headers["inReplyTo"], Value::Null);
        assert_eq!(summary.headers["cc"], Value::Null);
        assert_eq!(summary.value(&EmailProperty::Id), None);
    }

    #[test]
    fn a_stored_summary_round_trips_and_a_foreign_or_partial_one_is_refused() {
        let email = parse("Subject: x\r\n\r\nbody\r\n");
        let summary = Summary::of(&email);
        let json = summary.headers_json();
        let back = Summary::from_stored(&json, None, false, "body".into()).unwrap();
        assert_eq!(back, summary);
        let mut old: Map<String, Value> = serde_json::from_str(&json).unwrap();
        old.insert("v".into(), Value::from(SUMMARY_VERSION + 1));
        let old = Value::Object(old).to_string();
        assert_eq!(Summary::from_stored(&old, None, false, String::new()), None);
        assert_eq!(
            Summary::from_stored(r#"{"v":1,"subject":"x"}"#, None, false, String::new()),
            None
        );
        assert_eq!(
            Summary::from_stored("not json", None, false, String::new()),
            None
        );
    }

    #[test]
    fn only_body_and_raw_header_properties_need_the_parsed_message() {
        assert!(
            !selection(&["id", "threadId", "from", "subject", "preview"]).needs_parsed_message()
        );
        assert!(
            !selection(&["sentAt", "hasAttachment", "messageId", "replyTo"]).needs_parsed_message()
        );
        for p in [
            "bodyStructure",
            "bodyValues",
            "textBody",
            "htmlBody",
            "attachments",
            "headers",
            "header:Subject",
        ] {
            assert!(selection(&["id", p]).needs_parsed_message(), "{p}");
        }
    }
}
