//! The context method handlers run in: one store connection for the request's whole run, and the
//! writes it committed, published by the dispatcher when the request ends.
//!
//! Each object's store module (`store::mailbox`, …) implements the store trait that its
//! `jmap::<object>` module declares for this type.

use super::{AnyConnection, Committed, PooledConnection, StoreError, changelog};

/// What a method handler works with.
pub struct StoreContext {
    conn: PooledConnection,
    /// Writes committed so far in this request, in order.
    pub committed: Vec<Committed>,
}

impl StoreContext {
    pub fn new(conn: PooledConnection) -> Self {
        StoreContext {
            conn,
            committed: Vec::new(),
        }
    }

    /// The store connection.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Runs one write to an account through the change log and remembers what it committed.
    pub fn write<T>(
        &mut self,
        account_id: &str,
        body: impl FnOnce(&mut changelog::WriteTxn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (value, committed) = changelog::write(&mut self.conn, account_id, body)?;
        if let Some(c) = committed {
            self.committed.push(c);
        }
        Ok(value)
    }

    /// [`StoreContext::write`] whose commit is on disk when it returns (`store::durable`): for
    /// what the client hands over for Herald alone to keep, such as a message queued to be sent.
    pub fn write_durably<T>(
        &mut self,
        account_id: &str,
        body: impl FnOnce(&mut changelog::WriteTxn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (value, committed) = super::durable::write(&mut self.conn, |conn| {
            changelog::write(conn, account_id, body)
        })?;
        if let Some(c) = committed {
            self.committed.push(c);
        }
        Ok(value)
    }
}
