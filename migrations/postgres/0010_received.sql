-- Mail received by local mailboxes, and what became of it there: see
-- migrations/sqlite/0010_received.sql. Partitioned by day like smtp_rows
-- (src/store/partitions.rs makes and drops the partitions).
CREATE TABLE message_rows (
    sec        BIGINT   NOT NULL,
    key        BIGINT   NOT NULL,
    msgid_hash BIGINT   NOT NULL,
    size       BIGINT,
    uid        BIGINT,
    day        INTEGER  NOT NULL,
    mailbox_id INTEGER  NOT NULL,
    usec       INTEGER  NOT NULL,
    kind       SMALLINT NOT NULL,
    host       TEXT     NOT NULL,
    queue_id   TEXT,
    session    TEXT,
    protocol   TEXT,
    message_id TEXT,
    sender     TEXT,
    subject    TEXT,
    client     TEXT,
    folder     TEXT,
    other      TEXT,
    status     TEXT,
    reply      TEXT,
    -- `locate` seeks (day, mailbox_id, msgid_hash) in each day's
    -- partition: see migrations/sqlite/0010_received.sql
    PRIMARY KEY (day, mailbox_id, msgid_hash, sec, key)
) PARTITION BY RANGE (day);
