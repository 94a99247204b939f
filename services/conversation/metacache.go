package conversation

import (
	"context"

	"messenger/services/event"
)

// MetaCache holds the metadata of the groups one reader of a conversation
// stream met (the fan-out's and the notifier's partition readers). It is
// owned by that reader's goroutine: not safe for concurrent use.
type MetaCache struct {
	store *Store
	max   int
	m     map[string]*event.Meta
}

// NewMetaCache makes a cache of at most max groups over store.
func NewMetaCache(store *Store, max int) *MetaCache {
	return &MetaCache{store: store, max: max, m: map[string]*event.Meta{}}
}

// At returns the group's metadata folded at least up to seq: from the
// cache, else from the convs bucket brought up to seq from the stream by
// the store (which writes a newer fold back). Its members as of an event
// are Meta.Recipients (or MembersAt) of that event's seq.
func (c *MetaCache) At(ctx context.Context, conv string, seq uint64) (*event.Meta, error) {
	if meta := c.m[conv]; meta != nil && meta.Applied >= seq {
		return meta, nil
	}
	stored, err := c.store.Read(ctx, conv)
	if err != nil {
		return nil, err
	}
	if stored.Meta == nil {
		stored.Meta = &event.Meta{}
	}
	if stored, err = c.store.CatchUp(ctx, conv, stored, seq); err != nil {
		return nil, err
	}
	if len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[conv] = stored.Meta
	return stored.Meta, nil
}
