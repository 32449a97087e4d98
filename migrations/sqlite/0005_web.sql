-- The web form's verification codes travel in the form itself, sealed
-- with this key (see src/requests/captcha.rs); one row, made on first use.
CREATE TABLE web_keys (
    id  INTEGER PRIMARY KEY,
    key BLOB    NOT NULL
);

-- Codes already used (their nonce), until they expire: a code is good
-- for one post.
CREATE TABLE used_challenges (
    nonce      TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX used_challenges_expiry ON used_challenges (expires_at);
