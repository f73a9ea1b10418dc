-- Keys for the local API (`pocketbrain api-keys`). Only a key's SHA-256 is
-- kept; `prefix` (its first characters) lets a person tell keys apart.
-- Each key is pinned to one API conversation (`api:<conversation>`) and
-- gives that conversation its profile when the key first creates it.
CREATE TABLE api_keys (
    name         TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the whole key
    prefix       TEXT NOT NULL,
    conversation TEXT NOT NULL,
    profile      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
