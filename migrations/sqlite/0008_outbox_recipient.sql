-- Mail is limited per recipient and day: the count of a recipient's
-- recent mail reads this index, not the whole outbox.
CREATE INDEX outbox_recipient ON outbox (recipient, created_at);
