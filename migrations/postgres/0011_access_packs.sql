-- Complete days' access rows, packed: see migrations/sqlite/0011_access_packs.sql.
-- Partitioned by day like access_rows (src/store/partitions.rs makes and
-- drops the partitions; a day stored before this table existed gets its
-- partition when it is first packed).
CREATE TABLE access_packs (
    day        INTEGER NOT NULL,
    mailbox_id INTEGER NOT NULL,
    rows       INTEGER NOT NULL,
    data       BYTEA   NOT NULL,
    PRIMARY KEY (day, mailbox_id)
) PARTITION BY RANGE (day);
-- Packs are deflated already: kept as they are, not compressed again.
ALTER TABLE access_packs ALTER COLUMN data SET STORAGE EXTERNAL;
