package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/streams"
)

// inboxKey names one summary a shard keeps.
type inboxKey struct{ user, conv string }

// inboxEntry is a summary in a shard's memory: subjSeq is the sequence of
// its stored copy (for compare-and-set), dirty says it changed since.
type inboxEntry struct {
	s       event.Summary
	subjSeq uint64
	dirty   bool
}

// inboxCache is a shard's bounded set of summaries; owned by the shard
// goroutine, so unlocked.
type inboxCache struct {
	max   int
	m     map[inboxKey]*inboxEntry
	dirty map[inboxKey]*inboxEntry
}

func newInboxCache(max int) *inboxCache {
	return &inboxCache{max: max, m: map[inboxKey]*inboxEntry{}, dirty: map[inboxKey]*inboxEntry{}}
}

// apply folds a queue entry of user into the user's summary of its conversation.
func (s *shard) applyInbox(ctx context.Context, w write) {
	var conv string
	switch {
	case w.msg != nil:
		conv = w.msg.Conv
	case w.rcpt != nil && w.rcpt.User == w.user:
		conv = w.rcpt.Conv
	}
	if conv == "" {
		return
	}
	e, err := s.inboxEntry(ctx, w.user, conv)
	if err != nil {
		s.f.log.Warn("read summary", zap.String("user", w.user), zap.Error(err))
		return
	}
	changed := false
	if w.msg != nil {
		changed = e.s.ApplyMsg(w.user, w.msg, w.doc)
	} else {
		changed = e.s.ApplyReceipt(w.rcpt.Seq, w.rcpt.Status)
	}
	if changed {
		e.dirty = true
		s.inbox.dirty[inboxKey{w.user, conv}] = e
	}
}

func (s *shard) inboxEntry(ctx context.Context, user, conv string) (*inboxEntry, error) {
	k := inboxKey{user, conv}
	if e := s.inbox.m[k]; e != nil {
		return e, nil
	}
	f := s.f
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e := &inboxEntry{}
	m, err := f.h.Inbox[f.h.Layout.UserPartition(user)].GetLastMsgForSubject(ctx, f.h.Layout.Inbox(user, conv))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		e.s.Conv = conv
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(m.Data, &e.s); err != nil {
			return nil, err
		}
		e.subjSeq = m.Sequence
	}
	if len(s.inbox.m) >= s.inbox.max {
		for key, old := range s.inbox.m { // drop an arbitrary clean half
			if !old.dirty {
				delete(s.inbox.m, key)
			}
			if len(s.inbox.m) < s.inbox.max/2 {
				break
			}
		}
	}
	s.inbox.m[k] = e
	return e, nil
}

// flushInbox stores every changed summary, or only user's when user is
// set. Several changes to one conversation since the last flush make one
// write.
func (s *shard) flushInbox(ctx context.Context, user string) {
	f := s.f
	for k, e := range s.inbox.dirty {
		if user != "" && k.user != user {
			continue
		}
		data, _ := json.Marshal(&e.s)
		msg := &nats.Msg{Subject: f.h.Layout.Inbox(k.user, k.conv), Data: data}
		for attempt := 0; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ack, err := f.js.PublishMsg(pctx, msg, jetstream.WithExpectLastSequencePerSubject(e.subjSeq))
			cancel()
			if err == nil {
				e.subjSeq, e.dirty = ack.Sequence, false
				f.m.summaries.Inc()
				break
			}
			if streams.IsWrongLastSequence(err) {
				// Another fan-out wrote it: it applies the same events; take its copy.
				delete(s.inbox.m, k)
				break
			}
			if attempt >= 5 || ctx.Err() != nil {
				f.log.Warn("store summary", zap.String("user", k.user), zap.Error(err))
				delete(s.inbox.m, k)
				break
			}
			time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
		}
		delete(s.inbox.dirty, k)
	}
}
