-- Posts of the web form whose verification failed (a wrong, used or
-- expired code, no proof of work), for the guess limits: per client
-- address and per mailbox asked for (NULL when what was typed is not an
-- address). Rows older than a day are purged with the used codes.
CREATE TABLE web_guesses (
    client_ip TEXT    NOT NULL,
    mailbox   TEXT,
    at        INTEGER NOT NULL
);
CREATE INDEX web_guesses_client ON web_guesses (client_ip, at);
CREATE INDEX web_guesses_mailbox ON web_guesses (mailbox, at);
CREATE INDEX web_guesses_at ON web_guesses (at);
