// Package processor compacts the event log into per-page deltas, at least once or exactly once.
//
// In: CloudEvents records of convsync.events.v1 (KAFKA_EVENTS_TOPIC), keyed by page id,
// read as consumer group convsync-processor (PROCESSOR_GROUP) with isolation
// read_committed. Out: deltas on convsync.deltas.v1 (KAFKA_DELTAS_TOPIC), key = page id,
// value = the JSON of a [deltas.Delta], headers content-type: application/json and
// convsync-delta: v1; and dead letters on convsync.dlq.v1 (KAFKA_DLQ_TOPIC).
//
// Each fetched batch (at most PROCESSOR_MAX_POLL_RECORDS records) is handed, partition by
// partition, to one goroutine per assigned partition, which decodes and validates the
// records ([schemas.Codec]) and folds the events with [deltas.Fold] into one delta per page. The
// poll loop waits for every partition and produces all their deltas and dead letters at
// once. Then, by Config.Delivery (PROCESSOR_DELIVERY):
//
//   - AtLeastOnce (the default): once Kafka acknowledged every record (idempotent
//     producer, acks=all), the batch's offsets are marked; only marked offsets are
//     committed, every second, on revoke (rebalances wait for the batch in flight:
//     BlockRebalanceOnPoll) and on shutdown. A batch that fails is not marked and the
//     processor joins the group again, so its records come again. After a crash the
//     events since the last commit are folded again: some deltas are written twice, and
//     the projector's merge (deltas are joins) gives the same rows. One produce a batch.
//   - ExactlyOnce: the deltas and the consumed offsets commit in one Kafka transaction
//     (franz-go's GroupTransactSession); the partitions join it together.
//
// Guarantees:
//
//   - No event lost: an offset is committed only with (exactly once) or after (at least
//     once) the deltas of its events.
//   - Exactly-once deltas, with ExactlyOnce: the deltas of a batch and the offsets that consumed it commit
//     together or not at all. A crash, a rebalance or a failed produce aborts the
//     transaction; the records come again and readers with read_committed never see the
//     aborted deltas. A commit whose answer does not arrive (Kafka may have applied it)
//     makes the processor join the group again with a new client, which reads the
//     committed offsets from Kafka, rather than redo the batch. No event is lost or
//     folded twice into committed deltas.
//   - Bad input never stops the pipeline: a record that does not decode or validate goes
//     to the dead-letter topic with the batch's deltas, key, value and headers as they
//     were, plus the dlq-* headers ([dlq.New], read back with [dlq.Read]), and is
//     counted by reason (decode, schema, unknown_type). The partition moves on.
//   - Order per page: a page's events share a partition of the events topic, are folded
//     by that partition's goroutine batch after batch, and its deltas, keyed by page id,
//     share a partition of the deltas topic, in batch order.
//   - Bounded: one goroutine per assigned partition, at most PROCESSOR_MAX_POLL_RECORDS
//     records in memory per batch; a delta over PROCESSOR_MAX_DELTA_BYTES is split.
//
// Readiness: [Processor.Ping] answers once Run has a client and a broker answers it.
//
// The fold and its merge rules are the deltas topic's contract and live with it in
// schemas/deltas: deltas are joins, so applying them in any order, any number of times,
// gives the same rows.
package processor
