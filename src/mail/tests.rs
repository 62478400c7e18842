//! The MIME model over the fixtures in tests/fixtures/mime (checklist §25 EML-*, §27 EPAR-*).

use serde_json::{Value, json};

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/mime/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(name: &str) -> Email {
    Email::parse(&fixture(name)).unwrap_or_else(|| panic!("{name} did not parse"))
}

const BLOB: &str = "b0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn render(email: &Email, properties: &[&str], body: Option<&[&str]>, fetch: FetchOptions) -> Value {
    let props: Vec<String> = properties.iter().map(|s| s.to_string()).collect();
    let body: Option<Vec<String>> = body.map(|b| b.iter().map(|s| s.to_string()).collect());
    let selection = PropertySelection::parse(Some(&props), body.as_deref(), &[]).unwrap();
    Value::Object(render::render_email(email, BLOB, &selection, &fetch))
}

#[test]
fn headers_keep_order_case_and_raw_values() {
    // EML-05
    let e = parse("alternative.eml");
    assert_eq!(e.headers[0].name, "From");
    assert_eq!(
        e.headers[0].raw_value(),
        " \"Joe Q. Public\" <joe@example.com>"
    );
    let names: Vec<&str> = e.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "X-Custom").count(), 2);
    assert_eq!(names.last(), Some(&"Content-Type"));
}

