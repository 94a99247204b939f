// Package partition spreads the conversation-stream partitions over the
// live workers of one kind (fan-outs, projectors), so that each partition is
// worked by one of them and adding a worker adds capacity.
//
// Membership is a lease in the KV bucket streams.BucketWorkers: every
// worker puts its key "<kind>.<id>" every heartbeat; the bucket's TTL
// (streams.WorkersTTL) removes the key of a worker that stopped beating
// (crashed, paused, cut off), and a worker that stops cleanly deletes it
// after handing its partitions over. Each worker reads the live keys of its
// kind every heartbeat (one multi-last direct get: no consumer) and owns the
// partitions that rendezvous hashing gives it: partition p belongs to the
// member with the highest hash(member, p), so a member joining or leaving
// moves only the partitions it gains or loses.
//
// Guarantees: a partition whose owner died waits at most WorkersTTL plus one
// heartbeat for a new owner; one whose owner left cleanly, one heartbeat. A
// partition taken from a member still alive (a worker joined) starts two
// heartbeats later, once the old owner has handed it over (its checkpoint
// stored). Views of the membership differ for up to a heartbeat between
// workers, so two of them may still work one partition for a moment (a
// slow hand-over); the workers' writes are idempotent (compare-and-set with
// a source vector, ReplacingMergeTree), so an overlap costs work, never
// correctness. A worker that cannot read the membership keeps what it owns
// (overlap rather than a hole).
//
// Concurrency: Member.Run owns all the state; Work functions run one
// goroutine per owned partition, and a partition is never started again
// before its previous Work returned.
package partition
