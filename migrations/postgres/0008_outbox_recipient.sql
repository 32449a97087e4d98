-- Same schema as migrations/sqlite/0007_outbox_recipient.sql; see the comments there.
CREATE INDEX outbox_recipient ON outbox (recipient, created_at);
