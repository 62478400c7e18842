//! The text a push connection writes for what its slot hands out: a WebSocket StateChange message
//! or an EventSource `state` event.
//!
//! A write to an account reaches every connection of the account, and those that were keeping
//! up take the same states at the same position: the same text. Each thread remembers what it
//! rendered last (the states, the position and the transport, as bytes in room it keeps); when a
//! connection takes the same, the thread hands out that frame again, shared (a reference count),
//! instead of rendering and copying it once per connection (issue 13).

use std::cell::RefCell;

use bytestring::ByteString;

use super::position;
use super::slot::Taken;

/// Which transport a frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A StateChange with `pushState` (RFC 8887 §4.3.5.1).
    WebSocket,
    /// `event: state`, the position as its `id`, the StateChange as its data (RFC 8620 §7.3).
    EventSource,
}

/// One thread's room to render in and the last frame it handed out.
#[derive(Default)]
struct Renderer {
    /// What the frame being asked for is made of, and what the last one was made of.
    key: Vec<u8>,
    last_key: Vec<u8>,
    last: Option<ByteString>,
    text: String,
    position: String,
    plain: String,
}

/// Writes what a frame is made of into `key`. Accounts and type names are UTF-8, which never
/// holds the bytes 0xFE and 0xFF, so they separate fields unambiguously.
fn write_key(key: &mut Vec<u8>, taken: &Taken<'_>, transport: Transport) {
    key.clear();
    key.push(transport as u8);
    for (account, seq) in taken.positions() {
        key.extend_from_slice(account.as_bytes());
        key.push(0xFF);
        key.extend_from_slice(&seq.to_le_bytes());
    }
    key.push(0xFE);
    for (account, data_type, seq) in taken.changed() {
        key.extend_from_slice(account.as_bytes());
        key.push(0xFF);
        key.extend_from_slice(data_type.as_bytes());
        key.push(0xFF);
        key.extend_from_slice(&seq.to_le_bytes());
    }
}

thread_local! {
    static RENDERER: RefCell<Renderer> = RefCell::default();
}

/// The frame for `taken` on `transport`.
pub fn render(taken: &Taken<'_>, transport: Transport) -> ByteString {
    RENDERER.with(|r| {
        let Renderer {
            key,
            last_key,
            last,
            text,
            position,
            plain,
        } = &mut *r.borrow_mut();
        write_key(key, taken, transport);
        if let Some(frame) = last
            && key == last_key
        {
            return frame.clone();
        }
        position.clear();
        position::encode_into(position, plain, taken.positions());
        text.clear();
        match transport {
            Transport::WebSocket => {
                position::write_state_change(text, taken.changed(), Some(position));
            }
            Transport::EventSource => {
                text.push_str("event: state\nid: ");
                text.push_str(position);
                text.push_str("\ndata: ");
                position::write_state_change(text, taken.changed(), None);
                text.push_str("\n\n");
            }
        }
        let frame = ByteString::from(text.as_str());
        *last = Some(frame.clone());
        std::mem::swap(key, last_key);
        frame
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::position::{Changed, Positions};
    use crate::push::slot::{ChangeSlot, TypeFilter};

    fn slot_at(account: &str, seq: i64) -> ChangeSlot {
        let slot = ChangeSlot::new(TypeFilter::All);
        slot.baseline(
            Positions::from([(account.into(), seq)]),
            Changed::new(),
            false,
        );
        slot
    }

    #[test]
    fn connections_at_the_same_position_share_one_frame_and_others_get_their_own() {
        let (one, two, other) = (slot_at("a", 1), slot_at("a", 1), slot_at("b", 1));
        for slot in [&one, &two] {
            slot.offer("a", 2, &["Mailbox".to_string()]);
        }
        other.offer("b", 2, &["Mailbox".to_string()]);
        let render_ws =
            |slot: &ChangeSlot| slot.take_with(|t| render(t, Transport::WebSocket)).unwrap();
        let (first, second, third) = (render_ws(&one), render_ws(&two), render_ws(&other));
        assert_eq!(first, second);
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "the second connection is handed the first one's frame"
        );
        assert_ne!(first, third);
        let again = slot_at("a", 1);
        again.offer("a", 2, &["Mailbox".to_string()]);
        let event = again
            .take_with(|t| render(t, Transport::EventSource))
            .unwrap();
        assert!(
            event.starts_with("event: state\n"),
            "the same states on another transport"
        );
        let push_state = position::encode(&Positions::from([("a".into(), 2)]));
        let expected = format!(
            r#"{{"@type":"StateChange","changed":{{"a":{{"Mailbox":"2"}}}},"pushState":"{push_state}"}}"#
        );
        assert_eq!(&*first, expected.as_str());
    }

    #[test]
    fn an_event_source_frame_is_a_state_event_with_the_position_as_its_id() {
        let slot = slot_at("a", 1);
        slot.offer("a", 2, &["Email".to_string(), "Thread".to_string()]);
        let event = slot
            .take_with(|t| render(t, Transport::EventSource))
            .unwrap();
        let id = position::encode(&Positions::from([("a".into(), 2)]));
        assert_eq!(
            &*event,
            format!(
                "event: state\nid: {id}\ndata: {{\"@type\":\"StateChange\",\"changed\":{{\"a\":{{\"Email\":\"2\",\"Thread\":\"2\"}}}}}}\n\n"
            )
            .as_str()
        );
    }
}
