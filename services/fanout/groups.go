package fanout

import (
	"context"
	"sync"
	"time"

	"messenger/services/event"
)

// metaCache holds the metadata of the groups a partition reader met; owned
// by that reader's goroutine, so unlocked.
type metaCache struct {
	max int
	m   map[string]*event.Meta
}

func newMetaCache(max int) *metaCache { return &metaCache{max: max, m: map[string]*event.Meta{}} }

// groupMeta returns the group's metadata folded at least up to seq: from
// the cache, else from the convs bucket brought up to seq from the stream
// by the conversation store (which writes a newer fold back).
func (f *Fanout) groupMeta(ctx context.Context, mc *metaCache, conv string, seq uint64) (*event.Meta, error) {
	if meta := mc.m[conv]; meta != nil && meta.Applied >= seq {
		return meta, nil
	}
	stored, err := f.convs.Read(ctx, conv)
	if err != nil {
		return nil, err
	}
	if stored.Meta == nil {
		stored.Meta = &event.Meta{}
	}
	if stored, err = f.convs.CatchUp(ctx, conv, stored, seq); err != nil {
		return nil, err
	}
	if len(mc.m) >= mc.max {
		for k := range mc.m {
			delete(mc.m, k)
			break
		}
	}
	mc.m[conv] = stored.Meta
	return stored.Meta, nil
}

// liveReceipts coalesces the receipts of group members into at most one
// live receipt event per group per interval, sent to the group's other
// members who are online (their edges hear their live subjects): a group of
// 256 never makes 256 x 256 writes.
type liveReceipts struct {
	mu      sync.Mutex
	pending map[string]pendingReceipt // by conv
}

type pendingReceipt struct {
	doc     []byte
	reader  string
	members []string
}

func (l *liveReceipts) add(conv, reader string, members []string, doc []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = map[string]pendingReceipt{}
	}
	l.pending[conv] = pendingReceipt{doc: doc, reader: reader, members: members}
}

// run sends what is pending every interval until stop.
func (f *Fanout) runLiveReceipts(stop <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		f.live.mu.Lock()
		pending := f.live.pending
		f.live.pending = nil
		f.live.mu.Unlock()
		for _, p := range pending {
			for _, u := range p.members {
				if u != p.reader {
					_ = f.nc.Publish(f.h.Layout.Live(u), event.EncodeLive(event.Live{Doc: p.doc}))
				}
			}
		}
	}
}
