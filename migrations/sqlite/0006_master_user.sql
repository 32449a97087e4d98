-- The master user (an administrator's account, say) that opened a
-- mailbox, on the login rows where Dovecot logged one; NULL otherwise.
ALTER TABLE access_events ADD COLUMN master_user TEXT;
