-- The owner's read mark per chat (the terminal app, any client of the
-- API): the seq of the last message read there. `GET /api/v1/chats` counts
-- the messages from others after it as unread. It only moves forward.
CREATE TABLE read_marks (
    chat TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
);
