package projector

import "strings"

// The merge statements. Each column's rule is a join (idempotent, commutative,
// associative) and mirrors deltas.MergeMessage / MergeConversation / MergeReactions,
// so a batch gives the same rows whatever the order and number of its deltas. Text
// comparisons use COLLATE "C" (byte order, as Go compares strings).

// newContent names the transaction-local setting in which the messages merge leaves, per
// conversation, how many messages got content for the first time, for the conversations
// merge that follows: a JSON array of {page_id, psid, n}. A setting, not a temporary
// table: nothing to create per session, and no table to empty at every commit (which
// cost a quarter of the server's time per batch). It ends with the transaction, so it
// works behind a transaction-mode pooler too.
const newContent = `convsync.new_content`

// The batch's rows reach the merges as array parameters, unnested: no staging tables,
// and every statement of a batch goes to the server in one round trip.

// planGrowth tells whether the read-model tables have grown enough for the merges to run
// on cached (generic) plans. Postgres makes a statement's generic plan once, after a few
// executions, and keeps it until the tables change (new statistics, a VACUUM, a TRUNCATE,
// a schema change). Made while messages is
// nearly empty, it may look a message up by its id through the conversation index (all
// of a page's messages for each row) and count unread messages through the primary key;
// a brand-new table has no statistics, and autovacuum analyzes it a minute later at the
// earliest. Past these sizes the planner's own estimates pick the right indexes
// (TestGenericMergePlansUseTheRightIndexes checks the plans at exactly these sizes), and
// planning each batch afresh, two thirds of the merges' server time, is no longer needed.
const (
	planGrowth              = `SELECT pg_relation_size('messages') >= $1 AND pg_relation_size('conversations') >= $2`
	planGrowthMessages      = 512 << 10 // bytes
	planGrowthConversations = 256 << 10
	planGrowthCheckEvery    = 64 // batches
	// genericPlanRows is the most rows per table a batch may have to run on the cached
	// plans, which Postgres prices for arrays of 100 rows.
	genericPlanRows = 100
)

// version is the batch's read-model version, drawn by the transaction before its merges.
const version = `currval('read_model_version_seq')`

// mergePages: a page row appears with its first event. name: the page-synced name with
// the latest time (a name without a time, from an import, yields to any synced one);
// last_synced_at: running maximum.
const mergePages = `
INSERT INTO facebook_pages AS p (page_id, name, name_at, last_synced_at, version, updated_at)
SELECT page_id, name, name_at, last_synced_at, ` + version + `, now()
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS t(page_id, name, name_at, last_synced_at)
ON CONFLICT (page_id) DO UPDATE SET
    name = CASE WHEN excluded.name IS NOT NULL AND (p.name IS NULL OR p.name_at IS NULL
                     OR (excluded.name_at, excluded.name COLLATE "C") > (p.name_at, p.name COLLATE "C"))
                THEN excluded.name ELSE p.name END,
    name_at = CASE WHEN excluded.name IS NOT NULL AND (p.name IS NULL OR p.name_at IS NULL
                     OR (excluded.name_at, excluded.name COLLATE "C") > (p.name_at, p.name COLLATE "C"))
                THEN excluded.name_at ELSE p.name_at END,
    last_synced_at = greatest(p.last_synced_at, excluded.last_synced_at),
    version = greatest(p.version + 1, ` + version + `),
    updated_at = now()
RETURNING page_id, version`

// mergeMessages upserts the messages and records, per conversation, how many of them
// got content for the first time: message_count counts each message once.
const mergeMessages = `
WITH t AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]::jsonb[], $7::text[],
        $8::text[]::jsonb[], $9::integer[], $10::smallint[], $11::timestamptz[], $12::text[], $13::text[])
        AS t(page_id, mid, psid, direction, text, attachments, attachments_key, reactions, edit_count,
             content_source, sent_at, app_id, reply_to_mid)
), prior AS (
    -- A correlated subquery, not a join: an index scan per batch row, never a hash join
    -- over the whole table, which the planner may pick when it misjudges the batch's size.
    SELECT t.page_id, t.mid,
        (SELECT m.content_source FROM messages m WHERE m.page_id = t.page_id AND m.mid = t.mid) AS content_source
    FROM t
), up AS (
    INSERT INTO messages AS m (page_id, mid, psid, direction, text, attachments, attachments_key, reactions,
        edit_count, content_source, sent_at, app_id, reply_to_mid, version, updated_at)
    SELECT page_id, mid, psid, direction, text, attachments, attachments_key, reactions, edit_count,
        content_source, sent_at, app_id, reply_to_mid, ` + version + `, now()
    FROM t
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
        version = greatest(m.version + 1, ` + version + `),
        updated_at = now()
    RETURNING m.page_id, m.psid, m.mid, m.content_source
)
SELECT set_config('` + newContent + `', coalesce(jsonb_agg(jsonb_build_object('page_id', page_id, 'psid', psid, 'n', n)), '[]')::text, true)
FROM (
    SELECT up.page_id, up.psid, count(*) AS n
    FROM up LEFT JOIN prior ON prior.page_id = up.page_id AND prior.mid = up.mid
    WHERE up.content_source > 0 AND coalesce(prior.content_source, 0) = 0
    GROUP BY up.page_id, up.psid
) counts`

