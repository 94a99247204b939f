package fanout

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/streams"
)

// write is one queue entry to store.
type write struct {
	flush chan struct{} // when set: store the changed summaries (of user only, if set), then close it
	// unsaved, with flush: set when a summary could not be stored.
	unsaved *atomic.Bool
	user    string
	doc     []byte
	// The decoded event, shared read-only by every recipient's write:
	// exactly one of msg and rcpt is set (rcpt holds what doc says).
	msg  *event.Msg
	rcpt *receiptDoc
	// group is a group event's metadata, folded at least up to it (never
	// modified: shared read-only too); nil for a direct message.
	group *event.Meta
	part  int    // conversation stream it comes from
	src   uint64 // its sequence there
	fl    *floor
}

// queuePos is what a shard knows of a user's queue: the last sequence and
// the source vector stored with it.
type queuePos struct {
	last uint64
	srcs []uint64
	// fromStore: read back from the stream, not known from our own write;
	// entries it covers may have been stored but never announced.
	fromStore bool
}

// userCache is a shard's bounded map of queue positions; owned by the shard
// goroutine, so unlocked.
type userCache struct {
	max int
	m   map[string]*queuePos
}

func newUserCache(max int) *userCache {
	if max < 16 {
		max = 16
	}
	return &userCache{max: max, m: make(map[string]*queuePos)}
}

func (c *userCache) get(u string) *queuePos { return c.m[u] }

func (c *userCache) put(u string, p *queuePos) {
	if len(c.m) >= c.max {
		n := 0
		for k := range c.m { // drop an arbitrary half
			delete(c.m, k)
			if n++; n >= c.max/2 {
				break
			}
		}
	}
	c.m[u] = p
}

func (c *userCache) drop(u string) { delete(c.m, u) }

// shard writes the queue entries of the users that hash to it, one at a time.
type shard struct {
	f     *Fanout
	in    chan write
	users *userCache
	inbox *inboxCache
	// unsaved: summaries left unstored when the shard ended (read after
	// the shard's goroutine is done).
	unsaved bool
}

// maxBatch bounds the writes a shard has in flight at once: with the
// default 64 shards, under the client's limit of pending async publishes.
const maxBatch = 32

func (s *shard) run(ctx context.Context) {
	batch := make([]write, 0, maxBatch)
	for w := range s.in {
		batch = append(batch[:0], w)
	gather: // what is already waiting goes in the same batch
		for len(batch) < maxBatch {
			select {
			case w, ok := <-s.in:
				if !ok {
					break gather
				}
				batch = append(batch, w)
			default:
				break gather
			}
		}
		s.runBatch(ctx, batch)
	}
	s.unsaved = !s.flushInbox(ctx, "")
}

// runBatch handles writes in their order, storing together the writes of a
// run without a flush request and with one write per user (the next write
// of a user waits for the previous one's sequence). A write abandoned when
// ctx ended is not finished: its partition's checkpoint stays below it.
func (s *shard) runBatch(ctx context.Context, batch []write) {
	users := make(map[string]bool, len(batch))
	start := 0
	handle := func(end int) {
		seg := batch[start:end]
		if len(seg) == 0 {
			return
		}
		abandoned := s.storeAll(ctx, seg)
		for _, w := range seg {
			if abandoned[w.user] || !s.applyInbox(ctx, w) {
				continue
			}
			w.fl.finish(w.src)
		}
		start = end
		clear(users)
	}
	for i, w := range batch {
		if w.flush != nil {
			handle(i)
			if !s.flushInbox(ctx, w.user) && w.unsaved != nil {
				w.unsaved.Store(true)
			}
			close(w.flush)
			start = i + 1
			continue
		}
		if users[w.user] {
			handle(i)
		}
		users[w.user] = true
	}
	handle(len(batch))
}

// inFlight is a queue write published and awaiting its PubAck.
type inFlight struct {
	w    write
	pos  *queuePos
	srcs []uint64
	fut  jetstream.PubAckFuture
}

// storeAll writes ws (one per user) into their users' queues: published
// together, their acks awaited together. A write that fails or times out
// goes through store, one at a time with retries. It returns the users
// whose write was abandoned because ctx ended (nil when none).
func (s *shard) storeAll(ctx context.Context, ws []write) (abandoned map[string]bool) {
	if len(ws) == 1 {
		if !s.store(ctx, ws[0]) {
			return map[string]bool{ws[0].user: true}
		}
		return nil
	}
	f := s.f
	var sent []inFlight
	var slow []write
	start := time.Now()
	for _, w := range ws {
		pos, err := s.position(ctx, w.user)
		if err != nil {
			slow = append(slow, w)
			continue
		}
		msg, srcs, skip := s.entry(w, pos)
		if skip {
			continue
		}
		fut, err := f.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequencePerSubject(pos.last))
		if err != nil {
			s.users.drop(w.user)
			slow = append(slow, w)
			continue
		}
		sent = append(sent, inFlight{w, pos, srcs, fut})
	}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	expired := false
	for _, p := range sent {
		if expired {
			s.users.drop(p.w.user)
			slow = append(slow, p.w)
			continue
		}
		select {
		case ack := <-p.fut.Ok():
			f.m.writeTime.Observe(time.Since(start).Seconds())
			s.stored(p.w, p.pos, p.srcs, ack.Sequence)
		case err := <-p.fut.Err():
			s.users.drop(p.w.user)
			if isConflict(err) {
				f.m.conflicts.Inc()
			} else {
				f.log.Warn("write queue entry", zap.String("user", p.w.user), zap.Error(err))
			}
			slow = append(slow, p.w)
		case <-timeout.C:
			// Its ack may still come: the retry then finds the entry stored.
			expired = true
			s.users.drop(p.w.user)
			slow = append(slow, p.w)
		}
	}
	for _, w := range slow {
		if !s.store(ctx, w) {
			if abandoned == nil {
				abandoned = map[string]bool{}
			}
			abandoned[w.user] = true
		}
	}
	return abandoned
}

