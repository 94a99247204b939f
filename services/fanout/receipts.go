package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/services/event"
	"messenger/streams"
	"messenger/subjects"
)

// watermarks applies receipts to the members' watermarks in memory (the
// fan-out is the bucket's writer) and stores the changed ones together, at
// each checkpoint and when a reader asks (Fanout.flushUser): a burst of
// receipts in a conversation becomes one write, and the stream reader never
// waits on a write. A watermark not yet stored is never dropped from
// memory; the checkpoint does not pass a receipt whose watermark is only in
// memory, so a crash replays it.
type watermarks struct {
	kv    jetstream.KeyValue
	js    jetstream.JetStream
	mu    sync.Mutex
	known map[string]*knownMark
	dirty map[string]*knownMark
	// flushing serialises flushes (a checkpoint and readers' requests).
	flushing sync.Mutex
}

type knownMark struct {
	w   event.Watermark
	rev uint64 // of the stored copy, 0 when none
}

const maxKnownMarks = 200_000

func newWatermarks(js jetstream.JetStream, kv jetstream.KeyValue) *watermarks {
	return &watermarks{js: js, kv: kv, known: map[string]*knownMark{}, dirty: map[string]*knownMark{}}
}

// remember keeps k for key, dropping about half of the stored (clean)
// ones when full. Called with mu held.
func (w *watermarks) remember(key string, k *knownMark) {
	if len(w.known) >= maxKnownMarks {
		for key := range w.known {
			if w.dirty[key] == nil {
				delete(w.known, key)
			}
			if len(w.known) < maxKnownMarks/2 {
				break
			}
		}
	}
	w.known[key] = k
}

// current is key's watermark, read from the bucket when not in memory.
func (w *watermarks) current(ctx context.Context, key string) (*knownMark, error) {
	w.mu.Lock()
	k := w.known[key]
	w.mu.Unlock()
	if k != nil {
		return k, nil
	}
	k = &knownMark{}
	e, err := w.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, err
	default:
		k.rev = e.Revision()
		if err := json.Unmarshal(e.Value(), &k.w); err != nil {
			// Unreadable for good: the fan-out, its writer, starts it
			// again from this receipt (its compare-and-set overwrites it).
			k.w = event.Watermark{}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if have := w.known[key]; have != nil { // a flush raced the read
		return have, nil
	}
	w.remember(key, k)
	return k, nil
}

// forget drops the stored (clean) watermarks of the conversations inConv
// selects: another fan-out may have stored newer ones meanwhile.
func (w *watermarks) forget(inConv func(conv string) bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key := range w.known {
		conv, _, _ := strings.Cut(key, ".")
		if w.dirty[key] == nil && inConv(conv) {
			delete(w.known, key)
		}
	}
}

// apply raises the member's watermark with a receipt. It reports the status
// to tell others (read or delivered) and whether to tell anyone at all. A
// failed read of the stored watermark is returned (dispatch retries the
// receipt; applying it again is a replay, told again).
func (w *watermarks) apply(ctx context.Context, src uint64, r event.Receipt) (string, bool, error) {
	key := streams.WatermarkKey(r.Conv, r.User)
	k, err := w.current(ctx, key)
	if err != nil {
		return "", false, fmt.Errorf("watermark %s: %w", key, err)
	}
	w.mu.Lock()
	cur := k.w
	if cur.Src == src {
		w.mu.Unlock()
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
		w.mu.Unlock()
		return "", false, nil // stale or repeated: nothing changes
	}
	status := event.StatusDelivered
	if next.Read > cur.Read {
		status = event.StatusRead
	}
	next.Src = src
	k.w = next
	w.dirty[key] = k
	w.mu.Unlock()
	return status, true, nil
}

// flush stores every changed watermark: published together, the acks
// awaited together. A write that finds another copy stored (another
// fan-out) merges it in (the higher of each) and writes again. It reports
// whether every one was stored.
func (w *watermarks) flush(ctx context.Context) bool {
	w.flushing.Lock()
	defer w.flushing.Unlock()
	var keys []string
	var marks []*knownMark
	var ws []casWrite
	w.mu.Lock()
	for key, k := range w.dirty {
		keys, marks = append(keys, key), append(marks, k)
		ws = append(ws, casWrite{w.msg(key, k.w), k.rev})
	}
	clear(w.dirty)
	w.mu.Unlock()
	ok := true
	for i, seq := range publishTogether(w.js, ws) {
		if seq == 0 {
			ok = w.store(ctx, keys[i], marks[i]) && ok
			continue
		}
		w.mu.Lock()
		marks[i].rev = seq
		w.mu.Unlock()
	}
	return ok
}

func (w *watermarks) msg(key string, m event.Watermark) *nats.Msg {
	data, _ := json.Marshal(m)
	return &nats.Msg{Subject: subjects.KVKey(streams.BucketWatermarks, key), Data: data}
}

// store writes one watermark, merging in a stored copy it did not know.
// When it gives up the watermark stays changed, for the next flush.
func (w *watermarks) store(ctx context.Context, key string, k *knownMark) bool {
	for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
		w.mu.Lock()
		val, rev := k.w, k.rev
		w.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := w.js.PublishMsg(pctx, w.msg(key, val), jetstream.WithExpectLastSequencePerSubject(rev))
		cancel()
		if err == nil {
			w.mu.Lock()
			k.rev = ack.Sequence
			w.mu.Unlock()
			return true
		}
		if streams.IsWrongLastSequence(err) {
			if e, gerr := w.kv.Get(ctx, key); gerr == nil {
				var stored event.Watermark
				if json.Unmarshal(e.Value(), &stored) == nil {
					w.mu.Lock()
					k.w.Delivered = max(k.w.Delivered, stored.Delivered)
					k.w.Read = max(k.w.Read, stored.Read)
					k.rev = e.Revision()
					w.mu.Unlock()
				}
			}
		}
		time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
	}
	w.mu.Lock()
	w.dirty[key] = k
	w.mu.Unlock()
	return false
}

func statusOf(r event.Receipt) string {
	if r.Status == event.StatusRead {
		return event.StatusRead
	}
	return event.StatusDelivered
}

// receiptDoc is the queue entry of a receipt: the receipt frame of
// PROTOCOL.md without its cursor, plus the schema version (entries
// written before 2026-12-05 have no v: readers take a missing v as 1).
type receiptDoc struct {
	V      int    `json:"v"`
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
		return nil, nil, bad(fmt.Errorf("decode receipt: %w", err))
	}
	status, tell, err := f.marks.apply(ctx, src, r)
	if err != nil || !tell {
		return nil, nil, err
	}
	*rd = receiptDoc{V: event.Version, Type: event.TypeReceipt, Conv: r.Conv, Seq: r.Seq, User: r.User, Status: status}
	doc, _ := json.Marshal(rd)
	if event.IsDirectConv(r.Conv) {
		if r.Peer != "" {
			return []string{r.User, r.Peer}, doc, nil
		}
		// Written before receipts named the other member.
		entry, err := f.h.Convs.Get(ctx, r.Conv)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, nil, bad(fmt.Errorf("members of %s: %w", r.Conv, err))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("members of %s: %w", r.Conv, err)
		}
		var meta event.Meta
		if err := json.Unmarshal(entry.Value(), &meta); err != nil {
			return nil, nil, bad(fmt.Errorf("members of %s: %w", r.Conv, err))
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
