// Package streams holds every JetStream stream, consumer and key-value bucket
// definition of the platform as Go values built from package subjects, and
// applies them idempotently (create or update) at start.
//
// Names are constants: renaming a stream or a durable consumer would make a
// deployment re-create it and re-consume everything.
//
// The package never logs; functions are safe for concurrent use.
package streams
