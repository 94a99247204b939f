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

// Next returns the group's metadata folded up to ev, the event at stream
// sequence streamSeq that the reader is passing. A reader meets a group's
// events in seq order, so when the cached fold ends just before ev, ev is
// folded into a copy and no read is made: a group costs one read of the
// bucket and the stream when first met, not one per message. Otherwise it
// is At(ev.Conv, ev.Seq). The fold is not written back to the bucket: other
// readers bring the bucket's copy up to date from the stream themselves.
func (c *MetaCache) Next(ctx context.Context, ev *event.Msg, streamSeq uint64) (*event.Meta, error) {
	if meta := c.m[ev.Conv]; meta != nil && ev.Seq == meta.Applied+1 {
		next := meta.Clone()
		next.Fold(ev, streamSeq)
		c.m[ev.Conv] = next
		return next, nil
	}
	return c.At(ctx, ev.Conv, ev.Seq)
}
