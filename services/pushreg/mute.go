package pushreg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/client/proto"
	"messenger/streams"
	"messenger/subjects"
)

// MuteState is the value of a key of KV mutes: user's last mute event of
// conv and its stream sequence (what orders concurrent changes).
type MuteState struct {
	Muted bool   `json:"muted"`
	Until int64  `json:"until,omitempty"` // unix ms; 0: for ever
	Seq   uint64 `json:"seq"`             // the event's sequence in PUSHREG
	TS    int64  `json:"ts"`              // the event's ts
}

// Active tells whether the mute holds at now.
func (m MuteState) Active(now time.Time) bool {
	return m.Muted && (m.Until == 0 || now.UnixMilli() < m.Until)
}

// Mute mutes conv for user until the unix ms until (0: for ever). The
// caller checks that user is a member of conv. until in the past is
// ErrInvalid.
func (s *Store) Mute(ctx context.Context, user, conv string, until int64) error {
	now := s.now().UnixMilli()
	if until < 0 || (until != 0 && until <= now) {
		return fmt.Errorf("%w: until must be a future time in unix milliseconds, or 0 for ever", ErrInvalid)
	}
	return s.setMute(ctx, Event{V: EventVersion, Type: TypeMute, User: user, Conv: conv, Until: until, TS: now})
}

// Unmute ends user's mute of conv (muted or not: it stores the change).
func (s *Store) Unmute(ctx context.Context, user, conv string) error {
	return s.setMute(ctx, Event{V: EventVersion, Type: TypeUnmute, User: user, Conv: conv, TS: s.now().UnixMilli()})
}

func (s *Store) setMute(ctx context.Context, ev Event) error {
	if !proto.ValidID(ev.User) || !proto.ValidID(ev.Conv) {
		return fmt.Errorf("%w: user %q, conv %q", ErrInvalid, ev.User, ev.Conv)
	}
	seq, err := s.store(ctx, subjects.PushRegMute(ev.User, ev.Conv), ev.Type+"."+newID(), ev)
	if err != nil {
		return err
	}
	return s.applyMute(ctx, ev, seq)
}

// applyMute writes ev (stored at seq) to KV mutes unless a later event of
// the same key is there: compare-and-set, so that two changes at once end
// with the later one whatever order their writes come in.
func (s *Store) applyMute(ctx context.Context, ev Event, seq uint64) error {
	key := streams.MuteKey(ev.User, ev.Conv)
	val, _ := json.Marshal(MuteState{Muted: ev.Type == TypeMute, Until: ev.Until, Seq: seq, TS: ev.TS})
	for attempt := 0; ; attempt++ {
		entry, err := s.h.Mutes.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = s.h.Mutes.Create(ctx, key, val)
		case err != nil:
		default:
			var cur MuteState
			if json.Unmarshal(entry.Value(), &cur) == nil && cur.Seq >= seq {
				return nil // a later change is there already
			}
			_, err = s.h.Mutes.Update(ctx, key, val, entry.Revision())
		}
		if err == nil {
			return nil
		}
		if attempt >= 10 || !(errors.Is(err, jetstream.ErrKeyExists) || isWrongLast(err)) {
			return fmt.Errorf("pushreg: %s %s %s: %w", ev.Type, ev.User, ev.Conv, err)
		}
	}
}

func isWrongLast(err error) bool { return streams.IsWrongLastSequence(err) }

// MuteOf is user's last mute change of conv as stored; found is false when
// there is none.
func (s *Store) MuteOf(ctx context.Context, user, conv string) (m MuteState, found bool, err error) {
	entry, err := s.h.Mutes.Get(ctx, streams.MuteKey(user, conv))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("pushreg: mute of %s %s: %w", user, conv, err)
	}
	if err := json.Unmarshal(entry.Value(), &m); err != nil {
		return m, false, fmt.Errorf("pushreg: mute of %s %s: %w", user, conv, err)
	}
	return m, true, nil
}

// Muted tells whether user muted conv at now.
func (s *Store) Muted(ctx context.Context, user, conv string, now time.Time) (bool, error) {
	if !proto.ValidID(user) || !proto.ValidID(conv) {
		return false, nil
	}
	m, _, err := s.MuteOf(ctx, user, conv)
	if err != nil {
		return false, err
	}
	return m.Active(now), nil
}
