// Package edge holds the client-facing server: WebSocket sessions (on
// github.com/lxzan/gws) and the HTTP API of PROTOCOL.md. An edge keeps no
// state that matters beyond its connections: sends are stored in JetStream
// before they are acked, and deliveries come from the user queues.
//
// Concurrency: the gws handler only turns frames into calls on a session.
// Sessions of one user on this edge are grouped in a hub shard (a mutex per
// shard); each session has its own mutex guarding its queue position, and a
// bounded count of frames waiting to be written. Live announcements are
// dispatched by a fixed set of goroutines, one per dispatch shard, so one
// user's announcements are handled in order. Replays run in their own
// goroutines, bounded by a semaphore.
package edge
