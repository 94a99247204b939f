// Package conversation owns a conversation's state outside its stream: the
// metadata fold kept in KV convs, and, for a process that writes events
// (the edge), the per-conversation state from which the next seq is
// assigned and the commit that stores it.
//
// Store is the one writer of KV convs. Read reads a conversation's stored
// metadata; CatchUp folds the events that copy lacks from the conversation
// stream (FoldStream) and writes the result back, a compare-and-set on the
// revision. The edge (after a membership event, or when it finds the copy
// lagging) and the fan-out (when it finds the copy lagging) both write
// through it.
//
// Memberships keeps per user the groups it is in (KV user_groups), written
// by the edges before a create or an add so that a user's groups stay
// within a bound; a record never lags the events (it may only be ahead).
//
// Cache keeps per conversation the last seq, its stream sequence, its ts
// and the metadata as of it (ADR 0001). Commit publishes event seq+1 with
// the expected last subject sequence and a Nats-Msg-Id, reads the last
// event again and retries when another writer stored one first, and
// answers a duplicate with the original event.
//
// Concurrency: Store, Memberships and Cache are safe for concurrent use. A State's
// fields are guarded by its lock, held across a commit's publish so that
// one process never races itself for a seq; hints learnt from
// announcements are recorded under a second lock, so they never wait for
// a publish. A *event.Meta handed out is never modified afterwards (a new
// fold is made on a copy): callers read it without a lock.
package conversation
