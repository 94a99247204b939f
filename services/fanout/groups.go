package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/services/history"
)

// metaCache holds the metadata of the groups a partition reader met; owned
// by that reader's goroutine, so unlocked.
type metaCache struct {
	max int
	m   map[string]*cachedMeta
}

type cachedMeta struct {
	meta *event.Meta
	rev  uint64
}

func newMetaCache(max int) *metaCache { return &metaCache{max: max, m: map[string]*cachedMeta{}} }

// groupMeta returns the group's metadata folded at least up to seq: from
// the cache, the convs bucket, and for what those lack, the stream itself
// (the lookup is rebuilt from the stream; a newer fold is written back).
func (f *Fanout) groupMeta(ctx context.Context, mc *metaCache, conv string, seq uint64) (*event.Meta, error) {
	c := mc.m[conv]
	if c == nil || c.meta.Applied < seq {
		c = &cachedMeta{meta: &event.Meta{}}
		entry, err := f.h.Convs.Get(ctx, conv)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, fmt.Errorf("metadata of %s: %w", conv, err)
		default:
			c.rev = entry.Revision()
			if err := json.Unmarshal(entry.Value(), c.meta); err != nil {
				return nil, fmt.Errorf("metadata of %s: %w", conv, err)
			}
		}
		if c.meta.Applied < seq {
			if err := history.FoldStream(ctx, f.nc, f.h, conv, c.meta, seq); err != nil {
				return nil, err
			}
			val, _ := json.Marshal(c.meta)
			if c.rev == 0 {
				_, err = f.h.Convs.Create(ctx, conv, val)
			} else {
				_, err = f.h.Convs.Update(ctx, conv, val, c.rev)
			}
			if err != nil {
				f.log.Debug("write back folded metadata", zap.String("conv", conv), zap.Error(err))
			}
		}
		if len(mc.m) >= mc.max {
			for k := range mc.m {
				delete(mc.m, k)
				break
			}
		}
		mc.m[conv] = c
	}
	return c.meta, nil
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