#[test]
fn convenience_properties_use_their_header_forms() {
    // EML-09, T-05
    let e = parse("alternative.eml");
    let v = render(
        &e,
        &[
            "messageId",
            "inReplyTo",
            "references",
            "from",
            "to",
            "cc",
            "subject",
            "sentAt",
            "sender",
            "replyTo",
        ],
        None,
        FetchOptions::default(),
    );
    assert_eq!(v["messageId"], json!(["1234@local.machine.example"]));
    assert_eq!(v["inReplyTo"], json!(["1233@local.machine.example"]));
    assert_eq!(v["references"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["from"],
        json!([{"name": "Joe Q. Public", "email": "joe@example.com"}])
    );
    assert_eq!(
        v["to"],
        json!([{"name": "Mary Smith", "email": "mary@example.net"}, {"name": null, "email": "jdoe@example.org"}])
    );
    assert_eq!(v["cc"].as_array().unwrap().len(), 2, "groups are flattened");
    assert_eq!(v["subject"], "Re: [herald] Lunch plans");
    assert_eq!(v["sentAt"], "2014-10-30T06:12:00Z");
    assert_eq!(v["sender"], Value::Null);
    assert_eq!(v["replyTo"], Value::Null);
}

#[test]
fn header_properties_answer_under_the_key_as_requested() {
    // EML-06
    let e = parse("alternative.eml");
    let v = render(
        &e,
        &[
            "header:x-custom",
            "header:X-CUSTOM:all",
            "header:X-Custom:asText:all",
            "header:Cc:asGroupedAddresses",
            "header:List-Post:asURLs",
            "header:Date:asDate",
            "header:X-Missing",
            "header:X-Missing:all",
        ],
        None,
        FetchOptions::default(),
    );
    assert_eq!(v["header:x-custom"], " second value");
    assert_eq!(
        v["header:X-CUSTOM:all"],
        json!([" custom value", " second value"])
    );
    assert_eq!(
        v["header:X-Custom:asText:all"],
        json!(["custom value", "second value"])
    );
    assert_eq!(v["header:Cc:asGroupedAddresses"][0]["name"], "Team");
    assert_eq!(
        v["header:List-Post:asURLs"],
        json!(["mailto:list@example.com"])
    );
    assert_eq!(v["header:Date:asDate"], "2014-10-30T06:12:00Z");
    assert_eq!(v["header:X-Missing"], Value::Null);
    assert_eq!(v["header:X-Missing:all"], json!([]));
}

#[test]
fn metadata_only_selections_do_not_need_the_message() {
    let only = |p: &[&str]| {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        PropertySelection::parse(Some(&p), None, &[])
            .unwrap()
            .needs_message()
    };
    assert!(!only(&["id", "mailboxIds", "keywords", "size"]));
    assert!(only(&["id", "subject"]));
    assert!(only(&["header:X-Foo"]));
    let all = PropertySelection::parse(None, None, DEFAULT_GET_PROPERTIES).unwrap();
    assert!(all.needs_message() && all.has(&EmailProperty::Preview));
}

#[test]
fn forbidden_header_forms_and_unknown_properties_are_rejected() {
    // EML-07
    for bad in ["header:From:asDate", "header:Subject:asMessageIds", "nope"] {
        assert!(
            PropertySelection::parse(Some(&[bad.to_string()]), None, &[]).is_err(),
            "{bad}"
        );
    }
    assert!(
        PropertySelection::parse(None, Some(&["bogus".into()]), DEFAULT_PARSE_PROPERTIES).is_err()
    );
}

#[test]
fn multipart_alternative_splits_into_text_and_html_bodies() {
    // EML-11
    let e = parse("alternative.eml");
    assert_eq!(e.structure.media_type, "multipart/alternative");
    assert_eq!(e.structure.part_id, None);
    assert_eq!(e.text_body.len(), 1);
    assert_eq!(e.html_body.len(), 1);
    assert!(e.attachments.is_empty());
    assert!(!e.has_attachment());
    let text = e.part(&e.text_body[0]).unwrap();
    assert_eq!(text.media_type, "text/plain");
    assert_eq!(text.charset.as_deref(), Some("utf-8"));
    assert_eq!(
        text.content,
        "Hello Mary,\n\nLet's have lunch at the café.".as_bytes()
    );
    assert_eq!(text.size, text.content.len() as u64);
    let v = render(
        &e,
        &[
            "bodyValues",
            "textBody",
            "htmlBody",
            "preview",
            "bodyStructure",
        ],
        None,
        FetchOptions {
            text: true,
            html: true,
            ..Default::default()
        },
    );
    let text_id = v["textBody"][0]["partId"].as_str().unwrap();
    let html_id = v["htmlBody"][0]["partId"].as_str().unwrap();
    assert_eq!(
        v["bodyValues"][text_id]["value"],
        "Hello Mary,\n\nLet's have lunch at the café."
    );
    assert_eq!(v["bodyValues"][text_id]["isTruncated"], false);
    assert!(
        v["bodyValues"][html_id]["value"]
            .as_str()
            .unwrap()
            .starts_with("<html>")
    );
    assert_eq!(v["preview"], "Hello Mary, Let's have lunch at the café.");
    assert_eq!(v["textBody"][0]["blobId"], format!("{BLOB}_{text_id}"));
    // EML-10: multiparts have no partId or blobId; bodyStructure carries subParts.
    assert_eq!(v["bodyStructure"]["partId"], Value::Null);
    assert_eq!(v["bodyStructure"]["blobId"], Value::Null);
    assert_eq!(v["bodyStructure"]["subParts"].as_array().unwrap().len(), 2);
}

#[test]
fn body_values_are_fetched_as_asked_and_truncated_safely() {
    // EML-13
    let e = parse("alternative.eml");
    let none = render(&e, &["bodyValues"], None, FetchOptions::default());
    assert_eq!(none["bodyValues"], json!({}));
    let html_only = render(
        &e,
        &["bodyValues"],
        None,
        FetchOptions {
            html: true,
            ..Default::default()
        },
    );
    assert_eq!(html_only["bodyValues"].as_object().unwrap().len(), 1);
    let cut = render(
        &e,
        &["bodyValues", "textBody", "htmlBody"],
        None,
        FetchOptions {
            all: true,
            max_bytes: 41,
            ..Default::default()
        },
    );
    let text_id = cut["textBody"][0]["partId"].as_str().unwrap();
    let html_id = cut["htmlBody"][0]["partId"].as_str().unwrap();
    // "…the caf" + 'é' would need 42 octets: the cut lands before the 'é'.
    assert_eq!(
        cut["bodyValues"][text_id]["value"],
        "Hello Mary,\n\nLet's have lunch at the caf"
    );
    assert_eq!(cut["bodyValues"][text_id]["isTruncated"], true);
    let html = cut["bodyValues"][html_id]["value"].as_str().unwrap();
    assert!(html.len() <= 41);
    assert!(
        !html.ends_with('<') && html.rfind('<') < html.rfind('>').or(Some(0)).map(|i| i + 1),
        "{html}"
    );
}

#[test]
fn mixed_messages_list_attachments_with_their_part_properties() {
    let e = parse("mixed.eml");
    assert_eq!(e.structure.media_type, "multipart/mixed");
    let v = render(
        &e,
        &["attachments", "htmlBody", "textBody", "hasAttachment"],
        Some(&[
            "partId",
            "blobId",
            "size",
            "name",
            "type",
            "charset",
            "disposition",
            "cid",
            "language",
            "location",
            "header:Content-ID:asMessageIds",
        ]),
        FetchOptions::default(),
    );
    assert_eq!(v["hasAttachment"], true);
    let html = &v["htmlBody"][0];
    assert_eq!(html["type"], "text/html");
    assert_eq!(html["charset"], "us-ascii");
    let atts = v["attachments"].as_array().unwrap();
    let image = atts
        .iter()
        .find(|a| a["type"] == "image/png")
        .expect("inline image listed");
    assert_eq!(image["cid"], "chart@x");
    assert_eq!(image["disposition"], "inline");
    assert_eq!(image["charset"], Value::Null);
    assert_eq!(image["header:Content-ID:asMessageIds"], json!(["chart@x"]));
    let pdf = atts
        .iter()
        .find(|a| a["type"] == "application/pdf")
        .unwrap();
    assert_eq!(pdf["name"], "report.pdf");
    assert_eq!(pdf["disposition"], "attachment");
    assert_eq!(pdf["language"], json!(["en", "de"]));
    assert_eq!(pdf["location"], "http://example.com/report.pdf");
    let pdf_part = e.part(pdf["partId"].as_str().unwrap()).unwrap();
    assert_eq!(pdf_part.content, b"%PDF-1.4 fake pdf bytes \x00\x01\x02");
    assert_eq!(pdf["size"], 27);
    let euro = atts.iter().find(|a| a["type"] == "text/plain").unwrap();
    assert_eq!(euro["name"], "€ rates.txt", "RFC 2231 filename*");
    assert!(
        e.part(image["partId"].as_str().unwrap())
            .unwrap()
            .content
            .starts_with(b"\x89PNG")
    );
    // The text/html body is also the text body when there is no text/plain alternative.
    assert_eq!(v["textBody"][0]["partId"], html["partId"]);
}

#[test]
fn attached_messages_are_leaves_whose_bytes_parse_again() {
    let e = parse("forwarded.eml");
    let att = e.part(&e.attachments[0]).unwrap();
    assert_eq!(att.media_type, "message/rfc822");
    assert!(
        att.sub_parts.is_empty(),
        "bodyStructure does not recurse into message/rfc822"
    );
    let inner = Email::parse(&att.content).unwrap();
    assert_eq!(inner.subject().as_deref(), Some("original"));
    assert_eq!(inner.text_body.len(), 1);
    assert_eq!(
        inner.part(&inner.text_body[0]).unwrap().content,
        b"Inner text."
    );
    // The derived blob id resolves to the same bytes, and one level deeper to the inner part.
    let path = [e.attachments[0].as_str()];
    assert_eq!(
        blob_id::resolve(fixture("forwarded.eml"), &path),
        Some(att.content.clone())
    );
    let deeper = [e.attachments[0].as_str(), inner.text_body[0].as_str()];
    assert_eq!(
        blob_id::resolve(fixture("forwarded.eml"), &deeper).unwrap(),
        b"Inner text."
    );
    assert_eq!(blob_id::resolve(fixture("forwarded.eml"), &["99"]), None);
}

#[test]
fn legacy_charsets_are_decoded_in_bodies_and_headers() {
    let fetch = FetchOptions {
        text: true,
        ..Default::default()
    };
    for (name, body, subject) in [
        ("latin1.eml", "Grüße aus Köln, café", "Grüße"),
        ("windows1252.eml", "“Smart quotes” – and €5", "“Quotes”"),
        ("shiftjis.eml", "こんにちは世界", "こんにちは"),
    ] {
        let e = parse(name);
        let v = render(&e, &["bodyValues", "textBody", "subject"], None, fetch);
        let id = v["textBody"][0]["partId"].as_str().unwrap();
        assert_eq!(
            v["bodyValues"][id]["value"].as_str().unwrap().trim_end(),
            body,
            "{name}"
        );
        assert_eq!(v["bodyValues"][id]["isEncodingProblem"], false, "{name}");
        assert_eq!(v["subject"], subject, "{name}");
    }
}

#[test]
fn rfc2047_encoded_headers_are_decoded_in_text_and_address_forms() {
    let e = parse("encoded_headers.eml");
    let v = render(
        &e,
        &["from", "to", "subject", "header:Subject:asRaw", "sentAt"],
        None,
        FetchOptions::default(),
    );
    assert_eq!(v["from"][0]["name"], "Jürgen Müller");
    assert_eq!(v["to"][0]["name"], "André Pirard");
    assert_eq!(v["subject"], "Café ☕ folded");
    assert!(
        v["header:Subject:asRaw"]
            .as_str()
            .unwrap()
            .contains("=?UTF-8?Q?")
    );
    assert_eq!(v["sentAt"], "2024-01-02T13:30:00Z");
}

#[test]
fn malformed_headers_give_nulls_not_panics() {
    // EML-08: MessageIds and Date give null when they do not parse.
    let e = parse("malformed_headers.eml");
    let v = render(
        &e,
        &[
            "from",
            "to",
            "subject",
            "sentAt",
            "messageId",
            "headers",
            "header:X-Binary",
            "bodyStructure",
            "textBody",
            "preview",
        ],
        None,
        FetchOptions {
            all: true,
            ..Default::default()
        },
    );
    assert_eq!(v["subject"], "ok subject");
    assert_eq!(v["sentAt"], Value::Null);
    assert_eq!(v["messageId"], Value::Null);
    assert!(v["from"].is_array());
    let raw = v["header:X-Binary"].as_str().unwrap();
    assert!(!raw.contains('\0') && raw.contains('\u{fffd}'));
}

#[test]
fn truncated_and_bodiless_messages_still_parse() {
    let e = parse("truncated.eml");
    assert_eq!(e.subject().as_deref(), Some("cut off"));
    assert!(!e.structure.leaves().is_empty());
    let e = parse("no_body.eml");
    assert_eq!(e.subject().as_deref(), Some("headers only"));
    let v = render(
        &e,
        &["textBody", "attachments", "preview", "hasAttachment"],
        None,
        FetchOptions::default(),
    );
    assert_eq!(v["preview"], "");
    assert_eq!(v["hasAttachment"], false);
}

#[test]
fn the_newest_received_field_dates_the_message() {
    let raw = b"Received: from b by c; Tue, 2 Jan 2024 09:00:00 +0100\r\nReceived: from a by b; Mon, 1 Jan 2024 10:00:00 +0000\r\nSubject: x\r\n\r\nbody\r\n";
    let e = Email::parse(raw).unwrap();
    assert_eq!(
        e.received_at().map(header::utc_date),
        Some("2024-01-02T08:00:00Z".into())
    );
    assert_eq!(parse("alternative.eml").received_at(), None);
}

#[test]
fn thread_and_search_data_come_from_the_headers_and_text_body() {
    let e = parse("alternative.eml");
    let t = e.thread_ids();
    assert_eq!(t.message_id, vec!["1234@local.machine.example"]);
    assert_eq!(t.in_reply_to, vec!["1233@local.machine.example"]);
    assert_eq!(t.references.len(), 2);
    assert_eq!(e.base_subject(), "lunch plans");
    let s = e.search_text();
    assert_eq!(s.from, "Joe Q. Public <joe@example.com>");
    assert!(s.to.contains("mary@example.net"));
    assert!(s.body.contains("café"));
    assert_eq!(s.subject, "Re: [herald] Lunch plans");
}

#[test]
fn garbage_and_every_truncation_of_the_fixtures_never_panic() {
    assert!(Email::parse(b"").is_none());
    let mut inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\xff".to_vec(),
        b"::::\r\n\r\n".to_vec(),
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n--x--".to_vec(),
        b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n".to_vec(),
        b"Content-Transfer-Encoding: base64\r\n\r\n====".to_vec(),
        "Subject: =?UTF-8?B?////?=\r\n\r\n".as_bytes().to_vec(),
    ];
    let mut seed: u32 = 0x1234_5678;
    for name in [
        "alternative.eml",
        "mixed.eml",
        "forwarded.eml",
        "shiftjis.eml",
        "malformed_headers.eml",
    ] {
        let full = fixture(name);
        for cut in (0..full.len()).step_by(7) {
            inputs.push(full[..cut].to_vec());
        }
        // Flip bytes pseudo-randomly.
        let mut noisy = full.clone();
        for _ in 0..40 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let i = (seed as usize >> 8) % noisy.len();
            noisy[i] = (seed >> 3) as u8;
        }
        inputs.push(noisy);
    }
    let all: Vec<String> = DEFAULT_GET_PROPERTIES
        .iter()
        .chain(
            [
                "headers",
                "bodyStructure",
                "header:From:asGroupedAddresses:all",
                "header:Date:asDate",
            ]
            .iter(),
        )
        .map(|s| s.to_string())
        .collect();
    let selection = PropertySelection::parse(Some(&all), None, &[]).unwrap();
    for input in inputs {
        if let Some(e) = Email::parse(&input) {
            let v = render::render_email(
                &e,
                BLOB,
                &selection,
                &FetchOptions {
                    all: true,
                    max_bytes: 5,
                    ..Default::default()
                },
            );
            assert!(v.contains_key("preview"));
            let _ = (e.thread_ids(), e.base_subject(), e.search_text());
            for leaf in e.structure.leaves() {
                let id = leaf.part_id.clone().unwrap();
                assert_eq!(
                    blob_id::resolve(input.clone(), &[id.as_str()]).map(|b| b.len()),
                    Some(leaf.content.len())
                );
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Fixtures with random bytes spliced in at random places parse (or not) without a panic,
    /// and every leaf part's blob id resolves to that part's bytes.
    #[test]
    fn spliced_fixtures_never_panic(
        which in 0usize..5,
        splices in proptest::collection::vec((0usize..4096, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24)), 0..6),
    ) {
        let name = ["alternative.eml", "mixed.eml", "forwarded.eml", "truncated.eml", "encoded_headers.eml"][which];
        let mut bytes = fixture(name);
        for (at, insert) in splices {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, insert);
        }
        if let Some(e) = Email::parse(&bytes) {
            let selection = PropertySelection::parse(None, Some(&["partId".into(), "blobId".into(), "headers".into(), "subParts".into()]), DEFAULT_GET_PROPERTIES).unwrap();
            let _ = render::render_email(&e, BLOB, &selection, &FetchOptions { all: true, max_bytes: 7, ..Default::default() });
            for leaf in e.structure.leaves() {
                let id = leaf.part_id.clone().unwrap();
                proptest::prop_assert_eq!(blob_id::resolve(bytes.clone(), &[id.as_str()]), Some(leaf.content.clone()));
            }
        }
    }
}
