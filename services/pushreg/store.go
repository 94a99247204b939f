package pushreg

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/client/proto"
	"messenger/infra/jspub"
	"messenger/services/push"
	"messenger/streams"
	"messenger/subjects"
)

// Errors of the Store, checked with errors.Is.
var (
	// ErrInvalid is a registration or mute that breaks the rules (the
	// edge answers bad_request with the message).
	ErrInvalid = errors.New("pushreg: invalid")
	// ErrNotFound is a registration the user does not have.
	ErrNotFound = errors.New("pushreg: no such registration")
)

// Registration is one registered device: the value of its key in KV push.
type Registration struct {
	ID           string          `json:"id"`
	Platform     string          `json:"platform"`
	Token        string          `json:"token,omitempty"`
	Subscription json.RawMessage `json:"subscription,omitempty"`
	Created      int64           `json:"created"` // unix ms
}

// Target is r as the providers take it.
func (r Registration) Target(user string) (push.Target, error) {
	t := push.Target{User: user, ID: r.ID, Platform: r.Platform, Token: r.Token}
	if r.Platform == push.WebPush {
		s, err := push.ParseSubscription(r.Subscription)
		if err != nil {
			return t, err
		}
		t.Subscription = s
	}
	return t, nil
}

// endpoint is r's Web Push endpoint ("" for others).
func (r Registration) endpoint() string {
	var s struct {
		Endpoint string `json:"endpoint"`
	}
	_ = json.Unmarshal(r.Subscription, &s)
	return s.Endpoint
}

func (r Registration) sameDevice(o Registration) bool {
	return r.Platform == o.Platform && r.Token == o.Token && r.endpoint() == o.endpoint()
}

// Config of a Store; the zero value is valid.
type Config struct {
	// MaxDevices bounds a user's registrations: a new one beyond it
	// replaces the oldest. Default 20.
	MaxDevices int
}

// Store reads and writes registrations and mutes.
type Store struct {
	cfg Config
	js  jetstream.JetStream
	nc  *nats.Conn
	h   *streams.Handles
	pub *jspub.Publisher
	log *zap.Logger
	now func() time.Time
}

// New makes a Store on the opened streams h (h.PushReg, h.Push, h.Mutes);
// nc is js's connection (batch reads). pub, when nil, is a Publisher with
// the default retries.
func New(js jetstream.JetStream, nc *nats.Conn, h *streams.Handles, pub *jspub.Publisher, log *zap.Logger, cfg Config) *Store {
	if cfg.MaxDevices <= 0 {
		cfg.MaxDevices = 20
	}
	if pub == nil {
		pub = jspub.New(js, jspub.Config{})
	}
	return &Store{cfg: cfg, js: js, nc: nc, h: h, pub: pub, log: log.With(zap.String("component", "pushreg")), now: time.Now}
}

// Registrations are user's registrations, oldest first.
func (s *Store) Registrations(ctx context.Context, user string) ([]Registration, error) {
	// Keys removed within streams.PushPurgeTTL still answer (empty): room
	// for them beyond the cap.
	batch := 4*s.cfg.MaxDevices + 64
	raw, err := streams.ReadLastMatching(ctx, s.nc, subjects.KVStream(streams.BucketPush), streams.PushKeysOf(user), batch)
	if err != nil {
		return nil, fmt.Errorf("pushreg: registrations of %s: %w", user, err)
	}
	if len(raw) >= batch {
		s.log.Warn("push registrations read may be cut short: removed keys fill the batch", zap.String("user", user), zap.Int("batch", batch))
	}
	regs := make([]Registration, 0, len(raw))
	for _, data := range raw {
		var r Registration
		if len(data) == 0 || json.Unmarshal(data, &r) != nil || r.ID == "" {
			continue // removed (a purge marker) or unreadable
		}
		regs = append(regs, r)
	}
	slices.SortFunc(regs, func(a, b Registration) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.ID, b.ID))
	})
	return regs, nil
}

