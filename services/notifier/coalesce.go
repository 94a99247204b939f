package notifier

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/services/event"
)

// held is a stored event some pending pushes stand for: acked when the
// last of them is decided (a negative ack instead when one of them could
// not be, so that it comes back).
type held struct {
	msg    jetstream.Msg
	n      atomic.Int32
	failed atomic.Bool
}

// newHeld holds msg once for its reader, who releases it after adding it
// to every recipient's pending push.
func newHeld(msg jetstream.Msg) *held {
	h := &held{msg: msg}
	h.n.Store(1)
	return h
}

func (h *held) hold() { h.n.Add(1) }

// release drops one hold; failed marks the event to be read again.
func (h *held) release(failed bool) {
	if failed {
		h.failed.Store(true)
	}
	if h.n.Add(-1) != 0 {
		return
	}
	if h.failed.Load() {
		_ = h.msg.NakWithDelay(time.Second)
		return
	}
	_ = h.msg.Ack()
}

// maxSeqs bounds the seqs a pending push remembers (for a read that covers
// only part of it); past it the count goes on.
const maxSeqs = 256

// pending is the push one user will get for one conversation: the messages
// since the first of them, until the window ends.
type pending struct {
	user, conv string
	due        time.Time
	group      bool
	title      string // a group's title
	from       string // the last message's sender
	senders    []string
	text       string // the last message's text
	ts         int64  // the last message's time (unix ms)
	seqs       []uint64
	count      int
	last       uint64 // highest seq
	holds      []*held
	done       bool // decided, cancelled or handed back
}

// add takes one more message.
func (p *pending) add(m *event.Msg, h *held) {
	h.hold()
	p.holds = append(p.holds, h)
	if m.Seq <= p.last {
		return // delivered again (after AckWait): counted already
	}
	p.last, p.from, p.text, p.ts = m.Seq, m.From, m.Text, m.TS
	p.count++
	if len(p.seqs) < maxSeqs {
		p.seqs = append(p.seqs, m.Seq)
	}
	if len(p.senders) < 3 && !contains(p.senders, m.From) {
		p.senders = append(p.senders, m.From)
	}
}

// readUpTo drops the messages at or below seq; it tells whether any is left.
func (p *pending) readUpTo(seq uint64) bool {
	if seq >= p.last {
		p.count = 0
		return false
	}
	kept := p.seqs[:0]
	for _, s := range p.seqs {
		if s > seq {
			kept = append(kept, s)
		}
	}
	p.count -= len(p.seqs) - len(kept)
	p.seqs = kept
	p.count = max(p.count, 1)
	return true
}

// finish releases the events the push stood for.
func (p *pending) finish(failed bool) {
	for _, h := range p.holds {
		h.release(failed)
	}
	p.holds = nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type pendingKey struct{ user, conv string }

// coalescer keeps the pending pushes of one partition's conversations.
// Every pending push waits the same window from its first message, so they
// fall due in the order they were made: a FIFO, no heap.
type coalescer struct {
	window time.Duration
	m      *metrics

	mu    sync.Mutex
	byKey map[pendingKey]*pending
	fifo  []*pending
	wake  chan struct{}
}

func newCoalescer(window time.Duration, m *metrics) *coalescer {
	return &coalescer{window: window, m: m, byKey: map[pendingKey]*pending{}, wake: make(chan struct{}, 1)}
}

// add adds message m to user's pending push of its conversation.
func (c *coalescer) add(user string, m *event.Msg, title string, h *held) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := pendingKey{user, m.Conv}
	p := c.byKey[k]
	if p == nil {
		p = &pending{user: user, conv: m.Conv, due: time.Now().Add(c.window), group: m.To == "", title: title}
		c.byKey[k] = p
		c.fifo = append(c.fifo, p)
		c.m.pending.Inc()
		if len(c.fifo) == 1 {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
	p.add(m, h)
}

// read: user has read conv up to seq (or wrote there): what is pending for
// it there at or below seq is not pushed.
func (c *coalescer) read(user, conv string, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.byKey[pendingKey{user, conv}]
	if p == nil || p.readUpTo(seq) {
		return
	}
	delete(c.byKey, pendingKey{user, conv})
	p.done = true
	c.m.pending.Dec()
	c.m.decisions.WithLabelValues("read").Inc()
	p.finish(false)
}

// run hands each pending push to out when its window ends, until ctx ends.
func (c *coalescer) run(ctx context.Context, out chan<- *pending) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		c.mu.Lock()
		var due *pending
		wait := time.Hour
		for len(c.fifo) > 0 {
			p := c.fifo[0]
			if p.done {
				c.fifo[0] = nil
				c.fifo = c.fifo[1:]
				continue
			}
			if d := time.Until(p.due); d > 0 {
				wait = d
				break
			}
			c.fifo[0] = nil
			c.fifo = c.fifo[1:]
			delete(c.byKey, pendingKey{p.user, p.conv})
			p.done = true
			c.m.pending.Dec()
			due = p
			break
		}
		c.mu.Unlock()
		if due != nil {
			select {
			case out <- due:
			case <-ctx.Done():
				due.finish(true)
				return
			}
			continue
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-t.C:
		}
	}
}

// handBack releases what is still pending, unacked: the events come back
// to whichever notifier reads the partition next.
func (c *coalescer) handBack() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.fifo {
		if !p.done {
			p.done = true
			c.m.pending.Dec()
			p.finish(true)
		}
	}
	c.fifo = nil
	c.byKey = map[pendingKey]*pending{}
}
