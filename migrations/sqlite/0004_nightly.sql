-- The nightly job's tables.

-- The per-mailbox daily table, rebuilt for a whole day by `aggregate`:
-- running it again gives the same table, with any late lines included.
CREATE TABLE daily_counts (
    day        INTEGER NOT NULL,
    mailbox_id INTEGER NOT NULL,
    sum        INTEGER NOT NULL,
    auth_blk   INTEGER NOT NULL,
    auth_rcv   INTEGER NOT NULL,
    bounced    INTEGER NOT NULL,
    deferred   INTEGER NOT NULL,
    expired    INTEGER NOT NULL,
    sent       INTEGER NOT NULL,
    PRIMARY KEY (day, mailbox_id)
) WITHOUT ROWID;

-- Thresholds crossed: one row per (day, mailbox, rule). The warning mail
-- for a (day, mailbox) is queued under one outbox key, whatever the number
-- of rules it crossed and however often `alerts` runs.
CREATE TABLE alerts (
    day        INTEGER NOT NULL,
    mailbox    TEXT    NOT NULL,
    -- the metric of the rule: sum, auth_blk, ...
    rule       TEXT    NOT NULL,
    value      INTEGER NOT NULL,
    threshold  INTEGER NOT NULL,
    outbox_id  INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (day, mailbox, rule)
);

-- Nightly work done, per local day and job (aggregate, alerts). The
-- scheduler asks which complete days lack a row, so downtime, restarts
-- and DST never skip or repeat a day.
CREATE TABLE job_runs (
    day         INTEGER NOT NULL,
    job         TEXT    NOT NULL,
    finished_at INTEGER NOT NULL,
    -- what it did, for operators: "1234 mailboxes", "3 warned", ...
    detail      TEXT,
    PRIMARY KEY (day, job)
);

-- The per-day scans of aggregation and retention read (day) first.
CREATE INDEX smtp_events_day ON smtp_events (day);

-- A request is for a report, or for a threshold warning (the day's report
-- with the rules crossed); a key names at most one request.
ALTER TABLE requests ADD COLUMN purpose TEXT NOT NULL DEFAULT 'report';
CREATE UNIQUE INDEX requests_key ON requests (idem_key);
