//! Outgoing mail: the submission outbox's sender, the SMTP relay client and delivery status
//! notifications (issue 11).
//!
//! EmailSubmission/set only queues (`store::submission_outbox`); the [`sender::SubmissionSender`]
//! delivers each recipient (locally, or through the relay with [`relay::send`]), retries
//! temporary failures and reports every outcome as a change of the EmailSubmission. A recipient
//! that fails for good earns the sender a DSN (`crate::mail::dsn`) in their inbox.

pub mod relay;
pub mod sender;

pub use sender::SubmissionSender;
