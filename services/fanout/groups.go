package fanout

import (
	"context"
	"sync"
	"time"

	"messenger/services/conversation"
	"messenger/services/event"
)

// metaCache is the group metadata a partition reader met
// (conversation.MetaCache, shared with the notifier); owned by that
// reader's goroutine.
type metaCache = conversation.MetaCache

// groupMeta returns the group's metadata folded at least up to seq.
func (f *Fanout) groupMeta(ctx context.Context, mc *metaCache, conv string, seq uint64) (*event.Meta, error) {
	return mc.At(ctx, conv, seq)
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
