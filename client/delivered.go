package client

import (
	"sync"
	"time"
)

// deliveredInterval is the shortest gap between two automatic `delivered`
// receipts for one conversation.
const deliveredInterval = 50 * time.Millisecond

// deliveredSweepAt is the map size past which idle conversations are forgotten.
const deliveredSweepAt = 4096

// deliveredReceipts coalesces the automatic cumulative `delivered` receipts of
// Config.AutoDelivered: per conversation, the first is sent at once, the
// following ones at most once per deliveredInterval, with the highest seq.
type deliveredReceipts struct {
	send func(conv string, seq int64) error

	mu      sync.Mutex
	convs   map[string]*deliveredConv
	sweepAt int
}

type deliveredConv struct {
	want  int64 // highest seq received
	sent  int64 // highest seq written
	last  time.Time
	timer *time.Timer
}

func newDeliveredReceipts(send func(conv string, seq int64) error) *deliveredReceipts {
	return &deliveredReceipts{send: send, convs: make(map[string]*deliveredConv), sweepAt: deliveredSweepAt}
}

// note records that seq of conv has been handed to the application.
func (d *deliveredReceipts) note(conv string, seq int64) {
	if seq <= 0 {
		return
	}
	d.mu.Lock()
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
	if st.timer != nil {
		d.mu.Unlock()
		return
	}
	if wait := deliveredInterval - time.Since(st.last); wait > 0 {
		st.timer = time.AfterFunc(wait, func() { d.fire(conv) })
		d.mu.Unlock()
		return
	}
	st.last = time.Now()
	d.mu.Unlock()
	d.write(conv, seq)
}

// fire sends the coalesced receipt of conv when its interval has passed.
func (d *deliveredReceipts) fire(conv string) {
	d.mu.Lock()
	st := d.convs[conv]
	if st == nil {
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
		if st.timer == nil && st.want <= st.sent && now.Sub(st.last) >= deliveredInterval {
			delete(d.convs, conv)
		}
	}
	d.sweepAt = max(deliveredSweepAt, 2*len(d.convs))
}
