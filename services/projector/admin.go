package projector

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/streams"
	"messenger/subjects"
)

// ReplayReport says what a dead-letter replay did.
type ReplayReport struct {
	Replayed, Failed int
	Reasons          []string // of the failures
}

// ReplayDeadLetters projects the projector's dead letters again; those that
// now go in are removed from the dead-letter stream, the others stay.
func (p *Projector) ReplayDeadLetters(ctx context.Context, nc *nats.Conn) (ReplayReport, error) {
	var rep ReplayReport
	subject := subjects.DeadLetters("projector")
	var after uint64
	for {
		msgs, more, err := streams.ReadAfter(ctx, nc, streams.DeadLetterStream, subject, after, 256)
		if err != nil {
			return rep, err
		}
		for _, m := range msgs {
			after = m.Seq
			part, _ := strconv.Atoi(m.Header.Get(streams.DeadStreamHeader)[len(streams.ConvStreamPrefix):])
			streamSeq, _ := strconv.ParseUint(m.Header.Get(streams.DeadSequenceHeader), 10, 64)
			rows, err := toRows(m.Header.Get(streams.DeadSubjectHeader), m.Data, part, streamSeq)
			if err == nil {
				err = p.insertOnce(ctx, rows)
			}
			if err != nil {
				rep.Failed++
				rep.Reasons = append(rep.Reasons, fmt.Sprintf("%s #%d: %v", m.Header.Get(streams.DeadStreamHeader), streamSeq, err))
				continue
			}
			if err := p.h.Dead.DeleteMsg(ctx, m.Seq); err != nil {
				return rep, fmt.Errorf("projector: remove replayed dead letter %d: %w", m.Seq, err)
			}
			rep.Replayed++
		}
		if !more && len(msgs) < 256 {
			return rep, nil
		}
	}
}

func (p *Projector) insertOnce(ctx context.Context, rows []row) error {
	for _, r := range rows {
		if err := p.insert(ctx, r.table, []row{r}); err != nil {
			return err
		}
	}
	return nil
}

// ResetConsumers deletes the projector's consumers, so that the projection
// is made again from the first event of every conversation stream (by this
// process or by any running projector, which re-creates them).
func ResetConsumers(ctx context.Context, h *streams.Handles) error {
	for part, s := range h.Conv {
		if err := s.DeleteConsumer(ctx, streams.ProjectorDurable); err != nil && err != jetstream.ErrConsumerNotFound {
			return fmt.Errorf("projector: reset consumer of partition %d: %w", part, err)
		}
	}
	return nil
}

// WaitCaughtUp waits until every conversation stream is projected.
func WaitCaughtUp(ctx context.Context, h *streams.Handles) error {
	for {
		behind := false
		for part := range h.Conv {
			lag, _, err := Lag(ctx, h, part)
			if err != nil || lag > 0 {
				behind = true
				break
			}
		}
		if !behind {
			return nil
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}
