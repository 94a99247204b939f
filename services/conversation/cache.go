package conversation

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/jspub"
	"messenger/services/event"
	"messenger/streams"
	"messenger/subjects"
)

// State is one conversation as a writer of its events sees it: its
// metadata and the last stored event, from which the next seq is assigned.
// mu is held across a publish so that one process never races itself for a
// seq.
type State struct {
	mu        sync.Mutex
	meta      *event.Meta
	metaRev   uint64 // its revision in the convs bucket (0: not stored yet)
	loaded    bool   // seq, streamSeq, ts read from the stream
	seq       uint64 // seq of the last event
	streamSeq uint64 // its sequence in the conversation stream
	ts        int64
	// next is a text message stored after seq that this process heard of
	// (in an announcement to one of its users) without holding mu: taken
	// up by the next commit, so that a send after the other member's does
	// not start with a failed compare-and-set. Guarded by hintMu.
	hintMu sync.Mutex
	next   storedHint
}

// storedHint is a stored text message: its seq, stream sequence and time.
type storedHint struct {
	seq, streamSeq uint64
	ts             int64
}

// takeHint brings seq, streamSeq and ts up to a newer text message heard
// of: any newer one for a direct conversation (its members never change),
// only the very next one for a group (the metadata is as of seq, and a
// membership event in between would be skipped). st.mu is held.
func (st *State) takeHint() {
	st.hintMu.Lock()
	h := st.next
	st.hintMu.Unlock()
	if !st.loaded || h.seq <= st.seq {
		return
	}
	if st.meta == nil || (st.meta.Kind != event.ConvDirect && h.seq != st.seq+1) {
		return
	}
	st.seq, st.streamSeq, st.ts = h.seq, h.streamSeq, max(st.ts, h.ts)
}

// Deps are what a Cache works with.
type Deps struct {
	JS      jetstream.JetStream
	Handles *streams.Handles
	Store   *Store // the metadata in KV convs
	// OnConflict, if set, is told of each publish that lost the race for a
	// seq (and is retried).
	OnConflict func()
	// OnStored, if set, is told of each event a commit stored, under the
	// conversation's lock: in seq order for one conversation.
	OnStored func(conv string, seq, streamSeq uint64, doc []byte)
	// Publish tunes the publishes' retries through node faults (jspub's
	// defaults when zero).
	Publish jspub.Config
}

// Cache is a sharded, bounded map of conversation states (at most about
// max; a full shard drops an arbitrary entry), and commits events to them.
type Cache struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[string]*State
	}
	max        int
	js         jetstream.JetStream
	pub        *jspub.Publisher
	h          *streams.Handles
	store      *Store
	onConflict func()
	onStored   func(conv string, seq, streamSeq uint64, doc []byte)
}

// NewCache makes a cache of at most about max conversation states.
func NewCache(max int, d Deps) (*Cache, error) {
	if d.JS == nil || d.Handles == nil || d.Store == nil {
		return nil, errors.New("conversation: missing dependency")
	}
	c := &Cache{
		max: max/64 + 1, js: d.JS, pub: jspub.New(d.JS, d.Publish), h: d.Handles, store: d.Store,
		onConflict: d.OnConflict, onStored: d.OnStored,
	}
	if c.onConflict == nil {
		c.onConflict = func() {}
	}
	if c.onStored == nil {
		c.onStored = func(string, uint64, uint64, []byte) {}
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*State)
	}
	return c, nil
}

