//! Refuses an oversized WebSocket message as soon as a frame header announces it.
//!
//! actix-http's frame parser compares a frame's length with its limit only once the whole frame
//! has arrived, so a header announcing 2^63 bytes made the server buffer everything the peer sent
//! after it. [`FrameLengthGuard`] sits between the request payload and actix's decoder: it follows
//! the frame structure of the raw bytes (RFC 6455 §5.2) without buffering payloads, and ends the
//! stream with an error when a data frame, or a fragmented message so far, declares more than the
//! limit. The session then closes with 1009 (RFC 6455 §7.4.1), and nothing more is read.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// The longest frame header: 2 bytes, a 64-bit extended length, a masking key.
const MAX_HEADER: usize = 14;

/// Where the scanner is in the byte stream.
#[derive(Debug)]
enum Position {
    /// Collecting a frame header (bytes so far).
    Header(Vec<u8>),
    /// Skipping this many payload bytes of the current frame.
    Payload(u64),
}

/// Follows frame boundaries in a WebSocket byte stream and adds up fragmented messages.
#[derive(Debug)]
pub struct FrameScanner {
    max_message: u64,
    position: Position,
    /// Bytes of the data message being fragmented, while its final frame is outstanding.
    message_so_far: u64,
}

/// A frame header announced more than the limit.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// Bytes of the input that precede the offending frame (safe to pass on).
    pub accepted: usize,
}

impl FrameScanner {
    pub fn new(max_message: usize) -> FrameScanner {
        FrameScanner {
            max_message: max_message as u64,
            position: Position::Header(Vec::with_capacity(MAX_HEADER)),
            message_so_far: 0,
        }
    }

    /// Scans `chunk`; an error says where the oversized frame begins.
    pub fn scan(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        let mut at = 0;
        // Where the frame whose header is being read began in this chunk (0 when it began in an
        // earlier one: then nothing of this chunk precedes it).
        let mut frame_start = 0;
        while at < chunk.len() {
            match &mut self.position {
                Position::Payload(left) => {
                    let step = (*left).min((chunk.len() - at) as u64);
                    *left -= step;
                    at += step as usize;
                    if *left == 0 {
                        self.position = Position::Header(Vec::with_capacity(MAX_HEADER));
                        frame_start = at;
                    }
                }
                Position::Header(header) => {
                    header.push(chunk[at]);
                    at += 1;
                    let Some((fin, opcode, length, header_len)) = parse_header(header) else {
                        continue;
                    };
                    debug_assert_eq!(header_len, header.len());
                    // Control frames (opcode ≥ 8) carry at most 125 bytes and are never
                    // fragmented (RFC 6455 §5.5).
                    if opcode >= 8 && length > 125 {
                        return Err(TooLarge {
                            accepted: frame_start,
                        });
                    }
                    if opcode < 8 {
                        let total = if opcode == 0 {
                            self.message_so_far.saturating_add(length)
                        } else {
                            length
                        };
                        if total > self.max_message {
                            return Err(TooLarge {
                                accepted: frame_start,
                            });
                        }
                        self.message_so_far = if fin { 0 } else { total };
                    }
                    if length == 0 {
                        header.clear();
                        frame_start = at;
                    } else {
                        self.position = Position::Payload(length);
                    }
                }
            }
        }
        Ok(())
    }
}

/// (FIN, opcode, payload length, header length) once `header` holds a whole header.
fn parse_header(header: &[u8]) -> Option<(bool, u8, u64, usize)> {
    let (&first, &second) = (header.first()?, header.get(1)?);
    let masked = second & 0x80 != 0;
    let mask_len = if masked { 4 } else { 0 };
    let (length, length_len) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*header.get(2)?, *header.get(3)?])),
            2,
        ),
        127 => {
            let bytes: [u8; 8] = header.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 8)
        }
        n => (u64::from(n), 0),
    };
    let header_len = 2 + length_len + mask_len;
    (header.len() == header_len).then_some((first & 0x80 != 0, first & 0x0f, length, header_len))
}

/// The request payload of a WebSocket, cut off at the first oversized frame header.
pub struct FrameLengthGuard<S> {
    inner: S,
    scanner: FrameScanner,
    /// Set when the guard cut the stream, so the session can close with 1009.
    refused: Rc<Cell<bool>>,
    /// The error to yield after passing on the bytes that preceded the offending frame.
    pending_error: bool,
    done: bool,
}

impl<S> FrameLengthGuard<S> {
    /// Wraps `inner`; `refused` turns true when an oversized message was refused.
    pub fn new(inner: S, max_message: usize, refused: Rc<Cell<bool>>) -> Self {
        FrameLengthGuard {
            inner,
            scanner: FrameScanner::new(max_message),
            refused,
            pending_error: false,
            done: false,
        }
    }
}

impl<S> Stream for FrameLengthGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.pending_error {
            this.done = true;
            return Poll::Ready(Some(Err(PayloadError::Overflow)));
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => match this.scanner.scan(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(TooLarge { accepted }) => {
                    this.refused.set(true);
                    this.pending_error = true;
                    Poll::Ready(Some(Ok(chunk.slice(..accepted))))
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&len.to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(b'x', len.min(1 << 16) as usize));
        f
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_chunking() {
        let mut bytes = frame(true, 1, 10);
        bytes.extend(frame(true, 9, 3));
        bytes.extend(frame(true, 1, 300));
        bytes.extend(frame(true, 1, 0));
        for chunk_size in [1, 2, 3, 7, 14, 1000] {
            let mut s = FrameScanner::new(300);
            for chunk in bytes.chunks(chunk_size) {
                assert_eq!(s.scan(chunk), Ok(()), "chunks of {chunk_size}");
            }
        }
    }

    #[test]
    fn a_header_announcing_too_much_is_refused_before_its_payload() {
        let mut s = FrameScanner::new(1000);
        let good = frame(true, 1, 5);
        let mut bytes = good.clone();
        bytes.extend_from_slice(&[
            0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4,
        ]);
        assert_eq!(
            s.scan(&bytes),
            Err(TooLarge {
                accepted: good.len()
            })
        );
    }

    #[test]
    fn a_fragmented_message_is_refused_when_its_fragments_add_up_to_too_much() {
        let mut s = FrameScanner::new(100);
        assert_eq!(s.scan(&frame(false, 1, 60)), Ok(()));
        assert_eq!(
            s.scan(&frame(true, 9, 2)),
            Ok(()),
            "a ping between fragments"
        );
        assert_eq!(s.scan(&frame(false, 0, 40)), Ok(()));
        assert_eq!(s.scan(&frame(true, 0, 1)), Err(TooLarge { accepted: 0 }));
    }

    #[test]
    fn a_finished_message_starts_the_count_again() {
        let mut s = FrameScanner::new(100);
        assert_eq!(s.scan(&frame(false, 1, 60)), Ok(()));
        assert_eq!(s.scan(&frame(true, 0, 40)), Ok(()));
        assert_eq!(s.scan(&frame(true, 1, 100)), Ok(()));
    }

    #[test]
    fn a_control_frame_over_125_bytes_is_refused() {
        let mut s = FrameScanner::new(1000);
        assert_eq!(s.scan(&frame(true, 9, 126)), Err(TooLarge { accepted: 0 }));
    }
}
