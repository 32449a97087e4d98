-- Verification codes of the web form: one per form shown, used once,
-- valid until `expires_at` (unix seconds).
CREATE TABLE challenges (
    id         TEXT    PRIMARY KEY,
    code       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX challenges_expiry ON challenges (expires_at);
