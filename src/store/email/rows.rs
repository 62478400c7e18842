//! The rows of a new email, one type per table, for [`insert_rows!`](crate::store::batch_insert)
//! to write a whole write's worth of each table at once.

use diesel::Insertable;

use crate::store::schema::{email_keywords, email_mailboxes, email_message_ids, emails};

#[derive(Insertable)]
#[diesel(table_name = emails)]
pub(super) struct EmailRow<'a> {
    pub account_id: &'a str,
    pub id: &'a str,
    pub blob_id: &'a str,
    pub thread_id: &'a str,
    pub size: i64,
    pub received_at: i64,
    pub sent_at: Option<i64>,
    pub subject: &'a str,
    pub base_subject: &'a str,
    pub from_sort: &'a str,
    pub to_sort: &'a str,
    pub has_attachment: bool,
    pub preview: &'a str,
    pub summary: Option<&'a str>,
}

impl EmailRow<'_> {
    pub const COLUMNS: usize = 14;
}

#[derive(Insertable)]
#[diesel(table_name = email_mailboxes)]
pub(super) struct MembershipRow<'a> {
    pub account_id: &'a str,
    pub email_id: &'a str,
    pub mailbox_id: &'a str,
    pub received_at: i64,
}

impl MembershipRow<'_> {
    pub const COLUMNS: usize = 4;
}

#[derive(Insertable)]
#[diesel(table_name = email_keywords)]
pub(super) struct KeywordRow<'a> {
    pub account_id: &'a str,
    pub email_id: &'a str,
    pub keyword: &'a str,
}

impl KeywordRow<'_> {
    pub const COLUMNS: usize = 3;
}

#[derive(Insertable)]
#[diesel(table_name = email_message_ids)]
pub(super) struct MessageIdRow<'a> {
    pub account_id: &'a str,
    pub message_id: &'a str,
    pub email_id: &'a str,
    pub thread_id: &'a str,
    pub is_own: bool,
}

impl MessageIdRow<'_> {
    pub const COLUMNS: usize = 5;
}
