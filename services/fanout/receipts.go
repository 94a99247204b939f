package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/services/event"
	"messenger/streams"
)

// watermarks applies receipts to the watermarks bucket, keeping what it
// wrote in memory (the fan-out is the bucket's writer): a receipt then costs
// one compare-and-set, not a read and a write. A lost race drops the entry.
type watermarks struct {
	kv    jetstream.KeyValue
	mu    sync.Mutex
	known map[string]knownMark
}

type knownMark struct {
	w   event.Watermark
	rev uint64
}

const maxKnownMarks = 200_000

func newWatermarks(kv jetstream.KeyValue) *watermarks {
	return &watermarks{kv: kv, known: map[string]knownMark{}}
}

func (w *watermarks) remember(key string, m event.Watermark, rev uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.known) >= maxKnownMarks {
		for k := range w.known {
			delete(w.known, k)
			if len(w.known) < maxKnownMarks/2 {
				break
			}
		}
	}
	w.known[key] = knownMark{m, rev}
}

func (w *watermarks) forget(key string) {
	w.mu.Lock()
	delete(w.known, key)
	w.mu.Unlock()
}

func (w *watermarks) recall(key string) (knownMark, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k, ok := w.known[key]
	return k, ok
}

// apply raises the member's watermark with a receipt. It reports the status
// to tell others (read or delivered) and whether to tell anyone at all.
func (w *watermarks) apply(ctx context.Context, src uint64, r event.Receipt) (string, bool, error) {
	key := streams.WatermarkKey(r.Conv, r.User)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 10 * time.Millisecond):
			case <-ctx.Done():
				return "", false, ctx.Err()
			}
		}
		var cur event.Watermark
		var rev uint64
		if k, ok := w.recall(key); ok {
			cur, rev = k.w, k.rev
		} else {
			e, err := w.kv.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				continue
			default:
				rev = e.Revision()
				if err := json.Unmarshal(e.Value(), &cur); err != nil {
					return "", false, fmt.Errorf("watermark %s: %w", key, err)
				}
			}
		}
		if cur.Src == src {
			return statusOf(r), true, nil // replay of the receipt that set it
		}
		next := cur
		if r.Status == event.StatusRead && r.Seq > next.Read {
			next.Read = r.Seq
		}
		if r.Seq > next.Delivered {
			next.Delivered = r.Seq
		}
		if next == cur {
			return "", false, nil // stale or repeated: nothing changes
		}
		status := event.StatusDelivered
		if next.Read > cur.Read {
			status = event.StatusRead
		}
		next.Src = src
		val, _ := json.Marshal(next)
		var newRev uint64
		var err error
		if rev == 0 {
			newRev, err = w.kv.Create(ctx, key, val)
		} else {
			newRev, err = w.kv.Update(ctx, key, val, rev)
		}
		if err != nil {
			w.forget(key) // another writer won, or a transient error: read again
			continue
		}
		w.remember(key, next, newRev)
		return status, true, nil
	}
}

func statusOf(r event.Receipt) string {
	if r.Status == event.StatusRead {
		return event.StatusRead
	}
	return event.StatusDelivered
}

// receiptDoc is the queue entry of a receipt: the receipt frame of
// PROTOCOL.md without its cursor.
type receiptDoc struct {
	Type   string `json:"type"`
	Conv   string `json:"conv"`
	Seq    uint64 `json:"seq"`
	User   string `json:"user"`
	Status string `json:"status"`
}

// receipt applies a stored receipt and returns who gets told and what: in
// a direct conversation both members; in a group only the reader's own
// devices, the others get a coalesced live event. What it tells is
// decoded into rd too.
func (f *Fanout) receipt(ctx context.Context, mc *metaCache, src uint64, data []byte, rd *receiptDoc) ([]string, []byte, error) {
	var r event.Receipt
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, nil, fmt.Errorf("decode receipt: %w", err)
	}
	status, tell, err := f.marks.apply(ctx, src, r)
	if err != nil || !tell {
		return nil, nil, err
	}
	*rd = receiptDoc{Type: event.TypeReceipt, Conv: r.Conv, Seq: r.Seq, User: r.User, Status: status}
	doc, _ := json.Marshal(rd)
	if event.IsDirectConv(r.Conv) {
		if r.Peer != "" {
			return []string{r.User, r.Peer}, doc, nil
		}
		// Written before receipts named the other member.
		entry, err := f.h.Convs.Get(ctx, r.Conv)
		if err != nil {
			return nil, nil, fmt.Errorf("members of %s: %w", r.Conv, err)
		}
		var meta event.Meta
		if err := json.Unmarshal(entry.Value(), &meta); err != nil {
			return nil, nil, fmt.Errorf("members of %s: %w", r.Conv, err)
		}
		return meta.Members, doc, nil
	}
	meta, err := f.groupMeta(ctx, mc, r.Conv, 0)
	if err != nil {
		return nil, nil, err
	}
	f.live.add(r.Conv, r.User, append([]string(nil), meta.Members...), doc)
	return []string{r.User}, doc, nil
}
