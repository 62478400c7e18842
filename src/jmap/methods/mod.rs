//! The method table: every JMAP method Herald serves, by wire name. Each wire name appears here
//! once; a handler is a plain function over the request context.
//!
//! One module per data type below; the standard methods of the types that can use them are
//! `crate::jmap::standard`'s, named here with the type's descriptor.

pub mod blob;
pub mod core;
pub mod email;
pub mod email_query;
pub mod identity;
pub mod mailbox;
pub mod push_subscription;
pub mod submission;
pub mod vacation;

use crate::jmap::capability::{CORE, MAIL, SUBMISSION, VACATION_RESPONSE};
use crate::jmap::changes::ChangeLogStore;
use crate::jmap::dispatch::{AccountUse, MethodSpec, MethodTable};
use crate::jmap::standard;
use blob::BlobStore;
use email::{Email, EmailStore, Thread};
use email_query::EmailQueryStore;
use identity::{Identity, IdentityStore};
use mailbox::{Mailbox, MailboxStore};
use push_subscription::PushSubscriptionStore;
use submission::{Submission, SubmissionStore};
use vacation::{VacationResponse, VacationStore};

/// Everything a context must provide to serve every method.
pub trait Store:
    ChangeLogStore
    + MailboxStore
    + BlobStore
    + PushSubscriptionStore
    + EmailStore
    + IdentityStore
    + VacationStore
    + SubmissionStore
    + EmailQueryStore
{
}
impl<T> Store for T where
    T: ChangeLogStore
        + MailboxStore
        + BlobStore
        + PushSubscriptionStore
        + EmailStore
        + IdentityStore
        + VacationStore
        + SubmissionStore
        + EmailQueryStore
{
}

/// Builds the table for a context type `C`.
#[expect(
    clippy::too_many_lines,
    reason = "the method table: one row per method"
)]
pub fn method_table<C: Store>() -> MethodTable<C> {
    use AccountUse::{None, Read, Write};
    let m = |name, capability, account, handler| MethodSpec {
        name,
        capability,
        account,
        handler,
    };
    MethodTable::new(vec![
        m("Core/echo", CORE, None, core::echo::<C>),
        m("Mailbox/get", MAIL, Read, standard::get::<C, Mailbox>),
        m(
            "Mailbox/changes",
            MAIL,
            Read,
            standard::changes::<C, Mailbox>,
        ),
        m("Mailbox/query", MAIL, Read, standard::query::<C, Mailbox>),
        m(
            "Mailbox/queryChanges",
            MAIL,
            Read,
            standard::query_changes::<C, Mailbox>,
        ),
        m("Mailbox/set", MAIL, Write, mailbox::set::<C>),
        m("Email/get", MAIL, Read, email::get::<C>),
        m("Email/changes", MAIL, Read, standard::changes::<C, Email>),
        m("Email/set", MAIL, Write, email::set::<C>),
        m("Email/import", MAIL, Write, email::import::<C>),
        m("Thread/get", MAIL, Read, email::thread_get::<C>),
        m("Thread/changes", MAIL, Read, standard::changes::<C, Thread>),
        m(
            "Identity/get",
            SUBMISSION,
            Read,
            standard::get::<C, Identity>,
        ),
        m(
            "Identity/changes",
            SUBMISSION,
            Read,
            standard::changes::<C, Identity>,
        ),
        m("Identity/set", SUBMISSION, Write, identity::set::<C>),
        m(
            "EmailSubmission/get",
            SUBMISSION,
            Read,
            standard::get::<C, Submission>,
        ),
        m(
            "EmailSubmission/changes",
            SUBMISSION,
            Read,
            standard::changes::<C, Submission>,
        ),
        m(
            "EmailSubmission/query",
            SUBMISSION,
            Read,
            standard::query::<C, Submission>,
        ),
        m(
            "EmailSubmission/queryChanges",
            SUBMISSION,
            Read,
            standard::query_changes::<C, Submission>,
        ),
        m(
            "EmailSubmission/set",
            SUBMISSION,
            Write,
            submission::set::<C>,
        ),
        m(
            "VacationResponse/get",
            VACATION_RESPONSE,
            Read,
            standard::get::<C, VacationResponse>,
        ),
        m(
            "VacationResponse/set",
            VACATION_RESPONSE,
            Write,
            vacation::set::<C>,
        ),
        m("Blob/copy", CORE, Write, blob::copy::<C>),
        m("Email/parse", MAIL, Read, email::parse::parse::<C>),
        m("Email/copy", MAIL, Write, email::copy::copy::<C>),
        m("Email/query", MAIL, Read, email_query::query::<C>),
        m(
            "Email/queryChanges",
            MAIL,
            Read,
            email_query::query_changes::<C>,
        ),
        m(
            "SearchSnippet/get",
            MAIL,
            Read,
            email_query::search_snippet_get::<C>,
        ),
        // RFC 8620 §7.2: not account-scoped.
        m(
            "PushSubscription/get",
            CORE,
            None,
            push_subscription::get::<C>,
        ),
        m(
            "PushSubscription/set",
            CORE,
            None,
            push_subscription::set::<C>,
        ),
    ])
}