// Devices are user's registered devices, oldest first, as the providers
// take them. An unreadable registration is left out (and logged).
func (s *Store) Devices(ctx context.Context, user string) ([]push.Target, error) {
	regs, err := s.Registrations(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]push.Target, 0, len(regs))
	for _, r := range regs {
		t, err := r.Target(user)
		if err != nil {
			s.log.Warn("unreadable push registration", zap.String("user", user), zap.String("id", r.ID), zap.Error(err))
			continue
		}
		out = append(out, t)
	}
	return out, nil
}

// Register registers r (Platform and Token or Subscription) for user and
// answers its id. The same device registered again (same platform and token
// or endpoint) answers its id and existed. Beyond MaxDevices, the oldest
// registrations are removed (unregister events, reason "evicted"): a device
// reinstalled or reset registers anew without unregistering, and a client
// cannot know the ids of registrations it lost, so refusing would lock the
// user out of push; the oldest is the likeliest stale. A registration that
// breaks the rules is ErrInvalid and changes nothing.
func (s *Store) Register(ctx context.Context, user string, r Registration) (id string, existed bool, err error) {
	if !proto.ValidID(user) {
		return "", false, fmt.Errorf("%w: user %q", ErrInvalid, user)
	}
	if err := check(&r); err != nil {
		return "", false, err
	}
	regs, err := s.Registrations(ctx, user)
	if err != nil {
		return "", false, err
	}
	for _, old := range regs {
		if old.sameDevice(r) {
			return old.ID, true, nil
		}
	}
	for len(regs) >= s.cfg.MaxDevices {
		if err := s.remove(ctx, user, regs[0].ID, ReasonEvicted); err != nil {
			return "", false, err
		}
		regs = regs[1:]
	}
	r.ID, r.Created = newID(), s.now().UnixMilli()
	ev := Event{V: EventVersion, Type: TypeRegister, User: user, ID: r.ID, Platform: r.Platform,
		Token: r.Token, Subscription: r.Subscription, TS: r.Created}
	if _, err := s.store(ctx, subjects.PushRegDevice(user, r.ID), "register."+user+"."+r.ID, ev); err != nil {
		return "", false, err
	}
	val, _ := json.Marshal(r)
	if _, err := s.h.Push.Put(ctx, streams.PushKey(user, r.ID), val); err != nil {
		return "", false, fmt.Errorf("pushreg: register %s: %w", user, err)
	}
	return r.ID, false, nil
}

// Remove unregisters user's registration id (an unregister event with
// reason, then the key removed from KV push). ErrNotFound when the user has
// no such registration. Removing one twice at once (the owner and the
// notifier) stores one event: its Msg-Id is the same.
func (s *Store) Remove(ctx context.Context, user, id, reason string) error {
	if !proto.ValidID(user) || !proto.ValidID(id) {
		return ErrNotFound
	}
	if _, err := s.h.Push.Get(ctx, streams.PushKey(user, id)); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return ErrNotFound
		}
		return fmt.Errorf("pushreg: remove %s %s: %w", user, id, err)
	}
	return s.remove(ctx, user, id, reason)
}

func (s *Store) remove(ctx context.Context, user, id, reason string) error {
	ev := Event{V: EventVersion, Type: TypeUnregister, User: user, ID: id, Reason: reason, TS: s.now().UnixMilli()}
	if _, err := s.store(ctx, subjects.PushRegDevice(user, id), "unregister."+user+"."+id, ev); err != nil {
		return err
	}
	if err := s.h.Push.Purge(ctx, streams.PushKey(user, id), jetstream.PurgeTTL(streams.PushPurgeTTL)); err != nil {
		return fmt.Errorf("pushreg: remove %s %s: %w", user, id, err)
	}
	return nil
}

// store publishes ev on subject with msgID for deduplication and answers
// its stream sequence (the first copy's for a duplicate).
func (s *Store) store(ctx context.Context, subject, msgID string, ev Event) (uint64, error) {
	data, _ := json.Marshal(ev)
	pa, _, err := s.pub.Publish(ctx, subject, data, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(streams.PushRegStream))
	if err != nil {
		return 0, fmt.Errorf("pushreg: store %s event of %s: %w", ev.Type, ev.User, err)
	}
	return pa.Sequence, nil
}

// newID makes a registration id (and a mute event's Msg-Id).
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "p" + base64.RawURLEncoding.EncodeToString(b[:])
}
