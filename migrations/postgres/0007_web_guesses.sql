-- Same schema as migrations/sqlite/0007_web_guesses.sql; see the comments there.
CREATE TABLE web_guesses (
    client_ip TEXT   NOT NULL,
    mailbox   TEXT,
    at        BIGINT NOT NULL
);
CREATE INDEX web_guesses_client ON web_guesses (client_ip, at);
CREATE INDEX web_guesses_mailbox ON web_guesses (mailbox, at);
CREATE INDEX web_guesses_at ON web_guesses (at);
