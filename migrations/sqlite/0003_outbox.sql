-- Requests for a report, from every channel (command line, web form, mail,
-- the nightly alerts). One row per request; the worker renders it and
-- queues the mail. `mailbox` is both whose records the report holds and
-- the only address it is ever mailed to.
CREATE TABLE requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox      TEXT    NOT NULL,
    -- smtp | access
    kind         TEXT    NOT NULL,
    -- YYYYMMDD, inclusive
    from_day     INTEGER NOT NULL,
    to_day       INTEGER NOT NULL,
    -- zh-TW | en
    lang         TEXT    NOT NULL,
    -- cli | web | mail | automatic
    channel      TEXT    NOT NULL,
    -- the requester's address (127.0.0.1 for the command line and the
    -- system's own reports)
    client_ip    TEXT    NOT NULL,
    -- unix seconds
    requested_at INTEGER NOT NULL,
    -- pending (not yet rendered) | queued (its mail is in the outbox) | failed
    state        TEXT    NOT NULL,
    -- the key its mail is queued under; NULL means `request:<id>`
    idem_key     TEXT,
    error        TEXT,
    outbox_id    INTEGER
);
CREATE INDEX requests_pending ON requests (state, id);
-- Rate limits count recent requests per mailbox and per client address.
CREATE INDEX requests_mailbox ON requests (mailbox, requested_at);
CREATE INDEX requests_client ON requests (client_ip, requested_at);

-- Every mail mailtrail sends, as the complete message, until the relay
-- takes it. `idem_key` names what the mail is (a request, a day's warning):
-- queueing the same key again adds nothing.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key        TEXT    NOT NULL UNIQUE,
    recipient       TEXT    NOT NULL,
    sender          TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    message         BLOB    NOT NULL,
    -- queued | sent | failed
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- unix seconds; while an attempt runs, the end of its lease
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
