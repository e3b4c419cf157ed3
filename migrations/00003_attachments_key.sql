-- The tie-break key of a message's attachments: two observations of one message from one
-- source (a Graph re-fetch re-signs URLs) merge to the one with the greater key, in any
-- order. Merge state, not for queries.

-- +goose Up
ALTER TABLE messages ADD COLUMN IF NOT EXISTS attachments_key text;

-- +goose Down
ALTER TABLE messages DROP COLUMN IF EXISTS attachments_key;
