package client

import (
	"sync"
	"time"
)

// defaultDeliveredInterval is Config.DeliveredInterval's default. At one
// message a second per conversation, a shorter window never merges two
// receipts, and each receipt costs the platform a stored event, two queue
// entries and a watermark update, as much as the message itself.
const defaultDeliveredInterval = time.Second

// deliveredSweepAt is the map size past which idle conversations are forgotten.
const deliveredSweepAt = 4096

// deliveredReceipts throttles the automatic cumulative `delivered` receipts
// of Config.AutoDelivered, per conversation, on the leading edge: the first
// receipt of a conversation is written at once; after one was written, the
// next waits until interval has passed since it and then carries the
// highest seq received meanwhile (PROTOCOL.md: receipts are cumulative and
// may be coalesced). Receipts that could not be written (no connection) go
// out after the reconnect (flush); those still waiting when the client
// closes go out then (close).
type deliveredReceipts struct {
	send     func(conv string, seq int64) error
	interval time.Duration

	mu      sync.Mutex
	convs   map[string]*deliveredConv
	sweepAt int
	closed  bool
}

type deliveredConv struct {
	want  int64     // highest seq received
	sent  int64     // highest seq written (or covered by a read receipt)
	last  time.Time // when the last receipt was written
	timer *time.Timer
}

func newDeliveredReceipts(interval time.Duration, send func(conv string, seq int64) error) *deliveredReceipts {
	return &deliveredReceipts{send: send, interval: interval, convs: make(map[string]*deliveredConv), sweepAt: deliveredSweepAt}
}

// note records that seq of conv has been handed to the application.
func (d *deliveredReceipts) note(conv string, seq int64) {
	if seq <= 0 {
		return
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	st := d.convs[conv]
	if st == nil {
		d.sweepLocked()
		st = &deliveredConv{}
		d.convs[conv] = st
	}
	if seq <= st.want {
		d.mu.Unlock()
		return
	}
	st.want = seq
	if st.timer != nil || seq <= st.sent {
		d.mu.Unlock()
		return
	}
	if wait := d.interval - time.Since(st.last); wait > 0 {
		st.timer = time.AfterFunc(wait, func() { d.fire(conv) })
		d.mu.Unlock()
		return
	}
	st.last = time.Now()
	d.mu.Unlock()
	d.write(conv, seq)
}

// covered records that a `read` receipt up to seq was written for conv:
// read implies delivered, so no delivered receipt at or below it is needed.
func (d *deliveredReceipts) covered(conv string, seq int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st := d.convs[conv]; st != nil && seq > st.sent {
		st.sent = seq
	}
}

// fire sends the coalesced receipt of conv when its interval has passed.
func (d *deliveredReceipts) fire(conv string) {
	d.mu.Lock()
	st := d.convs[conv]
	if st == nil || d.closed {
		d.mu.Unlock()
		return
	}
	st.timer = nil
	if st.want <= st.sent {
		d.mu.Unlock()
		return
	}
	seq := st.want
	st.last = time.Now()
	d.mu.Unlock()
	d.write(conv, seq)
}

// flush resends, after a reconnect, every receipt that could not be written.
func (d *deliveredReceipts) flush() {
	d.mu.Lock()
	var convs []string
	for conv, st := range d.convs {
		if st.timer == nil && st.want > st.sent {
			convs = append(convs, conv)
		}
	}
	d.mu.Unlock()
	for _, conv := range convs {
		d.fire(conv)
	}
}

// close writes, without waiting for their interval, the receipts still
// pending (throttled, or not written for want of a connection), and stops
// all further ones. The client calls it before it closes the socket.
func (d *deliveredReceipts) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	type pending struct {
		conv string
		seq  int64
	}
	var out []pending
	for conv, st := range d.convs {
		if st.timer != nil {
			st.timer.Stop()
			st.timer = nil
		}
		if st.want > st.sent {
			out = append(out, pending{conv, st.want})
		}
	}
	d.mu.Unlock()
	for _, p := range out {
		if d.send(p.conv, p.seq) != nil {
			return // the connection is gone: the rest would fail too
		}
	}
}

func (d *deliveredReceipts) write(conv string, seq int64) {
	if d.send(conv, seq) != nil {
		return // not written: flush retries after the reconnect
	}
	d.mu.Lock()
	if st := d.convs[conv]; st != nil && seq > st.sent {
		st.sent = seq
	}
	d.mu.Unlock()
}

// sweepLocked forgets conversations with nothing left to send once the map
// has grown past sweepAt, so that the map stays bounded by the active ones.
func (d *deliveredReceipts) sweepLocked() {
	if len(d.convs) < d.sweepAt {
		return
	}
	now := time.Now()
	for conv, st := range d.convs {
		if st.timer == nil && st.want <= st.sent && now.Sub(st.last) >= d.interval {
			delete(d.convs, conv)
		}
	}
	d.sweepAt = max(deliveredSweepAt, 2*len(d.convs))
}
