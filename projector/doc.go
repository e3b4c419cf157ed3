// Package projector turns the processor's deltas into the Postgres read model.
//
// In: convsync.deltas.v1 (consumer group convsync-projector, read_committed). Out: the
// tables facebook_pages, conversations, messages and conversation_events, and the
// projector_offsets row of each partition; after each commit, a hook with the touched
// pages and conversations and their new versions (the cache refreshes them).
//
// Each partition has its own goroutine, started on assignment and stopped, after its
// batch commits, on revocation. It hands each batch (by count, bytes and an optional
// linger) to a writer, always the same one; a writer commits every batch waiting for it
// in one transaction (group commit), once the other partitions of the same fetch have
// handed theirs in too (round.go; PROJECTOR_GATHER_WAIT at most): the deltas are coalesced per key (a multi-row upsert
// may not touch a row twice), sent with one statement per table (the rows as array
// parameters) and the partition's next offset in one pipelined round trip, then
// committed. On assignment the
// projector resumes from the offsets in Postgres, not from Kafka's; deltas below the
// stored offset are skipped and a writer whose offsets moved under it is fenced, so each
// delta takes effect exactly once.
//
// Merge rules, per column (each one idempotent and order-insensitive, so duplicates,
// redeliveries, backfills overlapping webhooks and any interleaving of partitions give
// the same rows):
//
//	facebook_pages.name            the page-synced name with the latest time
//	facebook_pages.last_synced_at  running maximum of page-synced times
//	messages.direction, sent_at,   from the best source that saw the message (webhook over
//	  attachments, app_id,         Graph backfill), then the greater attachments_key; a
//	  reply_to_mid                 message row may exist before its content (an edit or
//	                               reaction first), with these empty
//	messages.text                  the text of the highest edit (num_edit) if any, else the
//	                               content's
//	messages.edit_count            maximum num_edit
//	messages.reactions             per reacting user, the latest reaction (an unreact
//	                               stays as a tombstone, so an older react cannot revive it)
//	conversations.read_watermark,  running maxima
//	  delivery_watermark
//	conversations.last_message_*   the message with the greatest (sent_at, mid)
//	conversations.message_count    distinct messages with content, or the latest Graph
//	                               snapshot's count when larger (history beyond reach)
//	conversations.unread_count     inbound messages after the page's last reply (a reply
//	                               means it read them), plus the snapshot's unread count
//	                               when the snapshot is newer than that reply
//	conversations.snippet          the latest message's text ([type] for attachments), or
//	                               the snapshot's when the snapshot is newer
//	conversations.participant_name the latest snapshot that had a name
//	conversations.thread_id        the Graph t_ id from snapshots
//	*.version                      one more than before, at least the batch's sequence value
//
// An older Graph snapshot never overwrites a newer one: the snapshot with the greatest
// (updated_time, message_count, unread_count, snippet) wins.
package projector
