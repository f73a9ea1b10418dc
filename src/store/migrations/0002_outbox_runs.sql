-- The persistent outbox and the per-chat run record.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,   -- delivery order
    chat       TEXT NOT NULL,
    id         TEXT NOT NULL UNIQUE,                -- channel message id, chosen before the first attempt
    text       TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'pending',     -- pending | sent | delivered | read | failed
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER
);
CREATE INDEX outbox_pending ON outbox (state, seq);

-- One row per chat with a run in flight or parked. A 'running' row left by a
-- crash names the prompt to reconcile with OpenCode at start-up.
CREATE TABLE runs (
    chat       TEXT PRIMARY KEY,
    state      TEXT NOT NULL,                       -- running | parked
    session_id TEXT,
    prompt_id  TEXT,
    up_to_seq  INTEGER,
    attempts   INTEGER NOT NULL DEFAULT 0,
    reason     TEXT,
    updated_at INTEGER NOT NULL
);
