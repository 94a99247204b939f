package pushreg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/streams"
)

// RebuildReport tells what Rebuild wrote.
type RebuildReport struct {
	Events        int // events read
	Registrations int // registrations put in KV push
	Removed       int // registrations the stream says are gone, removed from KV push
	Mutes         int // mute states written to KV mutes (muted or not)
	Unreadable    int // events that could not be read (skipped, logged)
}

// Rebuild writes the state the PUSHREG stream holds into KV push and KV
// mutes: for each registration its last event (register: the key put;
// unregister: the key removed), for each muted conversation its last mute
// change (never over a later one, as the edges write them). It reads the
// stream with batch direct gets, so the edge's identity may run it while
// the edges are serving. Keys the stream does not know (registrations
// stored before the events existed) are left as they are.
func (s *Store) Rebuild(ctx context.Context) (RebuildReport, error) {
	var rep RebuildReport
	info, err := s.h.PushReg.Info(ctx)
	if err != nil {
		return rep, fmt.Errorf("pushreg: rebuild: %w", err)
	}
	type last struct {
		seq uint64
		ev  Event
	}
	state := map[string]last{} // by subject
	from, to := info.State.FirstSeq, info.State.LastSeq
	for from > 0 && from <= to {
		msgs, through, err := streams.ReadRange(ctx, s.nc, streams.PushRegStream, from, to, 256)
		if err != nil {
			return rep, fmt.Errorf("pushreg: rebuild: %w", err)
		}
		if through < from {
			return rep, fmt.Errorf("pushreg: rebuild: the stream answered nothing from %d", from)
		}
		for _, m := range msgs {
			rep.Events++
			ev, err := parseEvent(m.Data)
			if err != nil {
				rep.Unreadable++
				s.log.Warn("rebuild: unreadable event", zap.Uint64("seq", m.Seq), zap.String("subject", m.Subject), zap.Error(err))
				continue
			}
			state[m.Subject] = last{m.Seq, ev}
		}
		from = through + 1
	}
	for _, l := range state {
		ev := l.ev
		switch ev.Type {
		case TypeRegister:
			r := Registration{ID: ev.ID, Platform: ev.Platform, Token: ev.Token, Subscription: ev.Subscription, Created: ev.TS}
			val, _ := json.Marshal(r)
			if _, err := s.h.Push.Put(ctx, streams.PushKey(ev.User, ev.ID), val); err != nil {
				return rep, fmt.Errorf("pushreg: rebuild: %w", err)
			}
			rep.Registrations++
		case TypeUnregister:
			key := streams.PushKey(ev.User, ev.ID)
			_, err := s.h.Push.Get(ctx, key)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err == nil {
				err = s.h.Push.Purge(ctx, key)
			}
			if err != nil {
				return rep, fmt.Errorf("pushreg: rebuild: %w", err)
			}
			rep.Removed++
		case TypeMute, TypeUnmute:
			if err := s.applyMute(ctx, ev, l.seq); err != nil {
				return rep, fmt.Errorf("pushreg: rebuild: %w", err)
			}
			rep.Mutes++
		default:
			rep.Unreadable++
			s.log.Warn("rebuild: unknown event type", zap.Uint64("seq", l.seq), zap.String("type", ev.Type))
		}
	}
	return rep, nil
}
