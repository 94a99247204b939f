// Package projector projects the conversation streams into ClickHouse, the
// store that pages history and that analysts query.
//
// One durable pull consumer per conversation stream (streams.ProjectorDurable)
// fetches batches bounded by count and by time; a batch is inserted into
// ClickHouse, with any events between the projector's position and it read
// from the stream (gap.go: an AckAll also acks what nobody inserted), and
// only then acked (AckAll on its highest stream sequence). Inserts are
// idempotent: tables are ReplacingMergeTree keyed by the event's place in its
// stream, and every read collapses duplicates (FINAL, or LIMIT 1 BY seq in
// the history page query), so an event delivered twice, or the whole stream
// replayed, shows once.
//
// Failures: while ClickHouse cannot be reached the batch is retried with a
// growing backoff, forever, and nothing is acked. An event ClickHouse
// rejects (a server exception, not a network error) is retried a bounded
// number of times on its own, then published to the dead-letter stream with
// the reason, and the batch goes on. An event that does not decode is a dead
// letter at once: retrying cannot fix it.
//
// The table conversations (conversations.go) holds each conversation as it
// is now: a direct one's row comes from its first message, a group's is
// folded (event.Meta.Fold) from all its membership rows, read back from
// ClickHouse after the batch's membership rows are inserted, so it is the
// same row whatever the order or number of times it is made.
//
// The history check (check.go) compares each stream with ClickHouse up to
// the ack floor, periodically in the projector and in `messenger
// check-history`, projects again what is missing, and writes the
// conversations rows missing or behind their events.
//
// Concurrency: one goroutine per conversation stream; nothing is shared
// between them but the ClickHouse connection pool and the metrics.
package projector
