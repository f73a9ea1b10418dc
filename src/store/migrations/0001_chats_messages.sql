-- Chats seen, registered chats, messages, the agent cursor, sessions.
CREATE TABLE chats (
    jid           TEXT PRIMARY KEY,
    name          TEXT,
    is_group      INTEGER NOT NULL,
    last_activity INTEGER NOT NULL            -- unix milliseconds
);

CREATE TABLE registered_chats (
    jid           TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    folder        TEXT NOT NULL UNIQUE,
    is_main       INTEGER NOT NULL DEFAULT 0,
    trigger_rule  TEXT NOT NULL DEFAULT 'mention',
    registered_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX registered_chats_one_main ON registered_chats (is_main) WHERE is_main = 1;

CREATE TABLE messages (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order
    chat        TEXT NOT NULL,
    id          TEXT NOT NULL,
    sender      TEXT NOT NULL,
    sender_name TEXT,
    text        TEXT NOT NULL,
    timestamp   INTEGER NOT NULL,                   -- unix milliseconds, as the sender said
    from_me     INTEGER NOT NULL,
    is_echo     INTEGER NOT NULL,                   -- the bridge's own outbound, seen again
    UNIQUE (chat, id)
);
CREATE INDEX messages_chat_seq ON messages (chat, seq);

-- The last message seq the agent has answered, per chat.
CREATE TABLE cursors (
    chat TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
);

CREATE TABLE sessions (
    chat       TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
