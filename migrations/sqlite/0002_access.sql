-- Mailbox access events (Dovecot): logins, logouts with what the session
-- did, failed logins, deletions. One row per counted fact, keyed like
-- smtp_events so a line read twice is stored once.
CREATE TABLE access_events (
    id          INTEGER PRIMARY KEY,
    -- mailboxes.id (not declared as a foreign key; see smtp_events)
    mailbox_id  INTEGER NOT NULL,
    day         INTEGER NOT NULL,
    key         INTEGER NOT NULL,
    time_us     INTEGER NOT NULL,
    -- 1 login, 2 logout, 3 auth_failed, 4 message_deleted,
    -- 5 message_marked_deleted, 6 mailbox_deleted
    kind        INTEGER NOT NULL,
    host        TEXT    NOT NULL,
    protocol    TEXT,
    remote_ip   TEXT,
    local_ip    TEXT,
    tls         INTEGER,
    session     TEXT,
    client      TEXT,
    deleted     INTEGER,
    retained    INTEGER,
    size_bytes  INTEGER,
    in_bytes    INTEGER,
    out_bytes   INTEGER,
    expunged    INTEGER,
    trashed     INTEGER,
    downloaded  INTEGER,
    -- failed logins: attempts in the refused session
    attempts    INTEGER,
    uid         INTEGER,
    message_id  TEXT,
    folder      TEXT,
    reason      TEXT
);
CREATE UNIQUE INDEX access_events_mailbox ON access_events (mailbox_id, day, key);
