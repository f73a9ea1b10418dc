-- The whole request as the owner is shown it (a bash command as typed,
-- where `patterns` holds OpenCode's split of it), so every client of the
-- API can show it in full. NULL for requests recorded before.
ALTER TABLE approvals ADD COLUMN detail TEXT;
