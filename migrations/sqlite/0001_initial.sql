-- Mailboxes that have events, numbered: events refer to the number, which
-- keeps the per-mailbox index small and its comparisons cheap.
CREATE TABLE mailboxes (
    id      INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE
);

-- SMTP events per local mailbox: one row per counted fact (a delivery
-- status, an expiry, an authenticated submission, a refusal).
-- Times are integer microseconds since the Unix epoch (UTC); `day` is the
-- local day of that instant in the configured zone, as YYYYMMDD.
CREATE TABLE smtp_events (
    id         INTEGER PRIMARY KEY,
    -- mailboxes.id. Not declared as a foreign key: SQLite's check of one
    -- costs more than the rest of an insert, and only the ingest writes
    -- here, always with an id it has just read or created.
    mailbox_id INTEGER NOT NULL,
    day        INTEGER NOT NULL,
    -- Identity of the source line (and recipient and role): a line read
    -- twice gives the same key, and the unique index keeps one row.
    key        INTEGER NOT NULL,
    time_us    INTEGER NOT NULL,
    -- 1 sent, 2 bounced, 3 deferred, 4 expired, 5 auth_rcv, 6 auth_blk
    kind       INTEGER NOT NULL,
    host       TEXT    NOT NULL,
    queue_id   TEXT,
    sender_ip  TEXT,
    relay      TEXT,
    recipient  TEXT,
    dsn        TEXT,
    response   TEXT
);
-- Every per-mailbox question is answered from this index, and it keeps one
-- row per key: a line always yields the same mailbox and day, so (mailbox,
-- day, key) is unique exactly when the key is. One index does both jobs,
-- which spares every insert a third B-tree.
CREATE UNIQUE INDEX smtp_events_mailbox ON smtp_events (mailbox_id, day, key);

-- How far each input has been read. A source is known by a fingerprint of
-- its first line, so a renamed (rotated) or compressed file keeps its
-- checkpoint. Written in the same transaction as the rows it covers.
CREATE TABLE ingest_sources (
    fingerprint  INTEGER PRIMARY KEY,
    path         TEXT    NOT NULL,
    offset_bytes INTEGER NOT NULL,
    year_state   TEXT,
    updated_us   INTEGER NOT NULL
);

-- What the correlator remembers between lines (messages in flight),
-- saved with every checkpoint so a resumed ingest continues exactly.
CREATE TABLE ingest_state (
    agent      TEXT PRIMARY KEY,
    state      BLOB    NOT NULL,
    updated_us INTEGER NOT NULL
);
