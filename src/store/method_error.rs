//! How a store failure reaches a client: the one mapping from the store's errors to JMAP method
//! errors. The cause goes to the log; the client learns only that the store failed, and that the
//! method's writes were rolled back with it.

use super::StoreError;
use super::changelog::ChangesError;
use crate::jmap::error::MethodError;

impl From<StoreError> for MethodError {
    fn from(e: StoreError) -> Self {
        log::error!("store: {e}");
        MethodError::ServerFail("the store failed; nothing was changed".into())
    }
}

impl From<ChangesError> for MethodError {
    fn from(e: ChangesError) -> Self {
        match e {
            ChangesError::CannotCalculate(why) => {
                MethodError::CannotCalculateChanges(why.to_string())
            }
            ChangesError::Store(e) => e.into(),
        }
    }
}
