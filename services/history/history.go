package history

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"messenger/services/event"
	"messenger/streams"
)

// Event is one stored conversation event.
type Event struct {
	Seq       uint64
	StreamSeq uint64          // its sequence in the conversation stream
	Doc       json.RawMessage // the msg event as PROTOCOL.md shows it (no cursor)
}

// Store reads stored events of a conversation by seq.
type Store interface {
	// Range returns the events of conv with lo <= seq <= hi in ascending
	// seq, each once. It may return fewer than asked (not stored there yet).
	Range(ctx context.Context, conv string, lo, hi uint64) ([]Event, error)
}

// StreamStore reads a conversation's events from its stream.
type StreamStore struct {
	NC *nats.Conn
	H  *streams.Handles
}

var _ Store = (*StreamStore)(nil)

// Range scans the conversation's subject from its first event.
func (s *StreamStore) Range(ctx context.Context, conv string, lo, hi uint64) ([]Event, error) {
	return s.rangeAfter(ctx, conv, 0, lo, hi)
}

// rangeAfter reads the conversation's events stored after stream sequence
// anchor, keeping those with lo <= seq <= hi.
func (s *StreamStore) rangeAfter(ctx context.Context, conv string, anchor, lo, hi uint64) ([]Event, error) {
	stream := streams.ConvStream(s.H.Layout.ConvPartition(conv))
	subject := s.H.Layout.ConvEvents(conv)
	var out []Event
	batch := int(min(hi-lo+1, 256))
	for {
		msgs, more, err := streams.ReadAfter(ctx, s.NC, stream, subject, anchor, batch)
		if err != nil {
			return out, fmt.Errorf("history: read %s: %w", conv, err)
		}
		for _, m := range msgs {
			anchor = m.Seq
			h, err := event.DecodeHead(m.Data)
			if err != nil {
				continue
			}
			if h.Seq >= lo && h.Seq <= hi {
				out = append(out, Event{Seq: h.Seq, StreamSeq: m.Seq, Doc: m.Data})
			}
			if h.Seq >= hi {
				return out, nil
			}
		}
		if !more || len(msgs) == 0 {
			return out, nil
		}
		batch = 256
	}
}

// Pager answers pages from a projection store, completed from the stream.
type Pager struct {
	Projection Store // may be nil: everything from the stream
	Stream     *StreamStore
	// OnProjectionError is told when the projection fails (the page is then
	// read from the stream).
	OnProjectionError func(error)
}

// Range returns exactly the events lo..hi of conv (all of them exist: hi is
// at most the conversation's last seq, read from the stream).
func (p *Pager) Range(ctx context.Context, conv string, lo, hi uint64) ([]Event, error) {
	if lo > hi {
		return nil, nil
	}
	var have []Event
	var anchor uint64 // stream sequence after which to read what is missing
	next := lo        // first seq not yet in have
	if p.Projection != nil {
		from := lo
		if lo > 1 {
			from = lo - 1 // one more, as the anchor for the stream read
		}
		rows, err := p.Projection.Range(ctx, conv, from, hi)
		if err != nil && p.OnProjectionError != nil {
			p.OnProjectionError(err)
		}
		if err == nil {
			expect := from
			for _, r := range rows {
				if r.Seq != expect {
					break // a hole: read the rest from the stream
				}
				anchor = r.StreamSeq
				if r.Seq >= lo {
					have = append(have, r)
				}
				expect++
			}
			next = max(expect, lo)
			if expect == from && from < lo {
				anchor = 0 // not even the anchor row: read from the start
			}
		}
	}
	if next > hi {
		return have, nil
	}
	rest, err := p.Stream.rangeAfter(ctx, conv, anchor, next, hi)
	if err != nil {
		return nil, err
	}
	return append(have, rest...), nil
}
