-- Same schema as migrations/sqlite/0004_nightly.sql; see the comments there.
CREATE TABLE daily_counts (
    day        INTEGER NOT NULL,
    mailbox_id BIGINT  NOT NULL,
    sum        BIGINT  NOT NULL,
    auth_blk   BIGINT  NOT NULL,
    auth_rcv   BIGINT  NOT NULL,
    bounced    BIGINT  NOT NULL,
    deferred   BIGINT  NOT NULL,
    expired    BIGINT  NOT NULL,
    sent       BIGINT  NOT NULL,
    PRIMARY KEY (day, mailbox_id)
);

CREATE TABLE alerts (
    day        INTEGER NOT NULL,
    mailbox    TEXT    NOT NULL,
    rule       TEXT    NOT NULL,
    value      BIGINT  NOT NULL,
    threshold  BIGINT  NOT NULL,
    outbox_id  BIGINT,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (day, mailbox, rule)
);

CREATE TABLE job_runs (
    day         INTEGER NOT NULL,
    job         TEXT    NOT NULL,
    finished_at BIGINT  NOT NULL,
    detail      TEXT,
    PRIMARY KEY (day, job)
);

CREATE INDEX smtp_events_day ON smtp_events (day);

-- A request is for a report, or for a threshold warning (the day's report
-- with the rules crossed); a key names at most one request.
ALTER TABLE requests ADD COLUMN purpose TEXT NOT NULL DEFAULT 'report';
CREATE UNIQUE INDEX requests_key ON requests (idem_key);