// position is what the shard knows of user's queue, read from the stream
// when it knows nothing.
func (s *shard) position(ctx context.Context, user string) (*queuePos, error) {
	if pos := s.users.get(user); pos != nil {
		return pos, nil
	}
	pos, err := s.load(ctx, user)
	if err != nil {
		s.f.log.Warn("read queue position", zap.String("user", user), zap.Error(err))
		return nil, err
	}
	s.users.put(user, pos)
	return pos, nil
}

// entry builds the queue entry of w after pos, or reports that the queue
// has it already (skip; the user's edges are nudged when pos was read back
// from the stream: a write before a crash or a lost PubAck may have stored
// the entry without announcing it).
func (s *shard) entry(w write, pos *queuePos) (msg *nats.Msg, srcs []uint64, skip bool) {
	f := s.f
	if pos.srcs[w.part] >= w.src {
		f.m.skipped.Inc()
		if pos.fromStore {
			pos.fromStore = false
			_ = f.nc.Publish(f.h.Layout.Live(w.user), event.EncodeLive(event.Live{}))
		}
		return nil, nil, true
	}
	srcs = append([]uint64(nil), pos.srcs...)
	srcs[w.part] = w.src
	msg = &nats.Msg{Subject: f.h.Layout.Queue(w.user), Data: w.doc, Header: nats.Header{}}
	msg.Header.Set(event.SourceHeader, event.EncodeSources(srcs))
	return msg, srcs, false
}

// stored records w's entry at queue sequence seq and announces it. The
// announcement is best effort: an edge that misses it sees the gap in the
// next one's prev, or refills on reconnect.
func (s *shard) stored(w write, pos *queuePos, srcs []uint64, seq uint64) {
	f := s.f
	f.m.writes.Inc()
	prev := pos.last
	pos.last, pos.srcs, pos.fromStore = seq, srcs, false
	if err := f.nc.Publish(f.h.Layout.Live(w.user), event.EncodeLive(event.Live{Seq: seq, Prev: prev, Src: w.srcOf(), Doc: w.doc})); err != nil {
		f.log.Debug("announce", zap.Error(err))
	}
}

// store writes w into its user's queue unless it is there already, retrying
// until it is stored or ctx ends (false: not stored).
func (s *shard) store(ctx context.Context, w write) bool {
	f := s.f
	backoff := 10 * time.Millisecond
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			f.m.retries.Inc()
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return false
			}
			if backoff < time.Second {
				backoff *= 2
			}
		}
		pos, err := s.position(ctx, w.user)
		if err != nil {
			continue
		}
		msg, srcs, skip := s.entry(w, pos)
		if skip {
			return true
		}
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := f.js.PublishMsg(pctx, msg, jetstream.WithExpectLastSequencePerSubject(pos.last))
		cancel()
		if err != nil {
			s.users.drop(w.user)
			if isConflict(err) {
				f.m.conflicts.Inc()
				backoff = time.Millisecond
				continue
			}
			f.log.Warn("write queue entry", zap.String("user", w.user), zap.Error(err))
			continue
		}
		f.m.writeTime.Observe(time.Since(start).Seconds())
		s.stored(w, pos, srcs, ack.Sequence)
		return true
	}
	return false
}

// srcOf is what an announcement of w says of its source: the stream
// sequence of a text message (from which an edge learns the conversation's
// last stored event), else 0.
func (w write) srcOf() uint64 {
	if w.msg != nil && w.msg.Kind == event.KindText {
		return w.src
	}
	return 0
}

func isConflict(err error) bool {
	return streams.IsWrongLastSequence(err)
}

// load reads the user's last queue entry.
func (s *shard) load(ctx context.Context, user string) (*queuePos, error) {
	n := len(s.f.h.Conv)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := s.f.h.QueueStreamOf(user).GetLastMsgForSubject(ctx, s.f.h.Layout.Queue(user))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return &queuePos{srcs: make([]uint64, n)}, nil
	}
	if err != nil {
		return nil, err
	}
	return &queuePos{last: m.Sequence, srcs: event.DecodeSources(m.Header.Get(event.SourceHeader), n), fromStore: true}, nil
}
