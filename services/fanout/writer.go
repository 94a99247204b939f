package fanout

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/streams"
)

// write is one queue entry to store.
type write struct {
	flush chan struct{} // when set: store the changed summaries, then close it
	user  string
	doc   []byte
	// The decoded event, shared read-only by every recipient's write:
	// exactly one of msg and rcpt is set (rcpt holds what doc says).
	msg   *event.Msg
	rcpt  *receiptDoc
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
}

func (s *shard) run(ctx context.Context) {
	for w := range s.in {
		if w.flush != nil {
			s.flushInbox(ctx)
			close(w.flush)
			continue
		}
		s.store(ctx, w)
		s.applyInbox(ctx, w)
		w.fl.finish(w.src)
	}
	s.flushInbox(ctx)
}

// store writes w into its user's queue unless it is there already, retrying
// until it is stored or ctx ends.
func (s *shard) store(ctx context.Context, w write) {
	f := s.f
	backoff := 10 * time.Millisecond
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			f.m.retries.Inc()
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			if backoff < time.Second {
				backoff *= 2
			}
		}
		pos := s.users.get(w.user)
		if pos == nil {
			var err error
			if pos, err = s.load(ctx, w.user); err != nil {
				f.log.Warn("read queue position", zap.String("user", w.user), zap.Error(err))
				continue
			}
			s.users.put(w.user, pos)
		}
		if pos.srcs[w.part] >= w.src {
			f.m.skipped.Inc()
			if pos.fromStore {
				// A write before a crash or a lost PubAck may have stored the
				// entry without announcing it: nudge the user's edges to
				// catch up from the queue.
				pos.fromStore = false
				_ = f.nc.Publish(f.h.Layout.Live(w.user), event.EncodeLive(event.Live{}))
			}
			return
		}
		srcs := append([]uint64(nil), pos.srcs...)
		srcs[w.part] = w.src
		msg := &nats.Msg{Subject: f.h.Layout.Queue(w.user), Data: w.doc, Header: nats.Header{}}
		msg.Header.Set(event.SourceHeader, event.EncodeSources(srcs))
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
		f.m.writes.Inc()
		prev := pos.last
		pos.last, pos.srcs, pos.fromStore = ack.Sequence, srcs, false
		// The announcement is best effort: an edge that misses it sees the
		// gap in the next one's prev, or refills on reconnect.
		if err := f.nc.Publish(f.h.Layout.Live(w.user), event.EncodeLive(event.Live{Seq: ack.Sequence, Prev: prev, Src: w.srcOf(), Doc: w.doc})); err != nil {
			f.log.Debug("announce", zap.Error(err))
		}
		return
	}
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
