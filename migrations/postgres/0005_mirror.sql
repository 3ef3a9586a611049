-- mirror_messages: where the moderation mirror's copy of a chat's media went, per chat session,
-- so a report can be reviewed with what was sent. Ids only: the content stays in Telegram's
-- mirror chat (which the bot's admins own), never here. One row per mirrored message; the
-- retention purge ages it out with the session's other metadata.
CREATE TABLE mirror_messages (
    session_id     BIGINT NOT NULL,
    bot            TEXT   NOT NULL,
    sender_user    BIGINT NOT NULL,
    mirror_chat_id BIGINT NOT NULL,
    message_id     BIGINT NOT NULL,
    at_ms          BIGINT NOT NULL,
    PRIMARY KEY (session_id, mirror_chat_id, message_id)
);
COMMENT ON TABLE mirror_messages IS 'Ids of the moderation mirror copies of a chat session''s media; never content.';

-- Who blocked a person, through any bot (restored into a pool's block lists at each search, in
-- both directions, so a block made in one pool holds in every other).
CREATE INDEX blocks_other_user ON blocks (other_user);
