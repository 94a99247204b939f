// Package pushreg keeps the push registrations and the muted conversations
// of every user, as events with a read model.
//
// Every change is an event (Event) stored first in stream PUSHREG, one
// subject per registration and per muted conversation
// (subjects.PushRegDevice, subjects.PushRegMute), published with a Msg-Id
// so that a retried publish stores it once. Only then is the read model
// written: KV push (a registration per key "<user>.<id>", what the notifier
// and the edge read) and KV mutes (the last mute event per key
// "<user>.<conv>"). The last event of each subject is its state, so the
// buckets can be rebuilt from the stream (Rebuild; `messenger rebuild-push`).
//
// The edge writes through a Store (register, unregister, mute, unmute) and
// the notifier reads through one (Devices, Muted) and removes a token a
// provider calls gone (Remove): the rules live here once.
//
// A Store is safe for concurrent use; it keeps no state of its own beyond
// its handles. Two registrations of one user at once may leave one more
// than the cap until the next registration. Two mute changes of one
// conversation at once are ordered by their stream sequence: the mutes
// bucket is written with compare-and-set and never goes back to an older
// event.
package pushreg
