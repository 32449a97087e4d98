-- Same schema as migrations/sqlite/0005_web.sql; see the comments there.
CREATE TABLE challenges (
    id         TEXT    PRIMARY KEY,
    code       TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX challenges_expiry ON challenges (expires_at);
