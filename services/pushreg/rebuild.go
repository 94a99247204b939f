package pushreg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/client/proto"
	"messenger/streams"
	"messenger/subjects"
)

// RebuildReport tells what Rebuild wrote.
type RebuildReport struct {
	Events        int // events read
	Registrations int // registrations put in KV push
	Removed       int // registrations the stream says are gone, removed from KV push
	Mutes         int // mute states written to KV mutes (muted or not)
	Unreadable    int // events that could not be read (skipped, logged)
	// Adopted are registrations KV push held with no event (stored before
	// the events existed): a register event is stored for each, so that
	// the stream holds them too.
	Adopted int
}

// Rebuild writes the state the PUSHREG stream holds into KV push and KV
// mutes: for each registration its last event (register: the key put;
// unregister: the key removed), for each muted conversation its last mute
// change (never over a later one, as the edges write them). It reads the
// stream with batch direct gets, so the edge's identity may run it while
// the edges are serving. A registration of KV push the stream does not know
// (stored before the events existed) is adopted first: its register event
// is stored, with its Msg-Id, so a rebuild after it brings it back too.
func (s *Store) Rebuild(ctx context.Context) (RebuildReport, error) {
	var rep RebuildReport
	// The bucket before the stream: a registration in the bucket has its
	// event in the stream by then (events are stored first), unless it is
	// older than the events.
	kvRegs, err := s.bucketRegistrations(ctx)
	if err != nil {
		return rep, fmt.Errorf("pushreg: rebuild: %w", err)
	}
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
	for subject, kr := range kvRegs {
		if _, ok := state[subject]; ok {
			continue
		}
		ev := Event{V: EventVersion, Type: TypeRegister, User: kr.user, ID: kr.reg.ID, Platform: kr.reg.Platform,
			Token: kr.reg.Token, Subscription: kr.reg.Subscription, TS: kr.reg.Created}
		seq, err := s.store(ctx, subject, "register."+kr.user+"."+kr.reg.ID, ev)
		if err != nil {
			return rep, fmt.Errorf("pushreg: rebuild: %w", err)
		}
		state[subject] = last{seq, ev}
		rep.Adopted++
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
				err = s.h.Push.Purge(ctx, key, jetstream.PurgeTTL(streams.PushPurgeTTL))
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

type bucketReg struct {
	user string
	reg  Registration
}

// bucketRegistrations reads KV push whole (batch direct gets over its
// stream): the registrations it holds, by their event subject.
func (s *Store) bucketRegistrations(ctx context.Context) (map[string]bucketReg, error) {
	name := subjects.KVStream(streams.BucketPush)
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	lastOf := map[string][]byte{} // by key subject; nil: deleted
	from, to := info.State.FirstSeq, info.State.LastSeq
	for from > 0 && from <= to {
		msgs, through, err := streams.ReadRange(ctx, s.nc, name, from, to, 256)
		if err != nil {
			return nil, err
		}
		if through < from {
			return nil, fmt.Errorf("%s answered nothing from %d", name, from)
		}
		for _, m := range msgs {
			if m.Header.Get("KV-Operation") != "" || len(m.Data) == 0 {
				lastOf[m.Subject] = nil
			} else {
				lastOf[m.Subject] = m.Data
			}
		}
		from = through + 1
	}
	prefix := subjects.KVKey(streams.BucketPush, "")
	out := map[string]bucketReg{}
	for subject, data := range lastOf {
		if data == nil {
			continue
		}
		user, id, ok := strings.Cut(strings.TrimPrefix(subject, prefix), ".")
		var r Registration
		if !ok || json.Unmarshal(data, &r) != nil || r.ID != id || !proto.ValidID(user) || !proto.ValidID(id) {
			s.log.Warn("rebuild: unreadable registration in the bucket", zap.String("key", subject))
			continue
		}
		out[subjects.PushRegDevice(user, id)] = bucketReg{user, r}
	}
	return out, nil
}
