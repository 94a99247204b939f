package edge

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/streams"
)

// Close codes of PROTOCOL.md section 3.
const (
	closeGoingAway   = 1001
	closeSlowReader  = 4008
	closeTokenExpiry = 4001
)

// sink is the transport under a session: it writes frames in order without
// blocking the caller, and calls done once a frame has left.
type sink interface {
	write(frame []byte, done func())
	close(code uint16, reason string)
}

// session is one client connection's delivery state.
//
// Invariant: last is the queue sequence of the last stored event queued to
// the client; every entry of the user's queue up to last was queued, in
// order, once. While replaying is set, live announcements are not queued
// (only noted in missed) and the replay goroutine owns the catch-up.
type session struct {
	e      *Edge
	user   string
	device string
	exp    time.Time
	out    sink

	mu        sync.Mutex
	last      uint64
	replaying bool
	missed    uint64 // highest announcement seen while replaying
	syncReply bool   // send `synced` when the running catch-up ends
	closed    bool
	watching  []string   // users whose presence changes it gets (guarded by hub.watchMu)
	watch     watchState // what it asked to watch, and whom it may see (presence.go)
	sending   int        // sends of this connection awaiting their ack
	held      []heldItem // announcements held back while sending > 0
	heldOver  bool       // more were held back than kept: catch up after the acks

	frames   atomic.Int64 // frames waiting to be written
	bytes    atomic.Int64
	lastRead atomic.Int64 // unix nanos of the last frame from the client
}

// offer is a live announcement of the user's queue entry seq, whose
// predecessor in the queue is prev.
func (s *session) offer(seq, prev uint64, doc []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || seq <= s.last {
		return
	}
	if s.replaying {
		s.missed = max(s.missed, seq)
		return
	}
	if s.sending > 0 {
		if len(s.held) < maxHeld {
			s.held = append(s.held, heldItem{seq: seq, prev: prev, doc: doc})
		} else {
			s.heldOver = true // the queue has them all
		}
		return
	}
	s.offerLocked(seq, prev, doc)
}

// maxHeld bounds the announcements held back behind a pending ack.
const maxHeld = 256

type heldItem struct {
	seq, prev uint64
	doc       []byte
}

// releaseHeldLocked delivers what was held back behind acks.
func (s *session) releaseHeldLocked() {
	held := s.held
	s.held = nil
	if s.heldOver {
		s.heldOver = false
		s.startCatchUpLocked(false)
		return
	}
	for _, it := range held {
		if s.replaying {
			s.missed = max(s.missed, it.seq)
			continue
		}
		s.offerLocked(it.seq, it.prev, it.doc)
	}
}

func (s *session) offerLocked(seq, prev uint64, doc []byte) {
	if s.closed || seq <= s.last {
		return
	}
	if prev > s.last {
		// An announcement went missing between last and this one.
		s.e.m.gaps.Inc()
		s.startCatchUpLocked(false)
		s.missed = seq
		return
	}
	s.last = seq
	s.queueLocked(event.WithCursor(doc, seq))
}

// queueLocked hands a frame to the transport, or closes a reader that fell
// too far behind (it resumes from its cursor). s.mu must be held.
func (s *session) queueLocked(frame []byte) {
	if !s.reserveLocked(len(frame)) {
		return
	}
	size := int64(len(frame))
	s.e.m.delivered.Inc()
	s.out.write(frame, func() { s.unreserve(size) })
}

// reserveLocked counts a frame of size bytes into the queue, or closes a
// reader that fell too far behind (it resumes from its cursor) and answers
// false. s.mu must be held.
func (s *session) reserveLocked(size int) bool {
	if s.closed {
		return false
	}
	n := s.frames.Add(1)
	b := s.bytes.Add(int64(size))
	if n > int64(s.e.cfg.QueueFrames) || b > int64(s.e.cfg.QueueBytes) {
		s.unreserve(int64(size))
		s.e.m.slowClosed.Inc()
		s.closeLocked(closeSlowReader, "slow reader: reconnect with your cursor")
		return false
	}
	return true
}

