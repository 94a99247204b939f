// Package client is the Go client of the messenger's WebSocket protocol
// (PROTOCOL.md sections 2, 3 and 6), used by the integration tests, the
// benchmark and the command-line chat.
//
// A Client holds one connection to one edge at a time and keeps it: when the
// connection drops, whatever the close code (1001 draining, 4008 slow
// reader, 4001 expired token, a network error, or no frame received for
// 60 s), it reconnects with jittered exponential backoff to the next URL of
// Config.URLs, calling Config.Token again and passing the saved cursor.
//
// # Guarantees
//
//   - Cursor: the client saves the cursor of every stored event (a msg or a
//     receipt with a cursor) it reads and resumes from it, so no stored event
//     is missed across reconnects. Cursor() reports the cursor of the last
//     stored event handed to OnEvent: persist it to resume in a later Client.
//   - No duplicates: a msg whose (conv, seq) was already handed over is
//     dropped (a bounded per-conversation high-water mark, as a safety net
//     behind the cursor), except while a Sync the caller asked for is
//     outstanding.
//   - cursor_expired: the error is passed to OnEvent and the client continues
//     from the hello cursor; reloading history is the caller's job.
//   - Sends: a send waiting for its ack stays in a pending table keyed by its
//     id and is resent, with the same id, to/conv and text, after every
//     reconnect and after an `unavailable` or `rate_limited` answer (after
//     retry_after_ms, or 200 ms). The server deduplicates by id, so Send
//     returns the one ack of the message. Any other error frame for the id
//     fails the Send with an *Error.
//   - Keep-alive: a ping frame goes out after 20 s without a frame in either
//     direction; WebSocket pings are answered with pongs.
//   - Watch lists are sent again after each reconnect.
//   - Delivered receipts (AutoDelivered): per conversation the first goes at
//     once, later ones at most once per DeliveredInterval (1 s) with the
//     highest seq; those not written for want of a connection go after the
//     reconnect, those still throttled are written by Close.
//
// # Concurrency
//
// All methods of Client are safe for concurrent use. Frames are read on the
// gws ReadLoop goroutine of the current connection, which handles acks
// itself and queues everything else; a single dispatcher goroutine takes the
// queue and calls Config.OnEvent, never concurrently and in arrival order.
// OnEvent may call any method, Send included (acks do not go through the
// queue), but should return quickly: once the bounded queue (4096 events) is
// full the reader stops reading, and the server then closes the connection
// with 4008 and the client resumes from its cursor. OnState is called from
// Dial and then from one supervisor goroutine, never concurrently. Writes
// are serialised by gws and bounded by a 10 s write deadline; a failed write
// drops the connection, which is then replaced.
//
// Close stops reconnecting, closes the socket and makes waiting Sends return
// ErrClosed; it does not wait for OnEvent or OnState to return, so it may be
// called from them.
package client
