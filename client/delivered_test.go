package client_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"messenger/client"
)

// receiptLog records the receipt frames a fakeServer gets, with the time
// each arrived.
type receiptLog struct {
	mu sync.Mutex
	rs []loggedReceipt
}

type loggedReceipt struct {
	conv, status string
	seq          int64
	at           time.Time
}

func (l *receiptLog) hook(s *fakeServer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onFrame = func(_ *fakeServer, _ *gws.Conn, _ string, f map[string]any) bool {
		if f["type"] == "receipt" {
			seq, _ := f["seq"].(float64)
			conv, _ := f["conv"].(string)
			status, _ := f["status"].(string)
			l.mu.Lock()
			l.rs = append(l.rs, loggedReceipt{conv: conv, status: status, seq: int64(seq), at: time.Now()})
			l.mu.Unlock()
		}
		return false
	}
}

// of returns the receipts of conv so far.
func (l *receiptLog) of(conv string) []loggedReceipt {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []loggedReceipt
	for _, r := range l.rs {
		if r.conv == conv {
			out = append(out, r)
		}
	}
	return out
}

// waitN waits until conv has n receipts and returns them.
func (l *receiptLog) waitN(t *testing.T, timeout time.Duration, conv string, n int) []loggedReceipt {
	t.Helper()
	var rs []loggedReceipt
	waitFor(t, timeout, func() error {
		if rs = l.of(conv); len(rs) < n {
			return fmt.Errorf("%d receipts of %s, want %d: %+v", len(rs), conv, n, rs)
		}
		return nil
	})
	return rs
}

// TestDeliveredThrottle: per conversation, the first delivered receipt goes
// at once; the following ones wait until DeliveredInterval has passed since
// the last one written, then one goes with the highest seq; a conversation
// quiet for an interval starts again with an immediate receipt; another
// conversation is not held back by the first.
func TestDeliveredThrottle(t *testing.T) {
	const interval = time.Second // the default
	s := newFakeServer(t)
	var log receiptLog
	log.hook(s)
	dial(t, client.Config{URLs: []string{s.listen()}, AutoDelivered: true})
	const conv, other = "d_u1_u2", "d_u1_u3"

	// Leading edge: the first receipt is not held for the interval.
	start := time.Now()
	s.inject("u2", "u1", "first")
	first := log.waitN(t, interval/2, conv, 1)[0]
	if first.seq != 1 || first.status != "delivered" {
		t.Fatalf("first receipt %+v, want delivered seq 1", first)
	}

	// A burst right after: held until the interval has passed, then one
	// receipt with the highest seq.
	for i := range 9 {
		s.inject("u2", "u1", fmt.Sprint(i))
	}
	// Meanwhile another conversation gets its own first receipt at once.
	s.inject("u3", "u1", "elsewhere")
	if r := log.waitN(t, interval/2, other, 1)[0]; r.seq != 1 {
		t.Fatalf("other conversation's receipt %+v, want seq 1", r)
	}
	rs := log.waitN(t, patience, conv, 2)
	second := rs[1]
	if second.seq != 10 {
		t.Errorf("second receipt carries seq %d, want the highest, 10", second.seq)
	}
	// The client waits interval after writing the first; the server saw the
	// first at most a few ms after it was written.
	if gap := second.at.Sub(first.at); gap < interval-50*time.Millisecond {
		t.Errorf("second receipt %v after the first, want about %v", gap, interval)
	}

	// Nothing more is owed: no third receipt within another interval.
	time.Sleep(interval + 100*time.Millisecond)
	if rs := log.of(conv); len(rs) != 2 {
		t.Fatalf("%d receipts for 10 messages, want 2: %+v", len(rs), rs)
	}

	// Quiet for more than an interval: the next one goes at once again.
	injected := time.Now()
	s.inject("u2", "u1", "later")
	third := log.waitN(t, interval/2, conv, 3)[2]
	if third.seq != 11 {
		t.Errorf("third receipt %+v, want seq 11", third)
	}
	t.Logf("first receipt %v after the message; third %v after its message", first.at.Sub(start), third.at.Sub(injected))
}

// TestDeliveredFlushedOnClose: a receipt waiting for its interval is written
// when the client closes, not lost.
func TestDeliveredFlushedOnClose(t *testing.T) {
	s := newFakeServer(t)
	var log receiptLog
	log.hook(s)
	var rec recorder
	c := dial(t, client.Config{URLs: []string{s.listen()}, OnEvent: rec.on, AutoDelivered: true, DeliveredInterval: time.Hour})
	const conv = "d_u1_u2"
	for i := range 5 {
		s.inject("u2", "u1", fmt.Sprint(i))
	}
	waitFor(t, patience, func() error {
		if n := len(rec.ofType("msg")); n < 5 {
			return fmt.Errorf("%d of 5 messages handed over", n)
		}
		return nil
	})
	// The first receipt (seq 1) went at once; the rest waits for an hour.
	log.waitN(t, patience, conv, 1)
	_ = c.Close()
	rs := log.waitN(t, patience, conv, 2)
	if last := rs[len(rs)-1]; last.seq != 5 || last.status != "delivered" {
		t.Fatalf("receipt written by Close %+v, want delivered seq 5", last)
	}
}

// TestReadReceiptCoversDelivered: an application's read receipt at or above
// the waiting delivered seq makes the automatic delivered receipt needless.
func TestReadReceiptCoversDelivered(t *testing.T) {
	const interval = 300 * time.Millisecond
	s := newFakeServer(t)
	var log receiptLog
	log.hook(s)
	var rec recorder
	c := dial(t, client.Config{URLs: []string{s.listen()}, OnEvent: rec.on, AutoDelivered: true, DeliveredInterval: interval})
	const conv = "d_u1_u2"
	s.inject("u2", "u1", "one")
	log.waitN(t, patience, conv, 1)
	s.inject("u2", "u1", "two")
	waitFor(t, patience, func() error {
		if n := len(rec.ofType("msg")); n < 2 {
			return fmt.Errorf("%d of 2 messages handed over", n)
		}
		return nil
	})
	if err := c.Receipt(conv, 2, "read"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * interval)
	rs := log.of(conv)
	if len(rs) != 2 || rs[1].status != "read" || rs[1].seq != 2 {
		t.Fatalf("receipts %+v, want delivered 1 then read 2 only", rs)
	}
}
