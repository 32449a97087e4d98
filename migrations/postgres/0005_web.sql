-- Same schema as migrations/sqlite/0005_web.sql; see the comments there.
CREATE TABLE web_keys (
    id  INTEGER PRIMARY KEY,
    key BYTEA   NOT NULL
);

CREATE TABLE used_challenges (
    nonce      TEXT    PRIMARY KEY,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX used_challenges_expiry ON used_challenges (expires_at);
