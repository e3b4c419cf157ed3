package projector

// The merge statements. Each column's rule is a join (idempotent, commutative,
// associative) and mirrors processor.MergeMessage / MergeConversation / MergeReactions,
// so a batch gives the same rows whatever the order and number of its deltas. Text
// comparisons use COLLATE "C" (byte order, as Go compares strings).

// createTemp makes the batch's staging tables once per server session: each transaction
// creates them if its session lacks them, so the projector works behind a
// transaction-mode pooler too, and ON COMMIT DELETE ROWS empties them at every commit,
// so nothing outlives the transaction that wrote it. (ON COMMIT DROP would create and
// drop five tables per batch: catalog writes that cost more than the merge itself.)
// A staging table whose columns change gets a new name (tmp_messages_v2): behind a
// pooler, a session may still hold the old shape from an older binary.
const createTemp = `
CREATE TEMP TABLE IF NOT EXISTS tmp_pages (page_id text, name text, name_at timestamptz, last_synced_at timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS tmp_conversations (page_id text, psid text, thread_id text, participant_name text,
    participant_name_at timestamptz, snapshot_at timestamptz, snapshot_message_count integer,
    snapshot_unread_count integer, snapshot_snippet text, read_watermark timestamptz,
    delivery_watermark timestamptz, last_message_at timestamptz, last_message_mid text,
    last_message_direction text, last_outbound_at timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS tmp_messages_v2 (page_id text, mid text, psid text, direction text, text text,
    attachments jsonb, attachments_key text, reactions jsonb, edit_count integer, content_source smallint,
    sent_at timestamptz, app_id text, reply_to_mid text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS tmp_events (page_id text, event_id text, psid text, type text, occurred_at timestamptz,
    data jsonb) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS tmp_counts (page_id text, psid text, new_content integer) ON COMMIT DELETE ROWS`

// mergePages: a page row appears with its first event. name: the page-synced name with
// the latest time (a name without a time, from an import, yields to any synced one);
// last_synced_at: running maximum.
const mergePages = `
INSERT INTO facebook_pages AS p (page_id, name, name_at, last_synced_at, version, updated_at)
SELECT page_id, name, name_at, last_synced_at, $1, now() FROM tmp_pages
ON CONFLICT (page_id) DO UPDATE SET
    name = CASE WHEN excluded.name IS NOT NULL AND (p.name IS NULL OR p.name_at IS NULL
                     OR (excluded.name_at, excluded.name COLLATE "C") > (p.name_at, p.name COLLATE "C"))
                THEN excluded.name ELSE p.name END,
    name_at = CASE WHEN excluded.name IS NOT NULL AND (p.name IS NULL OR p.name_at IS NULL
                     OR (excluded.name_at, excluded.name COLLATE "C") > (p.name_at, p.name COLLATE "C"))
                THEN excluded.name_at ELSE p.name_at END,
    last_synced_at = greatest(p.last_synced_at, excluded.last_synced_at),
    version = greatest(p.version + 1, $1),
    updated_at = now()
RETURNING page_id, version`

