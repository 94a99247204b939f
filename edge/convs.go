package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/services/event"
	"messenger/subjects"
)

// ConvMeta is what the convs bucket holds for a conversation.
type ConvMeta struct {
	Kind    string   `json:"kind"`
	Title   string   `json:"title,omitempty"`
	Members []string `json:"members"`
}

func (m *ConvMeta) has(user string) bool { return slices.Contains(m.Members, user) }

// convState is an edge's view of one conversation: its metadata and the
// last stored event, from which the next seq is assigned. mu is held across
// a publish so that one edge never races itself for a seq.
type convState struct {
	mu        sync.Mutex
	meta      *ConvMeta
	loaded    bool   // seq, streamSeq, ts read from the stream
	seq       uint64 // seq of the last event
	streamSeq uint64 // its sequence in the conversation stream
	ts        int64
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

// meta returns the conversation's metadata, reading it from the bucket when
// not yet known. A conversation that does not exist returns nil, nil.
func (e *Edge) meta(ctx context.Context, conv string) (*ConvMeta, *convState, error) {
	st := e.convs.get(conv)
	st.mu.Lock()
	m := st.meta
	st.mu.Unlock()
	if m != nil {
		return m, st, nil
	}
	entry, err := e.h.Convs.Get(ctx, conv)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, st, nil
	}
	if err != nil {
		return nil, st, fmt.Errorf("edge: read conversation %s: %w", conv, err)
	}
	m = new(ConvMeta)
	if err := json.Unmarshal(entry.Value(), m); err != nil {
		return nil, st, fmt.Errorf("edge: conversation %s: %w", conv, err)
	}
	st.mu.Lock()
	st.meta = m
	st.mu.Unlock()
	return m, st, nil
}

// ensureDirect makes sure the direct conversation of a and b is recorded.
func (e *Edge) ensureDirect(ctx context.Context, conv, a, b string) (*convState, error) {
	m, st, err := e.meta(ctx, conv)
	if err != nil || m != nil {
		return st, err
	}
	members := []string{a, b}
	slices.Sort(members)
	m = &ConvMeta{Kind: event.ConvDirect, Members: members}
	val, _ := json.Marshal(m)
	if _, err := e.h.Convs.Create(ctx, conv, val); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return st, fmt.Errorf("edge: record conversation %s: %w", conv, err)
	}
	st.mu.Lock()
	st.meta = m
	st.mu.Unlock()
	return st, nil
}

// loadLast reads the conversation's last stored event; st.mu must be held.
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
	return nil
}
