-- Same schema as migrations/sqlite/0001_initial.sql; see the comments there.
CREATE TABLE smtp_events (
    mailbox   TEXT     NOT NULL,
    day       INTEGER  NOT NULL,
    key       BIGINT   NOT NULL,
    time_us   BIGINT   NOT NULL,
    kind      INTEGER  NOT NULL,
    host      TEXT     NOT NULL,
    queue_id  TEXT,
    sender_ip TEXT,
    relay     TEXT,
    recipient TEXT,
    dsn       TEXT,
    response  TEXT,
    PRIMARY KEY (mailbox, day, key)
);

CREATE TABLE ingest_sources (
    fingerprint BIGINT PRIMARY KEY,
    path        TEXT   NOT NULL,
    offset_bytes BIGINT NOT NULL,
    year_state  TEXT,
    updated_us  BIGINT NOT NULL
);

CREATE TABLE ingest_state (
    agent      TEXT PRIMARY KEY,
    state      BYTEA  NOT NULL,
    updated_us BIGINT NOT NULL
);
