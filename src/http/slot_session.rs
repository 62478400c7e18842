//! What the WebSocket and EventSource sessions share: writing what their [`ChangeSlot`] holds
//! as one frame, at once unless the connection's StateChange budget is spent.

use std::time::Instant;

use actix::{Actor, AsyncContext};
use bytestring::ByteString;

use crate::push::budget::StateChangeBudget;
use crate::push::frame::{self, Transport};
use crate::push::slot::ChangeSlot;

/// A push session that writes StateChanges from a [`ChangeSlot`].
pub trait SlotSession: Actor<Context: AsyncContext<Self>> + Sized {
    /// How its frames are rendered.
    const TRANSPORT: Transport;

    /// Its slot, its budget (`push.max_state_changes_per_sec`) and whether a flush already
    /// waits for the budget's next token.
    fn pacing(&mut self) -> (&ChangeSlot, &mut StateChangeBudget, &mut bool);

    /// Writes one rendered frame, and does what the transport does after one.
    fn write_frame(&mut self, frame: ByteString, ctx: &mut Self::Context);

    /// Writes what the slot holds as one frame, at once unless the budget is spent (then when
    /// it has a token again).
    ///
    /// Both sessions run inside their response body, which actix stops polling while earlier
    /// output is unwritten (the peer does not read, the socket buffer is full: STACK.md pitfall
    /// 15), so this does not run then: changes merge in the slot and go out together when the
    /// socket drains.
    fn flush(&mut self, ctx: &mut Self::Context) {
        let (slot, budget, scheduled) = self.pacing();
        if *scheduled || !slot.has_pending() {
            return;
        }
        if let Err(wait) = budget.spend(Instant::now()) {
            *scheduled = true;
            ctx.run_later(wait, |act, ctx| {
                *act.pacing().2 = false;
                act.flush(ctx);
            });
            return;
        }
        if let Some(frame) = slot.take_with(|taken| frame::render(taken, Self::TRANSPORT)) {
            self.write_frame(frame, ctx);
        }
    }
}
