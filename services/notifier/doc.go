// Package notifier sends push notifications to the members of a
// conversation who are away (PROTOCOL.md section 8). It is off the delivery
// path: it reads the conversation streams with a durable consumer of its
// own, after the events are stored and independently of the fan-out, so a
// slow or failing push provider, or a notifier that is down, never delays
// a message's ack or its delivery to connected members.
//
// For each stored text message it takes the recipients (the other member
// of a direct conversation; a group's members as of the message's seq,
// from conversation.MetaCache, never the sender) and adds the message to a
// pending push per (recipient, conversation). A pending push waits for the
// coalescing window from its first message, so several messages make one
// push ("3 new messages from alice"); a read receipt of that user at or
// past its messages (on any device), or a message the user sends there,
// cancels it. When the window ends the push is decided: nothing for a
// muted conversation, for a user with a live connection (an edge answers
// the online probe on the user's live subject) or who left within the
// offline grace (the edges' connection reports), over the per-user rate, or
// without a device; otherwise the push is claimed in the push_sent bucket
// (a compare-and-set of the last seq pushed to that user in that
// conversation) and one notification per registered device is queued to
// the worker pool of the device's provider.
//
// Exactly what is guaranteed across restarts: an event is acked only after
// every push it takes part in is decided, and a push is claimed before it
// is handed to a provider. A notifier killed at any point re-reads the
// unacked events, and a push whose last seq is at or below the claimed one
// is never sent again: each message is pushed at most once per recipient
// (and device), also with two notifiers on one partition during a
// hand-over. The price is the other side: a notifier killed between the
// claim and the provider's answer (or while a transient failure waits for
// its retry) loses that push; it is not sent later.
//
// Providers: each has a bounded queue and its own workers, a rate limit,
// retries of transient failures with exponential backoff (honouring
// Retry-After) until the TTL, and a timeout per send; a provider that hangs
// fills only its own queue (what does not fit is dropped and counted).
//
// Concurrency: one reader goroutine per owned partition feeds that
// partition's coalescer (its own mutex); one timer goroutine per partition
// hands due pushes to a shared pool of deciders; each provider has its own
// workers. Acks happen when the last push holding an event is decided.
package notifier
