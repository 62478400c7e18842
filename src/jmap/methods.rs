//! The method table: every JMAP method Herald serves, by wire name. Each wire name appears here
//! once; a handler is a plain function over the request context.

use super::blob::{self, BlobStore};
use super::capability::{CORE, MAIL, SUBMISSION, VACATION_RESPONSE};
use super::changes::ChangeLogStore;
use super::core;
use super::dispatch::{AccountUse, MethodSpec, MethodTable};
use super::email::{self, Email, EmailStore, Thread};
use super::email_copy;
use super::email_parse;
use super::email_query::{self, EmailQueryStore};
use super::identity::{self, Identity, IdentityStore};
use super::mailbox::{self, Mailbox, MailboxStore};
use super::push_subscription::{self, PushSubscriptionStore};
use super::standard;
use super::submission::{self, Submission, SubmissionStore};
use super::vacation::{self, VacationResponse, VacationStore};

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
        m("Email/parse", MAIL, Read, email_parse::parse::<C>),
        m("Email/copy", MAIL, Write, email_copy::copy::<C>),
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
