-- The read model: pages, conversations, messages, and the projector's offsets.
-- Column names are a public interface (people query these tables with SQL); add columns,
-- never rename or repurpose one. Every primary key starts with page_id and no statement
-- crosses pages, so the tables can be distributed by page_id.

-- +goose Up
CREATE TABLE IF NOT EXISTS facebook_pages (
    page_id        text PRIMARY KEY,
    name           text,
    -- The page access token. Never returned by any API and never logged.
    access_token   text,
    last_synced_at timestamptz,
    version        bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS facebook_pages_last_synced_at_idx ON facebook_pages (last_synced_at);

CREATE TABLE IF NOT EXISTS conversations (
    page_id                text        NOT NULL,
    psid                   text        NOT NULL,
    thread_id              text,
    participant_name       text,
    snippet                text,
    last_message_at        timestamptz,
    last_message_mid       text,
    last_message_direction text CHECK (last_message_direction IN ('inbound', 'outbound')),
    message_count          integer     NOT NULL DEFAULT 0,
    unread_count           integer     NOT NULL DEFAULT 0,
    read_watermark         timestamptz,
    delivery_watermark     timestamptz,
    version                bigint      NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (page_id, psid)
);
-- The inbox of a page, newest first, with a stable tie-break for cursor pagination.
CREATE INDEX IF NOT EXISTS conversations_inbox_idx
    ON conversations (page_id, last_message_at DESC NULLS LAST, psid DESC);
CREATE INDEX IF NOT EXISTS conversations_thread_idx
    ON conversations (page_id, thread_id) WHERE thread_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS messages (
    page_id     text        NOT NULL,
    mid         text        NOT NULL,
    psid        text        NOT NULL,
    direction   text        NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    text        text,
    attachments jsonb       NOT NULL DEFAULT '[]'::jsonb,
    -- Reaction state per reacting user: {"<psid>": {"reaction": "love", "emoji": "❤️", "at": "..."}}.
    reactions   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    edit_count  integer     NOT NULL DEFAULT 0,
    sent_at     timestamptz NOT NULL,
    version     bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (page_id, mid)
);
-- A conversation's messages, newest first.
CREATE INDEX IF NOT EXISTS messages_conversation_idx
    ON messages (page_id, psid, sent_at DESC, mid DESC);

-- The projector's consumed offsets, written in the same transaction as the rows they
-- produced (exactly-once effect); the projector resumes from here, not from Kafka.
CREATE TABLE IF NOT EXISTS projector_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- +goose Down
DROP TABLE IF EXISTS projector_offsets;
DROP TABLE IF EXISTS messages;
DROP TABLE IF EXISTS conversations;
DROP TABLE IF EXISTS facebook_pages;
