// Package deltas is the contract of the deltas topic, convsync.deltas.v1
// (KAFKA_DELTAS_TOPIC), between the processor that writes it and the projector (and
// replay, and any other consumer) that reads it.
//
// A record's key is the page id; its value is the JSON of a [Delta] ([Encode], [Decode]);
// its headers are content-type: application/json and convsync-delta: v1 ([Headers]).
// json/convsync.deltas.v1.json ([SchemaJSON]) is the JSON Schema of the value, and testdata/ holds
// records written by earlier builds, which every build must still decode.
//
// A Delta is the compacted effect of a batch of events on one page. [Fold] makes them from
// events, and the Merge functions are the join rules the projector's SQL applies too:
// watermarks, last sync and last outbound times are running maxima; the latest message of
// a conversation is the greatest (time, mid); a message's content comes from its best
// source (webhook over Graph backfill); its text from the highest edit; reactions per
// user, the latest wins and an unreact stays as a tombstone; a Graph snapshot is replaced
// only by a newer one; events that are not messages (postbacks, referrals, opt-ins,
// unknown kinds) are kept by id. Every rule is idempotent, commutative and associative,
// so deltas applied in any order, any number of times, give the same rows.
//
// Folding is pure: no I/O, no clock, so it can be table-tested and replayed.
package deltas
