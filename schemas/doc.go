// Package schemas is the public wire contract of the convsync event log, the Kafka
// topic convsync.events.v1.
//
// In: facts about Messenger conversations built by webhook ingest (Type
// convsync.messenger.*), by the Graph API backfill (convsync.graph.*) and by third-party
// producers that write JSON with a plain Kafka client. Out: one CloudEvents 1.0 envelope
// per record in structured JSON mode, with the Facebook Page id in the pageid extension
// and as the record key, and a typed Go value ([Data]) for the processor.
//
// Every event type has one JSON Schema (draft 2020-12) per version under json/, named
// after the type. envelope.v1.json describes the envelope; the per-type file describes
// its data member. Those files, and the golden records under testdata/ (one compact
// record per line, ready for kcat -P), are the contract for other producers.
//
// Guarantees:
//
//   - Deterministic ids: [ID] derives the CloudEvents id from the Meta ids of the fact
//     (UUIDv5 in [Namespace]), so a message seen by a webhook and by a backfill gets one
//     id, and redeliveries get the id they had before.
//   - Normalised message ids: every mid on the wire has the m_ prefix ([NormalizeMID]);
//     a different original is kept in raw_mid.
//   - [New] and [Encode] never validate against the schemas (ingest encodes thousands of
//     events a second); they only refuse what would make an unroutable record (no page
//     id, source or time). [Codec.Decode] validates every record it returns: envelope
//     against its schema, data against the schema of its type, pageid against
//     data.page_id. Every decode failure is a *[ValidationError] naming the field, so the
//     caller can send the record to the dead-letter topic with that reason.
//   - Additive evolution: within a version properties are only added, never removed,
//     retyped or made required, and enum values are never removed; readers ignore
//     properties they do not know. A test compares each schema with its previous revision
//     in testdata/previous. A breaking change is a new type version (….v2) plus an
//     upcaster in [NewCodec] that lifts old records so they can still be replayed.
package schemas
