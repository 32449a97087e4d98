-- Rows clustered by day and mailbox.
--
-- `smtp_events` and `access_events` kept rows in arrival order, reached
-- through a (mailbox_id, day, key) index whose pages for a new day lay all
-- over the file, and the reports' order (by time) was not the index's. The
-- tables below are clustered on their primary key (WITHOUT ROWID): a day's
-- rows lie together, ordered by mailbox and then by time, so the ingest of
-- a day writes to one region of the file, a report reads each day of a
-- mailbox as one contiguous range already in order, and retention deletes
-- the oldest day as one contiguous range.
--
-- The primary key (day, mailbox_id, sec, key) keeps one row per key: a
-- key is a hash of the line that includes its whole second, so a line
-- read twice gives the same (day, mailbox, second, key), and two lines
-- never share a key without sharing the second.
--
-- Text that repeats (host names, client addresses, relays, protocols,
-- status codes, reasons, folders, the constant part of a remote reply) is
-- stored once in `texts` and referred to by its id.

-- Repeated text. `hash` is the text's 64-bit hash (see
-- src/store/records.rs); when two texts hash alike, the second is stored
-- under the next probe of its hash, so every value has one row and the
-- unique index stays small whatever the length of the text. A text whose
-- every probe is taken by other texts (only a text made to collide could
-- be) is stored without a hash, as a row of its own.
CREATE TABLE texts (
    id    INTEGER PRIMARY KEY,
    hash  INTEGER UNIQUE,
    value TEXT    NOT NULL
);

-- One row per counted SMTP fact, as smtp_events (see 0001_initial.sql).
-- Columns named like a text refer to texts.id.
CREATE TABLE smtp_rows (
    -- local day YYYYMMDD of the instant, in the configured zone
    day        INTEGER NOT NULL,
    mailbox_id INTEGER NOT NULL,
    -- the instant: Unix seconds, and microseconds within that second
    -- (0 for stamps without a fraction)
    sec        INTEGER NOT NULL,
    key        INTEGER NOT NULL,
    usec       INTEGER NOT NULL,
    -- 1 sent, 2 bounced, 3 deferred, 4 expired, 5 auth_rcv, 6 auth_blk,
    -- 7 blocked by a content filter
    kind       INTEGER NOT NULL,
    host       INTEGER NOT NULL,
    queue_id   TEXT,
    sender_ip  INTEGER,
    relay      INTEGER,
    -- the address itself: most recipients occur a few times a month, too
    -- few for a row in `texts` (and its index entry) to cost less than
    -- the address, and a new text costs the ingest an index insert more
    recipient  TEXT,
    dsn        INTEGER,
    -- the reply with its variable words (numbers, IDs, addresses) taken
    -- out (texts.id), and those words, separated by U+0001; a reply
    -- without a pattern has `reply` NULL and is whole in `reply_args`
    reply      INTEGER,
    reply_args TEXT,
    PRIMARY KEY (day, mailbox_id, sec, key)
) WITHOUT ROWID;

-- One row per access fact, as access_events (see 0002_access.sql).
CREATE TABLE access_rows (
    day         INTEGER NOT NULL,
    mailbox_id  INTEGER NOT NULL,
    sec         INTEGER NOT NULL,
    key         INTEGER NOT NULL,
    usec        INTEGER NOT NULL,
    -- 1 login, 2 logout, 3 auth_failed, 4 message_deleted,
    -- 5 message_marked_deleted, 6 mailbox_deleted
    kind        INTEGER NOT NULL,
    host        INTEGER NOT NULL,
    protocol    INTEGER,
    remote_ip   INTEGER,
    local_ip    INTEGER,
    tls         INTEGER,
    session     TEXT,
    client      INTEGER,
    deleted     INTEGER,
    retained    INTEGER,
    size_bytes  INTEGER,
    in_bytes    INTEGER,
    out_bytes   INTEGER,
    expunged    INTEGER,
    trashed     INTEGER,
    downloaded  INTEGER,
    attempts    INTEGER,
    uid         INTEGER,
    message_id  TEXT,
    folder      INTEGER,
    -- Dovecot's reason, split like a reply: its pattern (texts.id) and
    -- its variable words (times, byte counts), separated by U+0001
    reason      INTEGER,
    reason_args TEXT,
    master_user INTEGER,
    PRIMARY KEY (day, mailbox_id, sec, key)
) WITHOUT ROWID;

-- The old tables' rows are moved into these by `mailtrail migrate` (and
-- every command that opens the database) in steps of their own, each a
-- transaction that copies a slice and deletes it from the old table, so a
-- move that is interrupted goes on where it stopped; the old tables are
-- dropped when empty (see src/store/moving.rs).
