-- Chat profiles: what each chat's agent may do. Existing chats get the
-- default for their kind: the main chat main, groups guest, other DMs member.
ALTER TABLE registered_chats ADD COLUMN profile TEXT NOT NULL DEFAULT 'member';
UPDATE registered_chats SET profile = 'main' WHERE is_main = 1;
UPDATE registered_chats SET profile = 'guest' WHERE is_main = 0 AND jid LIKE '%@g.us';

-- A message the bridge handled itself (an answer to an approval in the
-- main chat): stored like any other, never put into a prompt.
ALTER TABLE messages ADD COLUMN handled INTEGER NOT NULL DEFAULT 0;

-- OpenCode permission requests of the bridge's own sessions that the chat's
-- profile says to ask: sent to the main chat with a code, answered there.
CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY,
    code        TEXT NOT NULL,             -- four digits, unique among pending
    request_id  TEXT NOT NULL UNIQUE,      -- OpenCode's permission request id
    chat        TEXT NOT NULL,             -- the chat whose agent asks
    session_id  TEXT NOT NULL,
    directory   TEXT NOT NULL,             -- the OpenCode instance to answer
    permission  TEXT NOT NULL,             -- bash, edit, webfetch, ...
    patterns    TEXT NOT NULL,             -- JSON array: what exactly
    always      TEXT NOT NULL,             -- JSON array: OpenCode's suggested patterns
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    answered_at INTEGER
);
CREATE INDEX approvals_state ON approvals (state, expires_at);
CREATE UNIQUE INDEX approvals_pending_code ON approvals (code) WHERE state = 'pending';

-- What the owner allowed a chat for good ("always CODE").
CREATE TABLE approval_rules (
    chat       TEXT NOT NULL,
    permission TEXT NOT NULL,
    pattern    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (chat, permission, pattern)
);
