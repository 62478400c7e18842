//! `Email/parse` (RFC 8621 §4.9, checklist EPAR-01, EPAR-02), and the Email/get body arguments it
//! shares with Email/get ([`read_body_arguments`]).

use serde_json::{Map, Value};

use crate::jmap::args::{Arguments, Id, UnsignedInt};
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::methods::blob::BlobStore;
use crate::mail::{self, Email, FetchOptions, PropertySelection};

/// Reads `properties`, `bodyProperties`, `fetchTextBodyValues`, `fetchHTMLBodyValues`,
/// `fetchAllBodyValues` and `maxBodyValueBytes` (EML-12, EML-13). An unknown property or a header
/// form not allowed on its header is `invalidArguments` (EML-07).
pub fn read_body_arguments(
    args: &mut Arguments,
    default_properties: &[&str],
) -> Result<(PropertySelection, FetchOptions), MethodError> {
    let properties: Option<Vec<String>> = args.optional("properties")?;
    let body_properties: Option<Vec<String>> = args.optional("bodyProperties")?;
    let fetch = FetchOptions {
        text: args.defaulted("fetchTextBodyValues", false)?,
        html: args.defaulted("fetchHTMLBodyValues", false)?,
        all: args.defaulted("fetchAllBodyValues", false)?,
        max_bytes: args.defaulted("maxBodyValueBytes", UnsignedInt(0))?.0 as usize,
    };
    let selection = PropertySelection::parse(
        properties.as_deref(),
        body_properties.as_deref(),
        default_properties,
    )
    .map_err(|e| MethodError::InvalidArguments(e.0))?;
    Ok((selection, fetch))
}

/// Renders a parsed message for Email/parse: the message's properties, and the metadata a
/// message outside any mailbox has (EPAR-02: `id`, `mailboxIds`, `keywords`, `receivedAt` and
/// `threadId` null).
pub fn parsed_email(
    email: &Email,
    blob_id: &str,
    selection: &PropertySelection,
    fetch: &FetchOptions,
) -> Map<String, Value> {
    let mut out = mail::render_email(email, blob_id, selection, fetch);
    for (key, property) in &selection.properties {
        use mail::EmailProperty as P;
        let value = match property {
            P::BlobId => Value::from(blob_id),
            P::Size => Value::from(email.size),
            P::Id | P::ThreadId | P::MailboxIds | P::Keywords | P::ReceivedAt => Value::Null,
            _ => continue,
        };
        out.insert(key.clone(), value);
    }
    out
}

/// `Email/parse`.
pub fn parse<C: BlobStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let blob_ids: Vec<Id> = call.args.required("blobIds")?;
    let (selection, fetch) = read_body_arguments(&mut call.args, mail::DEFAULT_PARSE_PROPERTIES)?;
    std::mem::take(&mut call.args).finish()?;
    let max = call.server.limits.max_objects_in_get;
    if blob_ids.len() as u64 > max {
        return Err(MethodError::RequestTooLarge(format!(
            "at most {max} blobs may be parsed at once"
        )));
    }
    let account = call.account_id().to_owned();
    let user = call.principal.user_id.clone();
    let mut parsed = Map::new();
    let mut not_parsable = Vec::new();
    let mut not_found = Vec::new();
    for Id(blob_id) in blob_ids {
        if parsed.contains_key(&blob_id)
            || not_parsable.contains(&blob_id)
            || not_found.contains(&blob_id)
        {
            continue;
        }
        match ctx.blob_read(&account, &user, &blob_id)? {
            None => not_found.push(blob_id),
            Some(bytes) => match Email::parse(&bytes) {
                None => not_parsable.push(blob_id),
                Some(email) => {
                    let value = parsed_email(&email, &blob_id, &selection, &fetch);
                    parsed.insert(blob_id, Value::Object(value));
                }
            },
        }
    }
    let list = |v: Vec<String>| {
        if v.is_empty() {
            Value::Null
        } else {
            Value::from(v)
        }
    };
    let mut out = Map::new();
    out.insert("accountId".into(), Value::from(account));
    out.insert(
        "parsed".into(),
        if parsed.is_empty() {
            Value::Null
        } else {
            Value::Object(parsed)
        },
    );
    out.insert("notParsable".into(), list(not_parsable));
    out.insert("notFound".into(), list(not_found));
    Ok(out)
}
