-- Complete days' access rows, packed: one row per mailbox and day holding
-- all of that mailbox's access rows of the day (src/store/packs.rs has
-- the encoding). The nightly job moves a complete day's rows from
-- access_rows into it; reports read a day's pack and its plain rows
-- together. Clustered by day like the others, so retention removes whole
-- days.
CREATE TABLE access_packs (
    day        INTEGER NOT NULL,
    mailbox_id INTEGER NOT NULL,
    -- rows in `data`
    rows       INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    PRIMARY KEY (day, mailbox_id)
) WITHOUT ROWID;
