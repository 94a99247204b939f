// Package history pages a conversation's stored events by seq.
//
// A Store answers ranges of seqs; the ClickHouse store is the projection,
// the stream store reads the conversation stream itself. The Pager puts
// them together so that a page never misses an acked event: what the
// projection has is read from ClickHouse, and whatever it has not yet (the
// newest events, or everything while ClickHouse is away) is read from the
// stream, starting after the last event ClickHouse had. The merge is
// invisible to the client.
//
// Everything here is safe for concurrent use.
package history