// mergeConversations upserts the conversations and, in the same statement, the columns
// that follow from their merged state, so each row is written once a batch. The rules:
// watermarks and last outbound time are running maxima; the latest message is the greatest
// (time, mid); the snapshot is the one with the greatest (updated time, message count,
// unread count, snippet); the participant name comes from the latest snapshot that had
// one; thread_id is the greatest seen; known_message_count adds the messages that got
// content in this batch. Derived (see derived): message_count, snippet, unread_count.
var mergeConversations = `
INSERT INTO conversations AS c (page_id, psid, thread_id, participant_name, participant_name_at,
    snapshot_at, snapshot_message_count, snapshot_unread_count, snapshot_snippet,
    read_watermark, delivery_watermark, last_message_at, last_message_mid, last_message_direction,
    last_outbound_at, known_message_count, message_count, snippet, unread_count, version, updated_at)
SELECT t.page_id, t.psid, t.thread_id, t.participant_name, t.participant_name_at,
    t.snapshot_at, t.snapshot_message_count, t.snapshot_unread_count, t.snapshot_snippet,
    t.read_watermark, t.delivery_watermark, t.last_message_at, t.last_message_mid, t.last_message_direction,
    t.last_outbound_at, coalesce(n.n, 0),
    ` + derived(conversationState{
	page: "t.page_id", psid: "t.psid", known: "coalesce(n.n, 0)",
	snapshotAt: "t.snapshot_at", snapshotCount: "t.snapshot_message_count",
	snapshotUnread: "t.snapshot_unread_count", snapshotSnippet: "t.snapshot_snippet",
	lastAt: "t.last_message_at", lastMid: "t.last_message_mid", lastOutbound: "t.last_outbound_at",
	// A new conversation's messages are all in this batch: the unread count starts at
	// the earliest, and costs little for a row that exists and takes the assignments.
	since: "t.first_message_at",
}, false) + `,
    ` + version + `, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::integer[],
        $8::integer[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::text[],
        $14::text[], $15::timestamptz[], $16::timestamptz[])
    AS t(page_id, psid, thread_id, participant_name, participant_name_at, snapshot_at, snapshot_message_count,
         snapshot_unread_count, snapshot_snippet, read_watermark, delivery_watermark, last_message_at,
         last_message_mid, last_message_direction, last_outbound_at, first_message_at)
    LEFT JOIN jsonb_to_recordset(coalesce(nullif(current_setting('` + newContent + `', true), ''), '[]')::jsonb)
        AS n(page_id text, psid text, n integer) ON n.page_id = t.page_id AND n.psid = t.psid
ON CONFLICT (page_id, psid) DO UPDATE SET
    thread_id = greatest(c.thread_id COLLATE "C", excluded.thread_id COLLATE "C"),
    participant_name = CASE WHEN excluded.participant_name IS NOT NULL AND (c.participant_name IS NULL
            OR (excluded.participant_name_at, excluded.participant_name COLLATE "C") > (c.participant_name_at, c.participant_name COLLATE "C"))
        THEN excluded.participant_name ELSE c.participant_name END,
    participant_name_at = CASE WHEN excluded.participant_name IS NOT NULL AND (c.participant_name IS NULL
            OR (excluded.participant_name_at, excluded.participant_name COLLATE "C") > (c.participant_name_at, c.participant_name COLLATE "C"))
        THEN excluded.participant_name_at ELSE c.participant_name_at END,
    snapshot_at = ` + mergedConversation.snapshotAt + `,
    snapshot_message_count = ` + mergedConversation.snapshotCount + `,
    snapshot_unread_count = ` + mergedConversation.snapshotUnread + `,
    snapshot_snippet = ` + mergedConversation.snapshotSnippet + `,
    read_watermark = greatest(c.read_watermark, excluded.read_watermark),
    delivery_watermark = greatest(c.delivery_watermark, excluded.delivery_watermark),
    last_outbound_at = ` + mergedConversation.lastOutbound + `,
    last_message_at = ` + mergedConversation.lastAt + `,
    last_message_mid = ` + mergedConversation.lastMid + `,
    last_message_direction = ` + ifNewerLast("last_message_direction") + `,
    known_message_count = ` + mergedConversation.known + `,
    ` + derived(mergedConversation, true) + `,
    version = greatest(c.version + 1, ` + version + `),
    updated_at = now()
RETURNING c.page_id, c.psid, c.version`

// conversationState names, as SQL expressions, the merged columns of a conversation that
// its derived columns follow from.
type conversationState struct {
	page, psid, known                                          string
	snapshotAt, snapshotCount, snapshotUnread, snapshotSnippet string
	lastAt, lastMid, lastOutbound                              string
	since                                                      string // a lower bound of the messages' sent_at, if any
}