// mergeMessages upserts the messages and records, per conversation, how many of them
// got content for the first time: message_count counts each message once.
const mergeMessages = `
WITH prior AS (
    SELECT m.page_id, m.mid, m.content_source
    FROM messages m JOIN tmp_messages_v2 t ON m.page_id = t.page_id AND m.mid = t.mid
), up AS (
    INSERT INTO messages AS m (page_id, mid, psid, direction, text, attachments, attachments_key, reactions,
        edit_count, content_source, sent_at, app_id, reply_to_mid, version, updated_at)
    SELECT page_id, mid, psid, direction, text, attachments, attachments_key, reactions, edit_count,
        content_source, sent_at, app_id, reply_to_mid, $1, now()
    FROM tmp_messages_v2
    ON CONFLICT (page_id, mid) DO UPDATE SET
        text = CASE
            WHEN excluded.edit_count > m.edit_count THEN excluded.text
            WHEN excluded.edit_count < m.edit_count THEN m.text
            WHEN m.edit_count > 0 THEN greatest(m.text COLLATE "C", excluded.text COLLATE "C")
            WHEN excluded.content_source > m.content_source THEN excluded.text
            WHEN excluded.content_source < m.content_source THEN m.text
            ELSE greatest(m.text COLLATE "C", excluded.text COLLATE "C") END,
        edit_count = greatest(m.edit_count, excluded.edit_count),
        direction = CASE
            WHEN excluded.content_source > m.content_source THEN excluded.direction
            WHEN excluded.content_source = m.content_source AND excluded.content_source > 0
                THEN greatest(m.direction COLLATE "C", excluded.direction COLLATE "C")
            ELSE m.direction END,
        sent_at = CASE
            WHEN excluded.content_source > m.content_source THEN excluded.sent_at
            WHEN excluded.content_source = m.content_source AND excluded.content_source > 0
                THEN greatest(m.sent_at, excluded.sent_at)
            ELSE m.sent_at END,
        attachments = CASE
            WHEN excluded.content_source > m.content_source THEN excluded.attachments
            WHEN excluded.content_source = m.content_source AND excluded.content_source > 0
                 AND coalesce(excluded.attachments_key, '') COLLATE "C" > coalesce(m.attachments_key, '') COLLATE "C"
                THEN excluded.attachments
            ELSE m.attachments END,
        attachments_key = CASE
            WHEN excluded.content_source > m.content_source THEN excluded.attachments_key
            WHEN excluded.content_source = m.content_source AND excluded.content_source > 0
                 AND coalesce(excluded.attachments_key, '') COLLATE "C" > coalesce(m.attachments_key, '') COLLATE "C"
                THEN excluded.attachments_key
            ELSE m.attachments_key END,
        app_id = CASE
            WHEN excluded.content_source > m.content_source THEN excluded.app_id
            WHEN excluded.content_source = m.content_source AND excluded.content_source > 0
                THEN greatest(m.app_id COLLATE "C", excluded.app_id COLLATE "C")
            ELSE m.app_id END,
        reply_to_mid = CASE
            WHEN excluded.content_source > m.content_source THEN excluded.reply_to_mid
            WHEN excluded.content_source = m.content_source AND excluded.content_source > 0
                THEN greatest(m.reply_to_mid COLLATE "C", excluded.reply_to_mid COLLATE "C")
            ELSE m.reply_to_mid END,
        content_source = greatest(m.content_source, excluded.content_source),
        reactions = merge_reactions(m.reactions, excluded.reactions),
        version = greatest(m.version + 1, $1),
        updated_at = now()
    RETURNING m.page_id, m.psid, m.mid, m.content_source
)
INSERT INTO tmp_counts (page_id, psid, new_content)
SELECT up.page_id, up.psid, count(*)
FROM up LEFT JOIN prior ON prior.page_id = up.page_id AND prior.mid = up.mid
WHERE up.content_source > 0 AND coalesce(prior.content_source, 0) = 0
GROUP BY up.page_id, up.psid`

// mergeConversations: watermarks and last outbound time are running maxima; the latest
// message is the greatest (time, mid); the snapshot is the one with the greatest
// (updated time, message count, unread count, snippet); the participant name comes from
// the latest snapshot that had one; thread_id is the greatest seen; known_message_count
// adds the messages that got content in this batch.
const mergeConversations = `
INSERT INTO conversations AS c (page_id, psid, thread_id, participant_name, participant_name_at,
    snapshot_at, snapshot_message_count, snapshot_unread_count, snapshot_snippet,
    read_watermark, delivery_watermark, last_message_at, last_message_mid, last_message_direction,
    last_outbound_at, known_message_count, version, updated_at)
SELECT t.page_id, t.psid, t.thread_id, t.participant_name, t.participant_name_at,
    t.snapshot_at, t.snapshot_message_count, t.snapshot_unread_count, t.snapshot_snippet,
    t.read_watermark, t.delivery_watermark, t.last_message_at, t.last_message_mid, t.last_message_direction,
    t.last_outbound_at, coalesce(n.new_content, 0), $1, now()
FROM tmp_conversations t LEFT JOIN tmp_counts n ON n.page_id = t.page_id AND n.psid = t.psid
ON CONFLICT (page_id, psid) DO UPDATE SET
    thread_id = greatest(c.thread_id COLLATE "C", excluded.thread_id COLLATE "C"),
    participant_name = CASE WHEN excluded.participant_name IS NOT NULL AND (c.participant_name IS NULL
            OR (excluded.participant_name_at, excluded.participant_name COLLATE "C") > (c.participant_name_at, c.participant_name COLLATE "C"))
        THEN excluded.participant_name ELSE c.participant_name END,
    participant_name_at = CASE WHEN excluded.participant_name IS NOT NULL AND (c.participant_name IS NULL
            OR (excluded.participant_name_at, excluded.participant_name COLLATE "C") > (c.participant_name_at, c.participant_name COLLATE "C"))
        THEN excluded.participant_name_at ELSE c.participant_name_at END,
    snapshot_at = CASE WHEN ` + newerSnapshot + ` THEN excluded.snapshot_at ELSE c.snapshot_at END,
    snapshot_message_count = CASE WHEN ` + newerSnapshot + ` THEN excluded.snapshot_message_count ELSE c.snapshot_message_count END,
    snapshot_unread_count = CASE WHEN ` + newerSnapshot + ` THEN excluded.snapshot_unread_count ELSE c.snapshot_unread_count END,
    snapshot_snippet = CASE WHEN ` + newerSnapshot + ` THEN excluded.snapshot_snippet ELSE c.snapshot_snippet END,
    read_watermark = greatest(c.read_watermark, excluded.read_watermark),
    delivery_watermark = greatest(c.delivery_watermark, excluded.delivery_watermark),
    last_outbound_at = greatest(c.last_outbound_at, excluded.last_outbound_at),
    last_message_at = CASE WHEN ` + newerLast + ` THEN excluded.last_message_at ELSE c.last_message_at END,
    last_message_mid = CASE WHEN ` + newerLast + ` THEN excluded.last_message_mid ELSE c.last_message_mid END,
    last_message_direction = CASE WHEN ` + newerLast + ` THEN excluded.last_message_direction ELSE c.last_message_direction END,
    known_message_count = c.known_message_count + excluded.known_message_count,
    version = greatest(c.version + 1, $1),
    updated_at = now()`

