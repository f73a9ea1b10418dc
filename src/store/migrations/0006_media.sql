-- Media with messages: what a photo, voice note or file was, where it was
-- saved in the chat's folder (or why not), its transcript. JSON of
-- `model::MediaInfo`; NULL for a plain text message.
ALTER TABLE messages ADD COLUMN media TEXT;

-- A file to send: an outbox row whose `text` is the caption. JSON of
-- `model::OutboxMedia` (path inside the chat's folder, kind, mime, name).
ALTER TABLE outbox ADD COLUMN media TEXT;