// mergedConversation is a conflicting row's state after the merge: the stored row c and
// the batch's row excluded, by the rules of mergeConversations.
var mergedConversation = conversationState{
	page: "c.page_id", psid: "c.psid", known: "c.known_message_count + excluded.known_message_count",
	snapshotAt: ifNewerSnapshot("snapshot_at"), snapshotCount: ifNewerSnapshot("snapshot_message_count"),
	snapshotUnread: ifNewerSnapshot("snapshot_unread_count"), snapshotSnippet: ifNewerSnapshot("snapshot_snippet"),
	lastAt: ifNewerLast("last_message_at"), lastMid: ifNewerLast("last_message_mid"),
	lastOutbound: "greatest(c.last_outbound_at, excluded.last_outbound_at)",
}

func ifNewerSnapshot(col string) string {
	return "CASE WHEN " + newerSnapshot + " THEN excluded." + col + " ELSE c." + col + " END"
}

func ifNewerLast(col string) string {
	return "CASE WHEN " + newerLast + " THEN excluded." + col + " ELSE c." + col + " END"
}

// snapshotSecond is the rest of the second a snapshot's updated_time names. Graph API
// times have whole seconds and webhook times milliseconds, so a snapshot updated at
// 10:00:00 already counts an inbound message sent at 10:00:00.123: a snapshot covers the
// messages sent before the end of its second (timestamptz has microseconds), and is newer
// than a reply sent within that second.
const snapshotSecond = `interval '999999 microseconds'`

// derived gives the columns that follow from a conversation's state s, as a SELECT list,
// or as SET assignments when assign is set:
// message_count is the greater of the distinct messages known and the latest snapshot's
// count (history beyond what the Graph API lets us read); snippet is the latest message's
// text, or the snapshot's when the snapshot is newer; unread_count counts the inbound
// messages after the page last replied (a reply means it read them), starting from the
// snapshot's count when the snapshot is newer than that reply, both by whole seconds
// (snapshotSecond). The lookups are correlated
// subqueries: index scans for the batch's rows, never a join over a whole table.
func derived(s conversationState, assign bool) string {
	since := ""
	if s.since != "" {
		since = " AND m.sent_at >= " + s.since
	}
	exprs := []string{
		"greatest(" + s.known + ", coalesce(" + s.snapshotCount + ", 0))",
		"CASE WHEN " + s.snapshotAt + " IS NOT NULL AND (" + s.lastAt + " IS NULL OR " + s.snapshotAt + " > " + s.lastAt + ")" +
			" THEN " + s.snapshotSnippet +
			" ELSE (SELECT coalesce(m.text, '[' || (m.attachments->0->>'type') || ']')" +
			" FROM messages m WHERE m.page_id = " + s.page + " AND m.mid = " + s.lastMid + ") END",
		"(SELECT count(*) FROM messages m WHERE m.page_id = " + s.page + " AND m.psid = " + s.psid +
			" AND m.direction = 'inbound' AND m.sent_at > greatest(coalesce(" + s.lastOutbound + ", '-infinity'), coalesce(" + s.snapshotAt + " + " + snapshotSecond + ", '-infinity'))" +
			since + ")" +
			" + CASE WHEN " + s.snapshotAt + " IS NOT NULL AND " + s.snapshotAt + " + interval '1 second' > coalesce(" + s.lastOutbound + ", '-infinity')" +
			" THEN " + s.snapshotUnread + " ELSE 0 END",
	}
	if assign {
		for i, col := range []string{"message_count", "snippet", "unread_count"} {
			exprs[i] = col + " = " + exprs[i]
		}
	}
	return strings.Join(exprs, ",\n    ")
}

const newerSnapshot = `(excluded.snapshot_at IS NOT NULL AND (c.snapshot_at IS NULL
    OR (excluded.snapshot_at, excluded.snapshot_message_count, excluded.snapshot_unread_count, coalesce(excluded.snapshot_snippet, '') COLLATE "C")
     > (c.snapshot_at, c.snapshot_message_count, c.snapshot_unread_count, coalesce(c.snapshot_snippet, '') COLLATE "C")))`

const newerLast = `(excluded.last_message_mid IS NOT NULL AND (c.last_message_mid IS NULL
    OR (excluded.last_message_at, excluded.last_message_mid COLLATE "C") > (c.last_message_at, c.last_message_mid COLLATE "C")))`

const mergeEvents = `
INSERT INTO conversation_events (page_id, event_id, psid, type, occurred_at, data)
SELECT page_id, event_id, psid, type, occurred_at, data
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[]::jsonb[])
    AS t(page_id, event_id, psid, type, occurred_at, data)
ON CONFLICT (page_id, event_id) DO NOTHING`

// saveOffsets moves the partition's next offset, only from the value this transaction
// read (-1: no row): another writer that moved it first fences this one.
const saveOffsets = `
INSERT INTO projector_offsets AS o (consumer_group, topic, partition, next_offset, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
WHERE o.next_offset = $5`
