// Package presence decides who is online and tells the users who care.
//
// Edges report, on core NATS, a user's first connection and last
// disconnection on them, beat a heartbeat every few seconds, and send the
// full list of their users every SyncEvery (and when asked, after this
// service starts). The service keeps per user the edges holding it. A user
// is online while one of them is alive. Changes are told late on purpose,
// so that a flapping connection tells nobody: online only when the user is
// still connected OnlineDelay after connecting, offline only when no
// connection came back for OfflineDelay. An edge whose heartbeat stops for
// EdgeTimeout is dead and loses its users: nobody has to clean up after it.
//
// A change is published once, on the user's change subject, which only the
// edges holding a connection that watches the user subscribe to; it is also
// written to the presence bucket, which bulk pulls read. So a connect costs
// messages in proportion to the user's watchers, not to its contacts.
//
// Concurrency: one mutex guards the state; timers run on their own
// goroutines and take it.
package presence
