package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"slices"
	"time"
)

// Ack is the server's answer to a send: the message is durably stored.
type Ack struct {
	ID     string
	Conv   string
	Seq    int64
	TS     int64
	Online bool
}

// defaultRetryAfter is the wait before resending a send answered
// `unavailable` or `rate_limited` without retry_after_ms.
const defaultRetryAfter = 200 * time.Millisecond

// NewID returns a fresh send id: 16 random bytes, base64url without padding
// (22 characters of [A-Za-z0-9_-]).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// pendingSend is a send awaiting its ack. Its fields after done are written
// once, before done is closed.
type pendingSend struct {
	id      string
	order   uint64 // creation order, so that resends keep the original order
	frame   []byte
	waiters int
	done    chan struct{}
	ack     Ack
	err     error
}

// Send sends text to a user (to) or to a conversation (conv), exactly one of
// them, under a fresh id, and waits for the ack. See SendID.
func (c *Client) Send(ctx context.Context, to, conv, text string) (Ack, error) {
	return c.SendID(ctx, NewID(), to, conv, text)
}

// SendID sends under a caller-chosen id (an empty id gets a fresh one) and
// waits until the ack arrives, an error frame other than `unavailable` or
// `rate_limited` answers it (*Error), ctx ends or the client is closed.
// Until then the send is kept and resent with the same id after every
// reconnect and after every retryable error; the server deduplicates by id.
// Two concurrent calls with the same id share one pending send.
func (c *Client) SendID(ctx context.Context, id, to, conv, text string) (Ack, error) {
	if (to == "") == (conv == "") {
		return Ack{}, &Error{Code: CodeBadRequest, Message: "exactly one of to or conv is required"}
	}
	if id == "" {
		id = NewID()
	}
	frame, err := json.Marshal(sendFrame{Type: "send", ID: id, To: to, Conv: conv, Text: text})
	if err != nil {
		return Ack{}, err
	}

	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return Ack{}, ErrClosed
	}
	p, ok := c.pending[id]
	if !ok {
		c.sendOrder++
		p = &pendingSend{id: id, order: c.sendOrder, frame: frame, done: make(chan struct{})}
		c.pending[id] = p
	}
	p.waiters++
	cn := c.cur
	c.mu.Unlock()

	if !ok && cn != nil {
		// A failed write closes the connection; the send stays pending and is
		// resent after the reconnect.
		_ = c.writeTo(cn, frame)
	}

	select {
	case <-p.done:
		return p.ack, p.err
	default:
	}
	select {
	case <-p.done:
		return p.ack, p.err
	case <-ctx.Done():
		c.release(p)
		return Ack{}, ctx.Err()
	case <-c.ctx.Done():
		c.release(p)
		return Ack{}, ErrClosed
	}
}

// release drops one waiter; the last one out forgets the send.
func (c *Client) release(p *pendingSend) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.waiters--
	if p.waiters == 0 && c.pending[p.id] == p {
		delete(c.pending, p.id)
	}
}

// resolve completes the pending send with that id, if any.
func (c *Client) resolve(id string, ack Ack, err error) {
	c.mu.Lock()
	p, ok := c.pending[id]
	if ok {
		delete(c.pending, id)
	}
	c.mu.Unlock()
	if ok {
		p.ack, p.err = ack, err
		close(p.done)
	}
}

// handleAck is called by the reader for an `ack` frame.
func (c *Client) handleAck(ev *Event) {
	ack := Ack{ID: ev.ID, Conv: ev.Conv, Seq: ev.Seq, TS: ev.TS}
	if ev.Online != nil {
		ack.Online = *ev.Online
	}
	c.resolve(ev.ID, ack, nil)
}

// handleSendError is called by the reader for an `error` frame with an id.
func (c *Client) handleSendError(ev *Event) {
	if !retryable(ev.Code) {
		c.resolve(ev.ID, Ack{}, &Error{Code: ev.Code, Message: ev.Message, RetryAfterMs: ev.RetryAfterMs})
		return
	}
	wait := defaultRetryAfter
	if ev.RetryAfterMs > 0 {
		wait = time.Duration(ev.RetryAfterMs) * time.Millisecond
	}
	id := ev.ID
	c.logf("client: send %s answered %s, retrying in %v", id, ev.Code, wait)
	time.AfterFunc(wait, func() { c.resend(id) })
}

// resend writes a still pending send again on the current connection. With
// no connection it does nothing: the reconnect resends every pending send.
func (c *Client) resend(id string) {
	c.mu.Lock()
	p := c.pending[id]
	cn := c.cur
	c.mu.Unlock()
	if p != nil && cn != nil && c.ctx.Err() == nil {
		_ = c.writeTo(cn, p.frame)
	}
}

// pendingFrames lists the frames of the pending sends in creation order.
// The caller holds c.mu.
func (c *Client) pendingFrames() [][]byte {
	ps := make([]*pendingSend, 0, len(c.pending))
	for _, p := range c.pending {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *pendingSend) int {
		switch {
		case a.order < b.order:
			return -1
		case a.order > b.order:
			return 1
		}
		return 0
	})
	frames := make([][]byte, len(ps))
	for i, p := range ps {
		frames[i] = p.frame
	}
	return frames
}
