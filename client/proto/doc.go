// Package proto holds what the client contract (PROTOCOL.md) fixes and both
// the Go client and the edge need: the error codes of section 9 and the id
// grammar of sections 1–3.
//
// It is the contract's reference, so it lives with the Go client and imports
// nothing of the server: the edge imports it, never the other way round. It
// has no state; everything in it is safe for concurrent use.
package proto
