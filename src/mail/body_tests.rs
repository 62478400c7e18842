//! What a message's parts give its body values, blobs, preview and search text: transfer
//! decoding (RFC 2045 §6.8), which parts are text (RFC 8621 §4.1.4) and part names (RFC 2231).

use super::*;

fn message(lines: &[&str]) -> Email {
    Email::parse(lines.join("\r\n").as_bytes()).unwrap()
}

fn single(cte: &str, body: &str) -> Email {
    message(&[
        "From: a@example.com",
        "Subject: b64",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        &format!("Content-Transfer-Encoding: {cte}"),
        "",
        body,
    ])
}

#[test]
fn lenient_base64_keeps_every_octet_of_body_values_blobs_and_sizes() {
    for (cte, body) in [
        ("base64", "SGVsbG8gV29ybGQ\r\n"),
        ("base64", "SGVsbG8g*V29y\r\nbGQ=\r\n"),
        ("base64", "SGVsbG8gV29ybGQ=\r\n\r\n-- \r\nList footer\r\n"),
        ("BASE64", "SGVsbG8g \r\nV29ybGQ= \r\n"),
    ] {
        let e = single(cte, body);
        let part = e.part("1").unwrap();
        assert_eq!(part.content, b"Hello World", "{body:?}");
        assert_eq!(part.size, 11, "{body:?}");
        let value = part.body_value(0);
        assert_eq!(value.value, "Hello World", "{body:?}");
        assert!(!value.is_encoding_problem, "{body:?}");
        assert_eq!(e.search_text().body, "Hello World", "{body:?}");
    }
    // A binary attachment without padding: its blob keeps its last octets.
    let e = message(&[
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "see attached",
        "--b",
        "Content-Type: application/octet-stream; name=x.bin",
        "Content-Transfer-Encoding: base64",
        "",
        "AAEC/w",
        "--b--",
        "",
    ]);
    let attachment = e.part(&e.attachments[0]).unwrap();
    assert_eq!(attachment.content, [0, 1, 2, 255]);
    assert_eq!(attachment.size, 4);
    assert!(!attachment.is_encoding_problem);
}

#[test]
fn inline_images_in_the_text_body_feed_no_preview_or_search_text() {
    // An iPhone's layout: the photo sits between two text parts, so RFC 8621 §4.1.4 puts it in
    // textBody; its octets are not text.
    let e = message(&[
        "From: a@example.com",
        "Subject: photo",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=Apple",
        "",
        "--Apple",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "",
        "",
        "--Apple",
        "Content-Type: image/jpeg; name=IMG_0001.jpeg",
        "Content-Disposition: inline; filename=IMG_0001.jpeg",
        "Content-Transfer-Encoding: base64",
        "",
        "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8U",
        "--Apple",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Sent from my iPhone",
        "--Apple--",
        "",
    ]);
    assert_eq!(e.text_body, ["2", "3", "4"]);
    assert_eq!(e.preview(), "Sent from my iPhone");
    assert_eq!(e.search_text().body.trim(), "Sent from my iPhone");
}

#[test]
fn block_elements_of_an_html_body_separate_the_words_of_its_preview_and_search_text() {
    let e = message(&[
        "Subject: blocks",
        "Content-Type: text/html; charset=utf-8",
        "",
        "<html><body><div>w1a</div><div>w1b</div><table><tr><td>w3a</td><td>w3b</td></tr>\
         </table><ul><li>w4a</li><li>w4b</li></ul><h1>w5a</h1><blockquote>w8a</blockquote>w8b\
         <hr>w9b</body></html>",
    ]);
    let words = "w1a w1b w3a w3b w4a w4b w5a w8a w8b w9b";
    assert_eq!(e.preview(), words);
    let body = e.search_text().body;
    assert_eq!(body.split_whitespace().collect::<Vec<_>>().join(" "), words);
}

#[test]
fn the_rfc2231_name_wins_over_the_plain_one_in_either_order() {
    let e = message(&[
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "body",
        "--b",
        "Content-Type: application/pdf; name=\"r_el.pdf\"",
        "Content-Disposition: attachment; filename=\"r_el.pdf\"; filename*=UTF-8''r%C3%A9el.pdf",
        "",
        "data",
        "--b",
        "Content-Type: application/pdf; name=\"r_el.pdf\"",
        "Content-Disposition: attachment; filename*=UTF-8''r%C3%A9el.pdf; filename=\"r_el.pdf\"",
        "",
        "data",
        "--b",
        "Content-Type: application/pdf; name=\"ct.pdf\"",
        "Content-Disposition: attachment; filename=\"disp.pdf\"",
        "",
        "data",
        "--b",
        "Content-Type: application/pdf; name*=UTF-8''ct%C3%A9.pdf; name=\"ct.pdf\"",
        "Content-Disposition: attachment",
        "",
        "data",
        "--b",
        "Content-Type: application/pdf; name=\"=?UTF-8?Q?a=C3=A9.pdf?=\"",
        "",
        "data",
        "--b",
        "Content-Type: application/pdf",
        "Content-Disposition: attachment; filename*=UTF-8''; filename=plain.pdf",
        "",
        "data",
        "--b--",
        "",
    ]);
    let names: Vec<Option<&str>> = e
        .attachments
        .iter()
        .map(|id| e.part(id).unwrap().name.as_deref())
        .collect();
    assert_eq!(
        names,
        [
            Some("réel.pdf"),
            Some("réel.pdf"),
            Some("disp.pdf"),
            Some("cté.pdf"),
            Some("aé.pdf"),
            Some("plain.pdf")
        ]
    );
}

#[test]
fn text_attachments_and_attached_messages_are_searched_but_not_images_or_html_alternatives() {
    let e = message(&[
        "From: a@example.com",
        "Subject: with attachments",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=\"m\"",
        "",
        "--m",
        "Content-Type: multipart/alternative; boundary=\"a\"",
        "",
        "--a",
        "Content-Type: text/plain",
        "",
        "plainword",
        "--a",
        "Content-Type: text/html",
        "",
        "<p>plainword htmlonlyword</p>",
        "--a--",
        "--m",
        "Content-Type: text/plain; name=\"notes.txt\"",
        "Content-Disposition: attachment; filename=\"notes.txt\"",
        "",
        "attachedword",
        "--m",
        "Content-Type: message/rfc822",
        "",
        "Subject: innersubject",
        "Content-Type: text/plain",
        "",
        "innerword",
        "--m",
        "Content-Type: image/png",
        "Content-Disposition: attachment; filename=\"x.png\"",
        "Content-Transfer-Encoding: base64",
        "",
        "aW1hZ2V3b3Jk",
        "--m--",
        "",
    ]);
    let body = e.search_text().body;
    for word in ["plainword", "attachedword", "innersubject", "innerword"] {
        assert!(body.contains(word), "{word}: {body:?}");
    }
    for word in ["htmlonlyword", "imageword"] {
        assert!(!body.contains(word), "{word}: {body:?}");
    }
}

#[test]
fn an_attachments_searched_text_is_capped() {
    let big = "word ".repeat(40_000);
    let e = message(&[
        "Subject: big",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=\"m\"",
        "",
        "--m",
        "Content-Type: text/plain",
        "",
        "body",
        "--m",
        "Content-Type: text/plain",
        "Content-Disposition: attachment; filename=\"log.txt\"",
        "",
        &big,
        "--m--",
        "",
    ]);
    let body = e.search_text().body;
    assert!(body.len() <= 4 + 2 + ATTACHMENT_TEXT_MAX, "{}", body.len());
    assert!(body.len() > ATTACHMENT_TEXT_MAX / 2);
}
