//! How an account hub tells a push session that its slot has something to write.
//!
//! A flag and the session's waker. The hub raises it for every connection of an account on every
//! write, so it must cost no more than waking a task: an actix message (`Recipient::try_send`)
//! allocated an envelope and a queue node per wake, on the hubs' one thread, and the session's
//! mailbox could fill. The session holds the other end, [`Wakes`], as a stream of its context
//! (`ctx.add_stream`); raises that arrive before the session runs merge into one [`Wake`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::task::AtomicWaker;

/// What a session's [`Wakes`] stream yields: its slot has changes to write (or it must close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wake;

/// The hub's end.
#[derive(Debug, Default)]
pub struct WakeSignal {
    raised: AtomicBool,
    /// The session's end was dropped: the session is gone.
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl WakeSignal {
    /// A signal and the session's end of it.
    pub fn pair() -> (Arc<WakeSignal>, Wakes) {
        let signal = Arc::new(WakeSignal::default());
        (signal.clone(), Wakes(signal))
    }

    /// Wakes the session. False when the session is gone (its subscription can be dropped).
    pub fn raise(&self) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
        true
    }
}

/// The session's end: yields a [`Wake`] after each raise (several raises before the session
/// runs give one), and never ends.
#[derive(Debug)]
pub struct Wakes(Arc<WakeSignal>);

impl Stream for Wakes {
    type Item = Wake;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Wake>> {
        // Register first, then look: a raise between the two still wakes the task.
        self.0.waker.register(cx.waker());
        if self.0.raised.swap(false, Ordering::AcqRel) {
            Poll::Ready(Some(Wake))
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use futures_util::task::noop_waker_ref;

    #[test]
    fn raises_before_the_session_runs_give_one_wake_and_a_gone_session_refuses_them() {
        let (signal, mut wakes) = WakeSignal::pair();
        let mut cx = Context::from_waker(noop_waker_ref());
        assert_eq!(wakes.poll_next_unpin(&mut cx), Poll::Pending);
        assert!(signal.raise());
        assert!(signal.raise());
        assert_eq!(wakes.poll_next_unpin(&mut cx), Poll::Ready(Some(Wake)));
        assert_eq!(wakes.poll_next_unpin(&mut cx), Poll::Pending);
        drop(wakes);
        assert!(!signal.raise());
    }

    #[actix_web::test]
    async fn a_raise_from_another_thread_wakes_the_waiting_session() {
        let (signal, mut wakes) = WakeSignal::pair();
        let raiser = std::thread::spawn(move || signal.raise());
        assert_eq!(wakes.next().await, Some(Wake));
        assert!(raiser.join().unwrap());
    }
}