// unreserve counts a frame out of the queue once it has left.
func (s *session) unreserve(size int64) {
	s.frames.Add(-1)
	s.bytes.Add(-size)
}

// pong answers a ping frame, counted in the queue like any frame.
func (s *session) pong(c *gws.Conn, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.reserveLocked(len(payload)) {
		return
	}
	size := int64(len(payload))
	c.WriteAsync(gws.OpcodePong, append([]byte(nil), payload...), func(error) { s.unreserve(size) })
}

// send queues a frame that is not a stored event (ack, error, hello...).
func (s *session) send(frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueLocked(frame)
}

func (s *session) closeLocked(code uint16, reason string) {
	if s.closed {
		return
	}
	s.closed = true
	go s.out.close(code, reason)
}

func (s *session) close(code uint16, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(code, reason)
}

// catchUp replays the queue after s.last; with syncReply it ends with a
// `synced` frame.
func (s *session) catchUp(syncReply bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startCatchUpLocked(syncReply)
}

func (s *session) startCatchUpLocked(syncReply bool) {
	if s.closed {
		return
	}
	s.syncReply = s.syncReply || syncReply
	if s.replaying {
		s.missed = max(s.missed, s.last+1) // make the running replay read again
		return
	}
	s.replaying = true
	s.e.m.replays.Inc()
	go s.replay()
}

// replay reads the queue in batches until it has caught up with the live
// announcements, then hands over to them.
//
// A replay holds one of the edge's replay slots only while it reads a
// batch, never while it waits for its reader: connections that never read
// (of one user or many) cannot keep the slots from the others.
func (s *session) replay() {
	e := s.e
	stream := streams.QueueStream(e.h.Layout.UserPartition(s.user))
	subject := e.h.Layout.Queue(s.user)
	failures := 0
	for {
		// Flow control: a replay never fills the queue past half, so only a
		// reader that truly stalls is closed.
		for wait := time.Millisecond; s.frames.Load() > int64(e.cfg.QueueFrames/2) || s.bytes.Load() > int64(e.cfg.QueueBytes/2); wait = min(2*wait, 100*time.Millisecond) {
			if s.isClosed() {
				return
			}
			time.Sleep(wait)
		}
		s.mu.Lock()
		after, closed := s.last, s.closed
		s.missed = 0
		s.mu.Unlock()
		if closed {
			return
		}
		select {
		case e.replaySlots <- struct{}{}:
		case <-e.stopping:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		msgs, more, err := streams.ReadAfter(ctx, e.nc, stream, subject, after, e.cfg.ReplayBatch)
		cancel()
		<-e.replaySlots
		if err != nil {
			select {
			case <-e.stopping:
				return // the edge stops: nothing to tell
			default:
			}
			if s.isClosed() {
				return
			}
			failures++
			e.log.Warn("replay read", zap.String("user", s.user), zap.Error(err))
			if failures >= 3 {
				s.close(closeGoingAway, "cannot read your queue now: reconnect")
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		failures = 0
		s.mu.Lock()
		if s.sending > 0 {
			// The batch may hold the msg of a send whose ack is not out yet:
			// read it again once the acks are.
			s.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			continue
		}
		for _, m := range msgs {
			if m.Seq > s.last {
				s.last = m.Seq
				s.queueLocked(event.WithCursor(m.Data, m.Seq))
			}
		}
		if more || len(msgs) == e.cfg.ReplayBatch || s.missed > s.last {
			s.mu.Unlock()
			continue
		}
		s.replaying = false
		if s.syncReply {
			s.syncReply = false
			s.queueLocked(syncedFrame(s.last))
		}
		s.mu.Unlock()
		return
	}
}

func (s *session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func syncedFrame(last uint64) []byte {
	return []byte(`{"type":"synced","cursor":"` + event.Cursor(last) + `"}`)
}
