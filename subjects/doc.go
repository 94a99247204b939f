// Package subjects is the one place where NATS subject names are built and
// parsed. Every other package asks it for a subject; none formats one.
//
// The grammar (a change to it is a breaking change, see ARCHITECTURE.md):
//
//	conv.<p>.<conv>   stored conversation events (msg), in stream CONV_<p>
//	rcpt.<p>.<conv>   receipts of a conversation, in stream CONV_<p>
//	uq.<p>.<user>     a user's queue of stored events, in stream UQ_<p>
//	live.<p>.<user>   live copy of a user's queue entries (core NATS only)
//	inbox.<p>.<user>.<conv>  user's summary of conv (conversation list), in INBOX_<p>
//	dead.<component>  events a component gave up on, with the reason, in DEAD_LETTERS
//
// <p> is the logical partition of the conversation or user: fnv32a of the id
// modulo the partition count, exactly what the NATS server's
// {{partition(n,1)}} subject-mapping function computes. The partition count
// is fixed when the streams are first created.
//
// Functions here are pure and safe for concurrent use; the package never logs.
package subjects
