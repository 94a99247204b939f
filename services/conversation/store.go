package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/streams"
)

// Stored is a conversation's metadata as kept in KV convs.
type Stored struct {
	Meta *event.Meta // nil: none stored
	Rev  uint64      // its revision in the bucket (0: none stored, or unknown)
}

// Store reads and writes the metadata of conversations in KV convs; it is
// the only code that writes that bucket.
type Store struct {
	nc  *nats.Conn
	h   *streams.Handles
	log *zap.Logger
}

// NewStore makes a store over h's convs bucket and conversation streams.
// log is told (at debug) of writes that lost a race.
func NewStore(nc *nats.Conn, h *streams.Handles, log *zap.Logger) *Store {
	return &Store{nc: nc, h: h, log: log}
}

// Read reads conv's stored metadata: Stored{} when none is stored.
func (s *Store) Read(ctx context.Context, conv string) (Stored, error) {
	entry, err := s.h.Convs.Get(ctx, conv)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Stored{}, nil
	}
	if err != nil {
		return Stored{}, fmt.Errorf("conversation: read metadata of %s: %w", conv, err)
	}
	m := new(event.Meta)
	if err := json.Unmarshal(entry.Value(), m); err != nil {
		return Stored{}, fmt.Errorf("conversation: metadata of %s: %w", conv, err)
	}
	return Stored{Meta: m, Rev: entry.Revision()}, nil
}

// CatchUp returns from brought up to seq upTo. When from.Meta lacks events
// up to upTo, they are folded from the conversation stream into a copy (a
// new Meta when none is stored), and the result is written back over
// from.Rev; the revision returned is then the new one, or 0 when the write
// failed (another writer stored the same fold or a later one first).
// from.Meta is never modified.
func (s *Store) CatchUp(ctx context.Context, conv string, from Stored, upTo uint64) (Stored, error) {
	if from.Meta != nil && from.Meta.Applied >= upTo {
		return from, nil
	}
	meta := &event.Meta{}
	if from.Meta != nil {
		meta = from.Meta.Clone()
	}
	if err := FoldStream(ctx, s.nc, s.h, conv, meta, upTo); err != nil {
		return from, err
	}
	rev, _ := s.write(ctx, conv, meta, from.Rev)
	return Stored{Meta: meta, Rev: rev}, nil
}

// write stores meta as conv's metadata over revision rev (0: creates the
// key). It is a compare-and-set: losing only means another writer stored
// the same fold or a later one, which the next read of the bucket sees.
// It returns the new revision; a failure is logged here.
func (s *Store) write(ctx context.Context, conv string, meta *event.Meta, rev uint64) (uint64, error) {
	val, _ := json.Marshal(meta)
	var err error
	if rev == 0 {
		rev, err = s.h.Convs.Create(ctx, conv, val)
	} else {
		rev, err = s.h.Convs.Update(ctx, conv, val, rev)
	}
	if err != nil {
		s.log.Debug("store conversation metadata", zap.String("conv", conv), zap.Error(err))
		return 0, fmt.Errorf("conversation: store metadata of %s: %w", conv, err)
	}
	return rev, nil
}

// revision is the revision conv's metadata has in the bucket now (0: none,
// or unreadable).
func (s *Store) revision(ctx context.Context, conv string) uint64 {
	entry, err := s.h.Convs.Get(ctx, conv)
	if err != nil {
		return 0
	}
	return entry.Revision()
}
