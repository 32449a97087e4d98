-- Mail received by local mailboxes, and what became of it there.
--
-- One row per fact about a message sent to a local mailbox, or kept in
-- one, as a line said it (see src/ingest/received.rs): Postfix's delivery,
-- forward, refusal or hold for the recipient; Dovecot LMTP/LDA and Sieve's
-- outcome; Dovecot mail_log's save, copy, expunge, flag and folder events;
-- the spam filter's verdict. Reports join them by LMTP session, queue ID
-- and Message-ID (src/received.rs). Clustered like smtp_rows: a day's rows
-- together, each mailbox's in time order; retention removes whole days.
CREATE TABLE message_rows (
    day        INTEGER NOT NULL,
    mailbox_id INTEGER NOT NULL,
    sec        INTEGER NOT NULL,
    key        INTEGER NOT NULL,
    usec       INTEGER NOT NULL,
    -- src/ingest/received.rs MsgKind
    kind       INTEGER NOT NULL,
    -- the Message-ID's hash (received::msgid_hash), 1 for a folder's
    -- event, 0 for a row without a Message-ID: `locate` finds a
    -- message's rows of a day by (day, mailbox_id, msgid_hash), a seek in
    -- the primary key, so no index spans the days (an index over all days
    -- would be written all over at every ingest, and at every purge)
    msgid_hash INTEGER NOT NULL,
    host       TEXT    NOT NULL,
    queue_id   TEXT,
    session    TEXT,
    protocol   TEXT,
    message_id TEXT,
    sender     TEXT,
    subject    TEXT,
    client     TEXT,
    folder     TEXT,
    other      TEXT,
    size       INTEGER,
    uid        INTEGER,
    status     TEXT,
    reply      TEXT,
    PRIMARY KEY (day, mailbox_id, msgid_hash, sec, key)
) WITHOUT ROWID;
