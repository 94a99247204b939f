package main

import (
	"fmt"
	"sync"
	"time"
)

// receiptMode is --receipts: how recipients answer the messages they get.
type receiptMode string

const (
	receiptsNone      receiptMode = "none"      // no receipts
	receiptsEach      receiptMode = "each"      // a delivered receipt for every message (a client that does not throttle)
	receiptsThrottled receiptMode = "throttled" // as the Go client: per conversation the first at once, then at most one per second
)

func (m *receiptMode) String() string { return string(*m) }

// Set accepts none, each, throttled, and the old boolean flag's true
// (throttled) and false (none).
func (m *receiptMode) Set(s string) error {
	switch s {
	case "none", "false":
		*m = receiptsNone
	case "each":
		*m = receiptsEach
	case "throttled", "true":
		*m = receiptsThrottled
	default:
		return fmt.Errorf("none, each or throttled")
	}
	return nil
}

// describe says, for the notes, what the recipients did.
func (m receiptMode) describe() string {
	switch m {
	case receiptsEach:
		return "recipients answer every message with a delivered receipt (--receipts each)"
	case receiptsThrottled:
		return "recipients send delivered receipts as the Go client does: per conversation the first at once, then at most one per second (--receipts throttled)"
	}
	return "NO receipts (--receipts none)"
}

// throttleInterval is the Go client's default DeliveredInterval.
const throttleInterval = time.Second

// receiptThrottle is a raw user's --receipts throttled: the Go client's
// rule (client/delivered.go), per conversation on the leading edge: the
// first receipt at once; after one, the next waits until the interval has
// passed and carries the highest seq received meanwhile.
type receiptThrottle struct {
	write   func(conv string, seq int64)
	mu      sync.Mutex
	convs   map[string]*throttledConv
	sweepAt int
}

type throttledConv struct {
	want, sent int64
	last       time.Time
	waiting    bool // a timer will write want
}

// note records seq of conv as received; conv is copied only for a new conversation.
func (t *receiptThrottle) note(conv []byte, seq int64) {
	t.mu.Lock()
	c := t.convs[string(conv)]
	if c == nil {
		if t.convs == nil {
			t.convs = map[string]*throttledConv{}
		}
		t.sweep()
		c = &throttledConv{}
		t.convs[string(conv)] = c
	}
	if seq <= c.want {
		t.mu.Unlock()
		return
	}
	c.want = seq
	if c.waiting {
		t.mu.Unlock()
		return
	}
	if wait := throttleInterval - time.Since(c.last); wait > 0 {
		c.waiting = true
		key := string(conv)
		time.AfterFunc(wait, func() { t.fire(key) })
		t.mu.Unlock()
		return
	}
	c.last, c.sent = time.Now(), seq
	t.mu.Unlock()
	t.write(string(conv), seq)
}

func (t *receiptThrottle) fire(conv string) {
	t.mu.Lock()
	c := t.convs[conv]
	c.waiting = false
	if c.want <= c.sent {
		t.mu.Unlock()
		return
	}
	c.last, c.sent = time.Now(), c.want
	seq := c.want
	t.mu.Unlock()
	t.write(conv, seq)
}

// sweep forgets conversations with nothing pending once there are many (the
// fresh scenario opens one per message). Called with mu held.
func (t *receiptThrottle) sweep() {
	if len(t.convs) < max(4096, t.sweepAt) {
		return
	}
	for k, c := range t.convs {
		if !c.waiting && time.Since(c.last) >= throttleInterval {
			delete(t.convs, k)
		}
	}
	t.sweepAt = 2 * len(t.convs)
}