const newerSnapshot = `(excluded.snapshot_at IS NOT NULL AND (c.snapshot_at IS NULL
    OR (excluded.snapshot_at, excluded.snapshot_message_count, excluded.snapshot_unread_count, coalesce(excluded.snapshot_snippet, '') COLLATE "C")
     > (c.snapshot_at, c.snapshot_message_count, c.snapshot_unread_count, coalesce(c.snapshot_snippet, '') COLLATE "C")))`

const newerLast = `(excluded.last_message_mid IS NOT NULL AND (c.last_message_mid IS NULL
    OR (excluded.last_message_at, excluded.last_message_mid COLLATE "C") > (c.last_message_at, c.last_message_mid COLLATE "C")))`

// deriveConversations computes the columns that follow from the merged state:
// message_count is the greater of the distinct messages known and the latest snapshot's
// count (history beyond what the Graph API lets us read); snippet is the latest
// message's text, or the snapshot's when the snapshot is newer; unread_count counts the
// inbound messages after the page last replied (a reply means it read them), starting
// from the snapshot's count when the snapshot is newer than that reply.
const deriveConversations = `
UPDATE conversations c SET
    message_count = greatest(c.known_message_count, coalesce(c.snapshot_message_count, 0)),
    snippet = CASE
        WHEN c.snapshot_at IS NOT NULL AND (c.last_message_at IS NULL OR c.snapshot_at > c.last_message_at)
            THEN c.snapshot_snippet
        ELSE (SELECT coalesce(m.text, '[' || (m.attachments->0->>'type') || ']')
              FROM messages m WHERE m.page_id = c.page_id AND m.mid = c.last_message_mid) END,
    unread_count = (SELECT count(*) FROM messages m
                    WHERE m.page_id = c.page_id AND m.psid = c.psid AND m.direction = 'inbound'
                      AND m.sent_at > greatest(coalesce(c.last_outbound_at, '-infinity'), coalesce(c.snapshot_at, '-infinity')))
        + CASE WHEN c.snapshot_at IS NOT NULL AND c.snapshot_at >= coalesce(c.last_outbound_at, '-infinity')
               THEN c.snapshot_unread_count ELSE 0 END
FROM tmp_conversations t
WHERE c.page_id = t.page_id AND c.psid = t.psid
RETURNING c.page_id, c.psid, c.version`

const mergeEvents = `
INSERT INTO conversation_events (page_id, event_id, psid, type, occurred_at, data)
SELECT page_id, event_id, psid, type, occurred_at, data FROM tmp_events
ON CONFLICT (page_id, event_id) DO NOTHING`

// saveOffsets moves the partition's next offset, only from the value this transaction
// read (-1: no row): another writer that moved it first fences this one.
const saveOffsets = `
INSERT INTO projector_offsets AS o (consumer_group, topic, partition, next_offset, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
WHERE o.next_offset = $5`
