-- WhatsApp addresses one person by phone number and by LID. Each LID seen
-- with its phone number is recorded, so a chat registered by either form is
-- the same chat.
CREATE TABLE jid_aliases (
    alias     TEXT PRIMARY KEY,
    canonical TEXT NOT NULL,
    seen_at   INTEGER NOT NULL
);
CREATE INDEX jid_aliases_canonical ON jid_aliases (canonical);
