-- Pairing codes offered to people who wrote a direct message without being
-- registered (PB_UNKNOWN_DM=pair): at most one per chat an hour, each valid
-- for an hour; the owner registers the chat by its code.
CREATE TABLE pairings (
    code        TEXT PRIMARY KEY,
    chat        TEXT NOT NULL,
    sender_name TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    approved_at INTEGER
);
CREATE INDEX pairings_chat ON pairings (chat, created_at);
