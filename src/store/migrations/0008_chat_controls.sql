-- Chat-side controls (`/model`, `/new`, `pocketbrain chats allow`).
-- A chat's own model (`provider/model`), over OPENCODE_MODEL.
CREATE TABLE chat_models (
    chat  TEXT PRIMARY KEY,
    model TEXT NOT NULL
);
-- The senders of a chat allowed to steer it (`/new`, `/stop`, `/model`,
-- `/compact`, `/tasks`); in a group with a list, the only ones whose
-- messages start a run.
CREATE TABLE chat_senders (
    chat   TEXT NOT NULL,
    sender TEXT NOT NULL,
    PRIMARY KEY (chat, sender)
);
-- Sessions a chat left with `/new`: kept in OpenCode, still the chat's
-- (purge deletes them, events are still routed to it).
CREATE TABLE retired_sessions (
    session_id TEXT PRIMARY KEY,
    chat       TEXT NOT NULL,
    retired_at INTEGER NOT NULL
);
CREATE INDEX retired_sessions_chat ON retired_sessions (chat);
