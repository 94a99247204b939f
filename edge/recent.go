package edge

import (
	"sync"

	"messenger/services/history"
	"messenger/subjects"
)

// recentCache keeps the newest events of recently used conversations (the
// seed's "last 15 messages of the last 5 conversations", bounded by
// conversation count instead of per user). It is filled by history reads
// and kept current by the sends and announcements this edge sees; an entry
// whose next event it missed is dropped, never served stale: a page is
// served from it only when its last seq is the conversation's last seq,
// read from the stream.
type recentCache struct {
	per    int
	max    int
	shards [32]struct {
		mu sync.Mutex
		m  map[string]*recentConv
	}
}

type recentConv struct {
	events []history.Event // ascending, contiguous seqs, at most per
}

func newRecentCache(convs, per int) *recentCache {
	c := &recentCache{per: per, max: convs/32 + 1}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*recentConv)
	}
	return c
}

func (c *recentCache) shard(conv string) *struct {
	mu sync.Mutex
	m  map[string]*recentConv
} {
	return &c.shards[subjects.Partition(conv, len(c.shards))]
}

// page returns events lo..hi if the cache holds them and hi is its last.
func (c *recentCache) page(conv string, lo, hi uint64) ([]history.Event, bool) {
	sh := c.shard(conv)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rc := sh.m[conv]
	if rc == nil || len(rc.events) == 0 {
		return nil, false
	}
	first, last := rc.events[0].Seq, rc.events[len(rc.events)-1].Seq
	if last != hi || lo < first {
		return nil, false
	}
	return append([]history.Event(nil), rc.events[lo-first:]...), true
}

// fill stores the newest events of conv read from the store.
func (c *recentCache) fill(conv string, events []history.Event) {
	if len(events) > c.per {
		events = events[len(events)-c.per:]
	}
	sh := c.shard(conv)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.m) >= c.max && sh.m[conv] == nil {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[conv] = &recentConv{events: append([]history.Event(nil), events...)}
}

// add appends a new event if it follows the cached ones; a gap drops the entry.
func (c *recentCache) add(conv string, ev history.Event) {
	sh := c.shard(conv)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rc := sh.m[conv]
	if rc == nil {
		return
	}
	n := len(rc.events)
	switch {
	case n > 0 && ev.Seq <= rc.events[n-1].Seq:
		return // already there
	case n > 0 && ev.Seq != rc.events[n-1].Seq+1:
		delete(sh.m, conv)
		return
	}
	rc.events = append(rc.events, ev)
	if len(rc.events) > c.per {
		rc.events = append(rc.events[:0:0], rc.events[len(rc.events)-c.per:]...)
	}
}
