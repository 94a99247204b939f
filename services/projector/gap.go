package projector

import (
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/streams"
)

// Why gaps: the consumer acks with AckAll, and an ack of stream sequence s
// acknowledges every event up to s, delivered to this projector or not. A
// batch fetched and never inserted (a projector killed between the fetch
// and the insert, the fetch's reply lost with a NATS node, another
// projector's batch during a hand-over) would be covered by the next ack
// and never delivered again. So every batch is inserted together with the
// events between the projector's position and the batch, read from the
// stream itself (a conversation stream never deletes: its sequences are
// contiguous), and only then acked.

// fetched is a batch ready to insert: its events, the message to ack (the
// highest stream sequence) and that sequence.
type fetched struct {
	events []storedEvent
	last   jetstream.Msg
	hi     uint64
}

// closeGaps inserts the events of partition part missing between next (the
// first stream sequence not known to be in ClickHouse) and the batch msgs,
// and inside it, read from the stream; it returns the batch itself, to be
// inserted and acked. Events below next in the batch (redeliveries) are
// kept: inserting them again is harmless, and after a rebuild they are the
// whole projection. It returns an error only when ctx ends.
func (p *Projector) closeGaps(ctx context.Context, part int, cons jetstream.Consumer, next uint64, msgs []jetstream.Msg) (fetched, error) {
	var b fetched
	have := make([]uint64, 0, len(msgs))
	reset := false
	for _, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		s := meta.Sequence.Stream
		b.events = append(b.events, storedEvent{subject: m.Subject(), data: m.Data(), streamSeq: s})
		have = append(have, s)
		if s >= b.hi {
			b.hi, b.last = s, m
		}
		// Events are delivered the first time in stream order: a first
		// delivery below next means the consumer was made again (a rebuild
		// deleted it) and the projection starts over from its floor.
		if meta.NumDelivered == 1 && s < next {
			reset = true
		}
	}
	if b.last == nil {
		b.last = msgs[len(msgs)-1]
	}
	if reset {
		if floor, err := p.ackFloor(ctx, cons); err == nil {
			next = floor + 1
		}
	}
	slices.Sort(have)
	gaps := missing(next, b.hi, have)
	if len(gaps) > 0 {
		// Another projector may have inserted and acked them (a hand-over):
		// its ack floor says so.
		if floor, err := p.ackFloor(ctx, cons); err == nil && floor+1 > next {
			gaps = missing(floor+1, b.hi, have)
		}
	}
	for _, g := range gaps {
		n, err := p.fill(ctx, part, g.From, g.To)
		if err != nil {
			return b, err
		}
		p.m.gapEvents.Add(float64(n))
		p.log.Warn("events fetched elsewhere and never inserted: read from the stream",
			zap.Int("partition", part), zap.Uint64("from", g.From), zap.Uint64("to", g.To), zap.Int("events", n))
	}
	return b, nil
}

// SeqRange is a run of stream sequences, From to To included.
type SeqRange struct{ From, To uint64 }

// missing is the runs of from..to absent from have (sorted).
func missing(from, to uint64, have []uint64) []SeqRange {
	var out []SeqRange
	next := from
	for _, s := range have {
		if s < next {
			continue
		}
		if s > to {
			break
		}
		if s > next {
			out = append(out, SeqRange{next, s - 1})
		}
		next = s + 1
	}
	if next <= to && to != 0 {
		out = append(out, SeqRange{next, to})
	}
	return out
}

// ackFloor is the highest stream sequence the consumer has had acked.
func (p *Projector) ackFloor(ctx context.Context, cons jetstream.Consumer) (uint64, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	if err != nil {
		return 0, err
	}
	return info.AckFloor.Stream, nil
}

// fill projects the events from..to of partition part, read from the
// stream in chunks of BatchSize; it returns how many it inserted. It
// retries, until ctx ends, while the stream cannot be read or the replica
// answering has not stored them all yet.
func (p *Projector) fill(ctx context.Context, part int, from, to uint64) (int, error) {
	n := 0
	err := p.readStream(ctx, part, from, to, func(evs []storedEvent) error {
		n += len(evs)
		return p.project(ctx, part, evs)
	})
	return n, err
}

// readStream reads the events from..to of partition part from the stream
// and hands them to f in chunks of at most BatchSize. Sequences the stream
// does not hold (deleted) are skipped; the others are waited for.
func (p *Projector) readStream(ctx context.Context, part int, from, to uint64, f func([]storedEvent) error) error {
	nc := p.js.Conn()
	stream := streams.ConvStream(part)
	backoff := 50 * time.Millisecond
	for from <= to {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msgs, through, err := streams.ReadRange(rctx, nc, stream, from, min(to, from+uint64(p.cfg.BatchSize)-1), p.cfg.BatchSize)
		cancel()
		if len(msgs) > 0 {
			evs := make([]storedEvent, len(msgs))
			for i, m := range msgs {
				evs[i] = storedEvent{subject: m.Subject, data: m.Data, streamSeq: m.Seq}
			}
			if err := f(evs); err != nil {
				return err
			}
		}
		if through >= from {
			from = through + 1
			backoff = 50 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Nothing at all from `from` on: this replica lags, or NATS is away.
		p.log.Warn("read stream to fill a gap", zap.Int("partition", part), zap.Uint64("from", from), zap.Uint64("to", to), zap.Error(err))
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(backoff*2, p.cfg.MaxBackoff)
	}
	return nil
}
