// Package fanout copies every stored conversation event into the queue of
// each recipient (the user-queue streams), and announces each queue entry on
// the recipient's live subject, which only the edges holding one of the
// recipient's connections subscribe to.
//
// Concurrency: one goroutine reads each conversation stream in order (an
// ordered consumer from a checkpoint); queue writes go to shard workers
// chosen by a hash of the recipient, so one user's entries are written by one
// goroutine, in source order. Writes are conditional on the user's last queue
// sequence (compare-and-set), and carry a vector of the highest source
// sequence written per conversation stream, so a replay after a crash, or a
// second fan-out process, never writes an entry twice.
package fanout
