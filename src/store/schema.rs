//! Diesel table definitions, shared by the SQLite and PostgreSQL backends.
//!
//! Written by hand rather than by `diesel print-schema`: SQLite reports `Integer` where PostgreSQL
//! reports `Int4`, so one generated file could not serve both (../shared/STACK.md, pitfall 20).

diesel::table! {
    users (id) {
        id -> Text,
        name -> Text,
        password_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    accounts (id) {
        id -> Text,
        name -> Text,
        owner_id -> Text,
        seq -> BigInt,
        log_floor -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    account_access (user_id, account_id) {
        user_id -> Text,
        account_id -> Text,
        is_owner -> Bool,
        may_write -> Bool,
    }
}

diesel::table! {
    tokens (id) {
        id -> Text,
        user_id -> Text,
        secret_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    change_log (account_id, data_type, seq, object_id) {
        account_id -> Text,
        data_type -> Text,
        seq -> BigInt,
        object_id -> Text,
        op -> Integer,
    }
}

diesel::table! {
    blobs (id) {
        id -> Text,
        data -> Binary,
        size -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    blob_uploads (account_id, user_id, blob_id) {
        account_id -> Text,
        user_id -> Text,
        blob_id -> Text,
        uploaded_at -> BigInt,
    }
}

diesel::table! {
    blob_refs (account_id, blob_id, owner_type, owner_id) {
        account_id -> Text,
        blob_id -> Text,
        owner_type -> Text,
        owner_id -> Text,
    }
}

diesel::joinable!(accounts -> users (owner_id));
diesel::joinable!(account_access -> accounts (account_id));
diesel::joinable!(tokens -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(users, accounts, account_access, tokens, change_log);
diesel::allow_tables_to_appear_in_same_query!(blobs, blob_uploads, blob_refs, accounts);

diesel::table! {
    mailboxes (account_id, id) {
        account_id -> Text,
        id -> Text,
        name -> Text,
        parent_id -> Nullable<Text>,
        role -> Nullable<Text>,
        sort_order -> BigInt,
        is_subscribed -> Bool,
    }
}

diesel::table! {
    mailbox_threads (account_id, mailbox_id, thread_id) {
        account_id -> Text,
        mailbox_id -> Text,
        thread_id -> Text,
        emails -> BigInt,
        unread -> BigInt,
    }
}

diesel::table! {
    mailbox_counts (account_id, mailbox_id) {
        account_id -> Text,
        mailbox_id -> Text,
        total_emails -> BigInt,
        unread_emails -> BigInt,
        total_threads -> BigInt,
        unread_threads -> BigInt,
    }
}

diesel::table! {
    emails (account_id, id) {
        account_id -> Text,
        id -> Text,
        blob_id -> Text,
        thread_id -> Text,
        size -> BigInt,
        received_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        subject -> Text,
        base_subject -> Text,
        from_sort -> Text,
        to_sort -> Text,
        has_attachment -> Bool,
        preview -> Text,
        summary -> Nullable<Text>,
    }
}

diesel::table! {
    email_mailboxes (account_id, mailbox_id, email_id) {
        account_id -> Text,
        email_id -> Text,
        mailbox_id -> Text,
        received_at -> BigInt,
    }
}

diesel::table! {
    email_keywords (account_id, email_id, keyword) {
        account_id -> Text,
        email_id -> Text,
        keyword -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(mailboxes, emails, email_mailboxes, email_keywords);

diesel::table! {
    email_search (account_id, email_id) {
        account_id -> Text,
        email_id -> Text,
        from_text -> Text,
        to_text -> Text,
        cc_text -> Text,
        bcc_text -> Text,
        subject_text -> Text,
        body_text -> Text,
    }
}

diesel::table! {
    email_message_ids (account_id, message_id, email_id) {
        account_id -> Text,
        message_id -> Text,
        email_id -> Text,
        thread_id -> Text,
        is_own -> Bool,
    }
}

diesel::allow_tables_to_appear_in_same_query!(emails, email_search, email_message_ids);
diesel::allow_tables_to_appear_in_same_query!(emails, blobs);

diesel::table! {
    identities (account_id, id) {
        account_id -> Text,
        id -> Text,
        name -> Text,
        email -> Text,
        reply_to -> Nullable<Text>,
        bcc -> Nullable<Text>,
        text_signature -> Text,
        html_signature -> Text,
        may_delete -> Bool,
    }
}

diesel::table! {
    push_subscriptions (id) {
        id -> Text,
        user_id -> Text,
        device_client_id -> Text,
        url -> Text,
        p256dh -> Nullable<Binary>,
        auth -> Nullable<Binary>,
        verification_code -> Text,
        verified -> Bool,
        expires -> BigInt,
        types -> Nullable<Text>,
        created_at -> BigInt,
        token_hash -> Nullable<Text>,
    }
}

diesel::table! {
    vacation_responses (account_id) {
        account_id -> Text,
        is_enabled -> Bool,
        from_date -> Nullable<Text>,
        to_date -> Nullable<Text>,
        subject -> Nullable<Text>,
        text_body -> Nullable<Text>,
        html_body -> Nullable<Text>,
    }
}

diesel::table! {
    email_submissions (account_id, id) {
        account_id -> Text,
        id -> Text,
        identity_id -> Text,
        email_id -> Text,
        thread_id -> Text,
        envelope -> Text,
        send_at -> BigInt,
        undo_status -> Text,
        delivery_status -> Text,
    }
}

diesel::table! {
    push_deliveries (subscription_id) {
        subscription_id -> Text,
        kind -> Integer,
        changed -> Text,
        revision -> BigInt,
        attempts -> Integer,
        first_pending_at -> BigInt,
        next_attempt_at -> BigInt,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(push_subscriptions -> users (user_id));
diesel::joinable!(push_deliveries -> push_subscriptions (subscription_id));
diesel::allow_tables_to_appear_in_same_query!(push_subscriptions, push_deliveries);
diesel::allow_tables_to_appear_in_same_query!(push_subscriptions, account_access);
diesel::allow_tables_to_appear_in_same_query!(push_subscriptions, users);

diesel::table! {
    push_cursors (subscription_id, account_id) {
        subscription_id -> Text,
        account_id -> Text,
        seq -> BigInt,
    }
}

diesel::joinable!(push_cursors -> push_subscriptions (subscription_id));
diesel::allow_tables_to_appear_in_same_query!(push_cursors, push_subscriptions);

diesel::table! {
    push_creation_windows (user_id) {
        user_id -> Text,
        window_start -> BigInt,
        created -> Integer,
    }
}

// Email/query (src/store/email_query/)
diesel::table! {
    email_headers (account_id, email_id, position) {
        account_id -> Text,
        email_id -> Text,
        position -> BigInt,
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    mailbox_subscriptions (account_id, user_id, mailbox_id) {
        account_id -> Text,
        mailbox_id -> Text,
        user_id -> Text,
        is_subscribed -> Bool,
    }
}

diesel::table! {
    access_epoch (id) {
        id -> Integer,
        epoch -> BigInt,
    }
}

diesel::table! {
    server_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    stream_tickets (hash) {
        hash -> Text,
        user_id -> Text,
        token_hash -> Nullable<Text>,
        expires_at -> BigInt,
    }
}

diesel::table! {
    aliases (address) {
        address -> Text,
        user_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    submission_outbox (account_id, submission_id, recipient) {
        account_id -> Text,
        submission_id -> Text,
        recipient -> Text,
        local_account_id -> Nullable<Text>,
        mail_from -> Text,
        blob_id -> Text,
        queued_at -> BigInt,
        next_attempt_at -> BigInt,
        attempts -> Integer,
        last_reply -> Text,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    vacation_replies (account_id, sender) {
        account_id -> Text,
        sender -> Text,
        replied_at -> BigInt,
    }
}

diesel::joinable!(aliases -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(aliases, users);
