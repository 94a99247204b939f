package conversation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/services/event"
	"messenger/streams"
)

// maxConflicts is how many times a commit that lost the race for a seq is
// retried before it gives up.
const maxConflicts = 50

// Op is an event to commit.
type Op struct {
	// DedupID, when set, is the event's Nats-Msg-Id: a resend within the
	// dedup window answers the first event.
	DedupID string
	// Check approves the event against the metadata as of the last event
	// (nil for a conversation without any); an error refuses it and is
	// returned by Commit as it is.
	Check func(*event.Meta) error
	// Build fills the event; its version, type, conv, seq and ts are set.
	Build func(*event.Msg)
}

// Committed is the stored event a commit answers with.
type Committed struct {
	ID   string
	Conv string
	Seq  uint64
	TS   int64
	// Duplicate: a resend of an event stored before, which this is (the
	// resend's own content is dropped).
	Duplicate bool
}

// Commit stores the next event of conv, whose state is st: under the
// conversation's lock, it brings the state up to the stream, checks the
// operation against the metadata as of the last event, fills the event,
// and publishes it with the expected-last-subject-sequence check, starting
// again when another writer stored an event first. The metadata of a
// group is folded and stored at once.
func (c *Cache) Commit(ctx context.Context, st *State, conv string, op Op) (Committed, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	stream := c.h.ConvStreamOf(conv)
	subject := c.h.Layout.ConvEvents(conv)
	for attempt := 0; ; attempt++ {
		if !st.loaded {
			if err := c.loadLast(ctx, conv, st); err != nil {
				return Committed{}, err
			}
		} else {
			st.takeHint()
		}
		if err := op.Check(st.meta); err != nil {
			return Committed{}, err
		}
		ev := event.Msg{V: event.Version, Type: event.TypeMsg, Conv: conv, Seq: st.seq + 1, TS: max(time.Now().UnixMilli(), st.ts)}
		op.Build(&ev)
		data, _ := json.Marshal(ev)
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		if op.DedupID != "" {
			msg.Header.Set(jetstream.MsgIDHeader, op.DedupID)
		}
		pa, res, err := c.pub.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(st.streamSeq))
		if err != nil && res.Uncertain && streams.IsWrongLastSequence(err) {
			// An attempt that got no answer may have stored it: then the
			// next event of the subject after the expected one is ours.
			pa, err = c.ours(ctx, stream, subject, st.streamSeq, data, err)
		}
		if err != nil {
			st.loaded = false
			if streams.IsWrongLastSequence(err) && attempt < maxConflicts {
				c.onConflict()
				continue
			}
			return Committed{}, fmt.Errorf("conversation: store event %d of %s: %w", ev.Seq, conv, err)
		}
		if pa.Duplicate {
			orig, err := stream.GetMsg(ctx, pa.Sequence)
			if err != nil {
				st.loaded = false
				return Committed{}, fmt.Errorf("conversation: first event of a resend to %s: %w", conv, err)
			}
			if !res.Uncertain || !bytes.Equal(orig.Data, data) {
				// A resend: answer the first event, whatever this one carried.
				var m event.Msg
				if err := json.Unmarshal(orig.Data, &m); err != nil {
					return Committed{}, fmt.Errorf("conversation: first event of a resend to %s: %w", conv, err)
				}
				return Committed{ID: m.ID, Conv: m.Conv, Seq: m.Seq, TS: m.TS, Duplicate: true}, nil
			}
			// The duplicate of an attempt of ours that got no answer: this
			// very event, stored once.
		}
		st.seq, st.streamSeq, st.ts = ev.Seq, pa.Sequence, ev.TS
		if ev.Kind != event.KindText {
			meta := &event.Meta{}
			if st.meta != nil {
				meta = st.meta.Clone()
			}
			meta.Fold(&ev, pa.Sequence)
			st.meta = meta
			c.storeMeta(ctx, conv, st)
		}
		c.onStored(conv, ev.Seq, pa.Sequence, data)
		return Committed{ID: ev.ID, Conv: conv, Seq: ev.Seq, TS: ev.TS}, nil
	}
}

// ours tells whether the event stored on subject right after expected (the
// one a compare-and-set on expected let in) is data: an earlier attempt of
// this commit, stored though its answer was lost. Then it answers that
// event's ack; otherwise conflict, the wrong-last-sequence error.
func (c *Cache) ours(ctx context.Context, stream jetstream.Stream, subject string, expected uint64, data []byte, conflict error) (*jetstream.PubAck, error) {
	next, err := stream.GetMsg(ctx, expected+1, jetstream.WithGetMsgSubject(subject))
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, conflict
		}
		return nil, fmt.Errorf("conversation: read back an unanswered attempt on %s: %w", subject, err)
	}
	if !bytes.Equal(next.Data, data) {
		return nil, conflict
	}
	return &jetstream.PubAck{Sequence: next.Sequence}, nil
}
