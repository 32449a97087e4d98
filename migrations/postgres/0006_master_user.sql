-- Same schema as migrations/sqlite/0006_master_user.sql; see the comments there.
ALTER TABLE access_events ADD COLUMN master_user TEXT;
