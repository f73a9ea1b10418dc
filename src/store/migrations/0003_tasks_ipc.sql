-- Scheduled tasks, their runs, and the ledger of IPC requests acted on.
CREATE TABLE tasks (
    id             TEXT PRIMARY KEY,
    chat           TEXT NOT NULL,
    prompt         TEXT NOT NULL,
    schedule_type  TEXT NOT NULL,               -- cron | interval | once
    schedule_value TEXT NOT NULL,               -- as given; once: RFC 3339 UTC
    context_mode   TEXT NOT NULL,               -- group | isolated
    tz             TEXT NOT NULL,
    status         TEXT NOT NULL,               -- active | paused | completed
    status_reason  TEXT,
    next_run       INTEGER,                     -- unix ms; NULL unless active
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX tasks_due ON tasks (status, next_run);
CREATE INDEX tasks_chat ON tasks (chat);

CREATE TABLE task_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL,
    chat        TEXT NOT NULL,
    due_at      INTEGER NOT NULL,
    queued_at   INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    status      TEXT NOT NULL,                  -- queued | running | ok | error
    session_id  TEXT,
    prompt_id   TEXT,
    result      TEXT,
    error       TEXT
);
CREATE INDEX task_runs_task ON task_runs (task_id, id);
CREATE INDEX task_runs_open ON task_runs (status, chat, id);

-- Sessions made for isolated task runs, so tool calls from them map to their chat.
CREATE TABLE task_sessions (
    session_id TEXT PRIMARY KEY,
    chat       TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Every IPC request acted on, with the response sent: a request id (and a
-- tool call id) is acted on at most once, even across crashes.
CREATE TABLE ipc_requests (
    id         TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    call_id    TEXT,
    tool       TEXT NOT NULL,
    chat       TEXT,
    ok         INTEGER NOT NULL,
    response   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX ipc_requests_call ON ipc_requests (session_id, call_id) WHERE call_id IS NOT NULL;
