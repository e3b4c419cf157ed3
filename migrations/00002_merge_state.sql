-- State the projector's order-insensitive merge needs, and the events that are not
-- messages. Only additions: existing columns keep their names and meaning.

-- +goose Up
-- The version every merge stamps on the rows it touches; cache entries carry it.
CREATE SEQUENCE IF NOT EXISTS read_model_version_seq;

ALTER TABLE facebook_pages
    ADD COLUMN IF NOT EXISTS name_at timestamptz; -- synced_at of the page-synced event that gave the name

ALTER TABLE conversations
    ADD COLUMN IF NOT EXISTS known_message_count    integer NOT NULL DEFAULT 0, -- distinct messages with content
    ADD COLUMN IF NOT EXISTS snapshot_at            timestamptz,                -- updated_time of the latest Graph snapshot
    ADD COLUMN IF NOT EXISTS snapshot_message_count integer,
    ADD COLUMN IF NOT EXISTS snapshot_unread_count  integer,
    ADD COLUMN IF NOT EXISTS snapshot_snippet       text,
    ADD COLUMN IF NOT EXISTS participant_name_at    timestamptz,
    ADD COLUMN IF NOT EXISTS last_outbound_at       timestamptz;

-- A message row can exist before its content arrives (an edit or a reaction first).
ALTER TABLE messages
    ALTER COLUMN direction DROP NOT NULL,
    ALTER COLUMN sent_at DROP NOT NULL,
    ADD COLUMN IF NOT EXISTS content_source smallint NOT NULL DEFAULT 0, -- 0 none, 1 Graph, 2 webhook
    ADD COLUMN IF NOT EXISTS app_id         text,
    ADD COLUMN IF NOT EXISTS reply_to_mid   text;

-- Postbacks, referrals, opt-ins, thread changes and unknown kinds: kept, never counted
-- as messages. The event id makes them idempotent.
CREATE TABLE IF NOT EXISTS conversation_events (
    page_id     text        NOT NULL,
    event_id    text        NOT NULL,
    psid        text,
    type        text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (page_id, event_id)
);
CREATE INDEX IF NOT EXISTS conversation_events_conversation_idx
    ON conversation_events (page_id, psid, occurred_at DESC);

-- Reaction state per user: the later reaction wins; at the same time the greater
-- (action, reaction). Mirrors processor.MergeReactions.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION merge_reactions(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, v), '{}'::jsonb)
    FROM (
        SELECT DISTINCT ON (k) k, v
        FROM (
            SELECT key AS k, value AS v FROM jsonb_each(coalesce(a, '{}'::jsonb))
            UNION ALL
            SELECT key, value FROM jsonb_each(coalesce(b, '{}'::jsonb))
        ) u
        ORDER BY k, (v->>'at')::timestamptz DESC, v->>'action' COLLATE "C" DESC,
                 coalesce(v->>'reaction', '') COLLATE "C" DESC
    ) w
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION IF EXISTS merge_reactions(jsonb, jsonb);
DROP TABLE IF EXISTS conversation_events;
ALTER TABLE messages DROP COLUMN IF EXISTS reply_to_mid, DROP COLUMN IF EXISTS app_id,
    DROP COLUMN IF EXISTS content_source;
ALTER TABLE conversations DROP COLUMN IF EXISTS last_outbound_at, DROP COLUMN IF EXISTS participant_name_at,
    DROP COLUMN IF EXISTS snapshot_snippet, DROP COLUMN IF EXISTS snapshot_unread_count,
    DROP COLUMN IF EXISTS snapshot_message_count, DROP COLUMN IF EXISTS snapshot_at,
    DROP COLUMN IF EXISTS known_message_count;
ALTER TABLE facebook_pages DROP COLUMN IF EXISTS name_at;
DROP SEQUENCE IF EXISTS read_model_version_seq;
