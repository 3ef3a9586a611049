-- The same table and semantics as migrations/postgres/0005_mirror.sql, in SQLite's dialect:
-- where the moderation mirror's copy of a chat's media went, per chat session (ids only).
CREATE TABLE mirror_messages (
    session_id     INTEGER NOT NULL,
    bot            TEXT    NOT NULL,
    sender_user    INTEGER NOT NULL,
    mirror_chat_id INTEGER NOT NULL,
    message_id     INTEGER NOT NULL,
    at_ms          INTEGER NOT NULL,
    PRIMARY KEY (session_id, mirror_chat_id, message_id)
);

-- Who blocked a person, through any bot (restored into a pool's block lists at each search, in
-- both directions, so a block made in one pool holds in every other).
CREATE INDEX blocks_other_user ON blocks (other_user);
