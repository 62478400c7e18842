//! The list-view Email properties of a message, computed once at import and kept by the store, so
//! Email/get can answer them without reading or parsing the message (RFC 8621 §4.1.2.3 convenience
//! properties, §4.1.4 `hasAttachment` and `preview`).
//!
//! [`Summary::of`] renders the header-derived properties through [`super::render_email`] itself,
//! so a stored value is, by construction, the JSON value the parsing path gives. The store keeps
//! [`Summary::headers`] as JSON text ([`Summary::headers_json`]) and `sentAt`, `hasAttachment`
//! and `preview` in columns of their own (Email/query sorts and filters on them); it hands them
//! back as a [`StoredSummary`], whose JSON is read only for the properties a request selects.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::Email;
use super::header;
use super::render::{EmailProperty, FetchOptions, PropertySelection, render_email};

/// Bumped whenever the rendering of a summary property changes: stored summaries of another
/// version count as missing and are computed again from the message.
///
/// 2: `preview` from `text/*` parts only, base64 decoded leniently, HTML block elements apart.
/// Each email stored before is parsed once more, the first time Email/get asks for a summary
/// property of it, and its summary written back; none is rewritten in bulk.
pub const SUMMARY_VERSION: i64 = 2;

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

    /// The value of `property` if the summary holds it; `None` for properties it does not serve.
    pub fn value(&self, property: &EmailProperty) -> Option<Value> {
        if let Some(key) = property.summary_key() {
            return Some(self.headers.get(key).cloned().unwrap_or(Value::Null));
        }
        match property {
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

/// A summary as the store keeps it: the JSON text of [`Summary::headers_json`] and the columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSummary {
    pub headers_json: String,
    pub sent_at: Option<i64>,
    pub has_attachment: bool,
    pub preview: String,
}

impl StoredSummary {
    /// The summary with the header values `selection` asks for (the others are left out, not
    /// even parsed). `None` when the JSON is not a complete summary of this version: the caller
    /// then computes it again from the message.
    pub fn read(&self, selection: &PropertySelection) -> Option<Summary> {
        let wanted: Vec<&str> = selection
            .properties
            .iter()
            .filter_map(|(_, p)| p.summary_key())
            .collect();
        let mut de = serde_json::Deserializer::from_str(&self.headers_json);
        let read = StoredHeaders { wanted: &wanted }
            .deserialize(&mut de)
            .ok()?;
        de.end().ok()?;
        let complete = read.version == Some(SUMMARY_VERSION)
            && read.keys.len() == SUMMARY_HEADER_PROPERTIES.len()
            && SUMMARY_HEADER_PROPERTIES
                .iter()
                .all(|k| read.keys.iter().any(|seen| seen == k));
        complete.then(|| Summary {
            headers: read.values,
            sent_at: self.sent_at,
            has_attachment: self.has_attachment,
            preview: self.preview.clone(),
        })
    }
}

/// What [`StoredHeaders`] read: the wanted values, every property key seen, the version.
struct ReadHeaders {
    values: Map<String, Value>,
    keys: Vec<String>,
    version: Option<i64>,
}

/// Reads the stored JSON object, building values only for the wanted keys.
struct StoredHeaders<'a> {
    wanted: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for StoredHeaders<'_> {
    type Value = ReadHeaders;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ReadHeaders, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StoredHeaders<'_> {
    type Value = ReadHeaders;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a stored Email summary object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReadHeaders, A::Error> {
        let mut read = ReadHeaders {
            values: Map::new(),
            keys: Vec::with_capacity(SUMMARY_HEADER_PROPERTIES.len()),
            version: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == VERSION_KEY {
                read.version = map.next_value::<Option<i64>>()?;
            } else if self.wanted.contains(&key.as_str()) {
                read.values.insert(key.clone(), map.next_value::<Value>()?);
                read.keys.push(key);
            } else {
                map.next_value::<IgnoredAny>()?;
                read.keys.push(key);
            }
        }
        Ok(read)
    }
}

impl EmailProperty {
    /// The key of this property in the stored JSON of a [`Summary`], if it is kept there.
    pub fn summary_key(&self) -> Option<&'static str> {
        Some(match self {
            EmailProperty::MessageId => "messageId",
            EmailProperty::InReplyTo => "inReplyTo",
            EmailProperty::References => "references",
            EmailProperty::Sender => "sender",
            EmailProperty::From => "from",
            EmailProperty::To => "to",
            EmailProperty::Cc => "cc",
            EmailProperty::Bcc => "bcc",
            EmailProperty::ReplyTo => "replyTo",
            EmailProperty::Subject => "subject",
            _ => return None,
        })
    }

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

    fn stored(json: String) -> StoredSummary {
        StoredSummary {
            headers_json: json,
            sent_at: None,
            has_attachment: false,
            preview: "body".into(),
        }
    }

    #[test]
    fn a_stored_summary_round_trips_and_a_foreign_or_partial_one_is_refused() {
        let email = parse("Subject: x\r\nFrom: a@b.c\r\n\r\nbody\r\n");
        let summary = Summary::of(&email);
        let json = summary.headers_json();
        let all = selection(SUMMARY_HEADER_PROPERTIES);
        assert_eq!(stored(json.clone()).read(&all), Some(summary.clone()));
        // Only what is selected is read.
        let some = stored(json.clone())
            .read(&selection(&["id", "subject", "preview"]))
            .unwrap();
        assert_eq!(some.headers.keys().collect::<Vec<_>>(), vec!["subject"]);
        assert_eq!(some.value(&EmailProperty::Subject), Some(Value::from("x")));
        assert_eq!(
            some.value(&EmailProperty::Preview),
            Some(Value::from("body"))
        );
        let mut old: Map<String, Value> = serde_json::from_str(&json).unwrap();
        old.insert("v".into(), Value::from(SUMMARY_VERSION + 1));
        assert_eq!(stored(Value::Object(old).to_string()).read(&all), None);
        assert_eq!(stored(r#"{"v":1,"subject":"x"}"#.into()).read(&all), None);
        assert_eq!(stored("not json".into()).read(&all), None);
        assert_eq!(stored(format!("{json} trailing")).read(&all), None);
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