// Get returns conv's state, made (nothing known yet) when not held.
func (c *Cache) Get(conv string) *State {
	s := &c.shards[subjects.Partition(conv, len(c.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[conv]
	if st == nil {
		if len(s.m) >= c.max {
			for k := range s.m { // drop one arbitrary entry
				delete(s.m, k)
				break
			}
		}
		st = &State{}
		s.m[conv] = st
	}
	return st
}

// Hint records a stored text message of conv heard of in an announcement,
// for a conversation this cache already holds (it does not make one).
func (c *Cache) Hint(conv string, seq, streamSeq uint64, ts int64) {
	s := &c.shards[subjects.Partition(conv, len(c.shards))]
	s.mu.Lock()
	st := s.m[conv]
	s.mu.Unlock()
	if st == nil {
		return
	}
	st.hintMu.Lock()
	if seq > st.next.seq {
		st.next = storedHint{seq, streamSeq, ts}
	}
	st.hintMu.Unlock()
}

// Direct is the state of the direct conversation conv of a and b, whose
// members are known without a read: its first message makes it, nothing
// else is recorded.
func (c *Cache) Direct(conv, a, b string) *State {
	st := c.Get(conv)
	st.mu.Lock()
	if st.meta == nil {
		st.meta = event.DirectMeta(a, b)
	}
	st.mu.Unlock()
	return st
}

// Meta returns the conversation's metadata, reading it when not yet known.
// A conversation that does not exist returns nil, nil. A direct
// conversation's members are read from its last event (a direct message
// names both), with no bucket read; a group's metadata comes from the
// convs bucket and may lag its stream: operations that depend on it run
// under the conversation's lock after loadLast has caught it up (Commit,
// Fresh).
func (c *Cache) Meta(ctx context.Context, conv string) (*event.Meta, *State, error) {
	st := c.Get(conv)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.meta != nil {
		return st.meta, st, nil
	}
	if !event.IsDirectConv(conv) {
		if err := c.readMeta(ctx, conv, st); err != nil {
			return nil, st, err
		}
	}
	if st.meta == nil {
		// From the stream, if it has events.
		if err := c.loadLast(ctx, conv, st); err != nil {
			return nil, st, err
		}
	}
	return st.meta, st, nil
}

// Fresh is the conversation's metadata as of its last stored event (read
// now), and that event's seq: what reads of a group check membership
// against. A conversation that does not exist returns nil, 0, nil.
func (c *Cache) Fresh(ctx context.Context, conv string) (*event.Meta, uint64, error) {
	m, st, err := c.Meta(ctx, conv)
	if err != nil || m == nil {
		return nil, 0, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := c.loadLast(ctx, conv, st); err != nil {
		return nil, 0, err
	}
	return st.meta, st.seq, nil
}

// AtLeast is what an operation up to seq (a receipt) is checked against:
// for a direct conversation whose last seq is known here to be at least
// seq, what is known (its members never change; no read); else what Fresh
// reads, whose last seq may be below seq.
func (c *Cache) AtLeast(ctx context.Context, conv string, seq uint64) (*event.Meta, uint64, error) {
	m, st, err := c.Meta(ctx, conv)
	if err != nil || m == nil {
		return nil, 0, err
	}
	if m.Kind == event.ConvDirect {
		st.mu.Lock()
		st.takeHint()
		known, last := st.loaded, st.seq
		st.mu.Unlock()
		if known && seq <= last {
			return m, last, nil
		}
	}
	return c.Fresh(ctx, conv)
}

// readMeta loads the stored metadata into st; st.mu is held.
func (c *Cache) readMeta(ctx context.Context, conv string, st *State) error {
	s, err := c.store.Read(ctx, conv)
	if err != nil {
		return err
	}
	st.meta, st.metaRev = s.Meta, s.Rev
	return nil
}

// loadLast reads the conversation's last stored event, and brings a
// group's metadata up to it (from the stream, if the stored copy lags, as
// after a crash between an event and its metadata); st.mu is held.
func (c *Cache) loadLast(ctx context.Context, conv string, st *State) error {
	m, err := c.h.ConvStreamOf(conv).GetLastMsgForSubject(ctx, c.h.Layout.ConvEvents(conv))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		st.loaded, st.seq, st.streamSeq, st.ts = true, 0, 0, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("conversation: last event of %s: %w", conv, err)
	}
	h, err := event.DecodeHead(m.Data)
	if err != nil {
		return fmt.Errorf("conversation: last event of %s: %w", conv, err)
	}
	st.loaded, st.seq, st.streamSeq, st.ts = true, h.Seq, m.Sequence, h.TS
	if st.current() {
		return nil
	}
	if st.meta == nil && event.IsDirectConv(conv) && h.From != "" && h.To != "" {
		st.meta = event.DirectMeta(h.From, h.To)
		return nil
	}
	if err := c.readMeta(ctx, conv, st); err != nil {
		return err
	}
	if st.current() {
		return nil
	}
	folded, err := c.store.CatchUp(ctx, conv, Stored{Meta: st.meta, Rev: st.metaRev}, st.seq)
	if err != nil {
		return err
	}
	st.meta = folded.Meta
	c.stored(ctx, conv, st, folded.Rev)
	return nil
}

// current tells whether st.meta is as of st.seq: a direct conversation's
// members never change, a group's fold has applied seq. st.mu is held.
func (st *State) current() bool {
	return st.meta != nil && (st.meta.Kind == event.ConvDirect || st.meta.Applied >= st.seq)
}

// storeMeta writes st.meta to the bucket over st.metaRev; st.mu is held.
func (c *Cache) storeMeta(ctx context.Context, conv string, st *State) {
	rev, _ := c.store.write(ctx, conv, st.meta, st.metaRev)
	c.stored(ctx, conv, st, rev)
}

// stored records the revision a write of st.meta gave (0: the write lost
// a race); after a lost race, the revision the bucket holds now, over
// which the next write goes. st.mu is held.
func (c *Cache) stored(ctx context.Context, conv string, st *State, rev uint64) {
	if rev == 0 {
		rev = c.store.revision(ctx, conv)
	}
	st.metaRev = rev
}
