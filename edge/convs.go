package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/services/history"
	"messenger/subjects"
)

// convState is an edge's view of one conversation: its metadata and the
// last stored event, from which the next seq is assigned. mu is held across
// a publish so that one edge never races itself for a seq.
type convState struct {
	mu        sync.Mutex
	meta      *event.Meta
	metaRev   uint64 // its revision in the convs bucket (0: not stored yet)
	loaded    bool   // seq, streamSeq, ts read from the stream
	seq       uint64 // seq of the last event
	streamSeq uint64 // its sequence in the conversation stream
	ts        int64
	// next is a text message stored after seq that this edge heard of (in
	// an announcement to one of its users) without holding mu: taken up by
	// the next commit, so that a send after the other member's does not
	// start with a failed compare-and-set. Guarded by hintMu.
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
func (st *convState) takeHint() {
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

// convCache is a sharded, bounded map of conversation states.
type convCache struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[string]*convState
	}
	max int
}

func newConvCache(max int) *convCache {
	c := &convCache{max: max/64 + 1}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*convState)
	}
	return c
}

func (c *convCache) get(conv string) *convState {
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
		st = &convState{}
		s.m[conv] = st
	}
	return st
}

// hint records a stored text message of conv heard of in an announcement,
// for a conversation this edge already knows (it does not make one).
func (c *convCache) hint(conv string, seq, streamSeq uint64, ts int64) {
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

// meta returns the conversation's metadata, reading it when not yet known.
// A conversation that does not exist returns nil, nil. A direct
// conversation's members are read from its last event (a direct message
// names both), with no bucket read; a group's metadata comes from the
// convs bucket and may lag its stream: operations that depend on it run
// under the conversation's lock after loadLast has caught it up.
func (e *Edge) meta(ctx context.Context, conv string) (*event.Meta, *convState, error) {
	st := e.convs.get(conv)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.meta != nil {
		return st.meta, st, nil
	}
	if !event.IsDirectConv(conv) {
		if err := e.readMeta(ctx, conv, st); err != nil {
			return nil, st, err
		}
	}
	if st.meta == nil {
		// From the stream, if it has events.
		if err := e.loadLast(ctx, conv, st); err != nil {
			return nil, st, err
		}
	}
	return st.meta, st, nil
}

// readMeta loads the stored metadata into st; st.mu is held.
func (e *Edge) readMeta(ctx context.Context, conv string, st *convState) error {
	entry, err := e.h.Convs.Get(ctx, conv)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		st.meta, st.metaRev = nil, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("edge: read conversation %s: %w", conv, err)
	}
	m := new(event.Meta)
	if err := json.Unmarshal(entry.Value(), m); err != nil {
		return fmt.Errorf("edge: conversation %s: %w", conv, err)
	}
	st.meta, st.metaRev = m, entry.Revision()
	return nil
}

// ensureDirect is the state of the direct conversation of a and b, whose
// members are known without a read: its first message makes it, nothing
// else is recorded.
func (e *Edge) ensureDirect(conv, a, b string) *convState {
	st := e.convs.get(conv)
	st.mu.Lock()
	if st.meta == nil {
		st.meta = event.DirectMeta(a, b)
	}
	st.mu.Unlock()
	return st
}

// loadLast reads the conversation's last stored event, and brings a
// group's metadata up to it (from the stream, if the stored copy lags, as
// after a crash between an event and its metadata); st.mu must be held.
func (e *Edge) loadLast(ctx context.Context, conv string, st *convState) error {
	m, err := e.h.ConvStreamOf(conv).GetLastMsgForSubject(ctx, e.h.Layout.ConvEvents(conv))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		st.loaded, st.seq, st.streamSeq, st.ts = true, 0, 0, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("edge: last event of %s: %w", conv, err)
	}
	h, err := event.DecodeHead(m.Data)
	if err != nil {
		return err
	}
	st.loaded, st.seq, st.streamSeq, st.ts = true, h.Seq, m.Sequence, h.TS
	if st.meta != nil && (st.meta.Kind == event.ConvDirect || st.meta.Applied >= st.seq) {
		return nil // a direct conversation's members never change
	}
	if st.meta == nil && event.IsDirectConv(conv) && h.From != "" && h.To != "" {
		st.meta = event.DirectMeta(h.From, h.To)
		return nil
	}
	if err := e.readMeta(ctx, conv, st); err != nil {
		return err
	}
	if st.meta != nil && (st.meta.Kind == event.ConvDirect || st.meta.Applied >= st.seq) {
		return nil
	}
	return e.foldFromStream(ctx, conv, st)
}

// foldFromStream folds into st.meta the events the stored metadata lacks,
// and stores the result; st.mu is held.
func (e *Edge) foldFromStream(ctx context.Context, conv string, st *convState) error {
	meta := st.meta
	if meta == nil {
		meta = &event.Meta{}
	} else {
		meta = meta.Clone()
	}
	if err := history.FoldStream(ctx, e.nc, e.h, conv, meta, st.seq); err != nil {
		return err
	}
	st.meta = meta
	e.storeMeta(ctx, conv, st)
	return nil
}

// storeMeta writes st.meta to the bucket (compare-and-set on its revision);
// a lost race only means another writer stored the same fold or a later
// one, which the next loadLast reads. st.mu is held.
func (e *Edge) storeMeta(ctx context.Context, conv string, st *convState) {
	val, _ := json.Marshal(st.meta)
	var rev uint64
	var err error
	if st.metaRev == 0 {
		rev, err = e.h.Convs.Create(ctx, conv, val)
	} else {
		rev, err = e.h.Convs.Update(ctx, conv, val, st.metaRev)
	}
	if err != nil {
		e.log.Debug("store conversation metadata", zap.String("conv", conv), zap.Error(err))
		st.metaRev = 0
		if entry, gerr := e.h.Convs.Get(ctx, conv); gerr == nil {
			st.metaRev = entry.Revision()
		}
		return
	}
	st.metaRev = rev
}
