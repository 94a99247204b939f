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

// applyInbox folds a queue entry of user into the user's summary of its
// conversation. A summary that cannot be read now (NATS away) is tried
// again until it can or ctx ends: false then, and the entry's write is not
// finished (the checkpoint stays below it, the next run folds it in).
func (s *shard) applyInbox(ctx context.Context, w write) bool {
	var conv string
	switch {
	case w.msg != nil:
		conv = w.msg.Conv
	case w.rcpt != nil && w.rcpt.User == w.user:
		conv = w.rcpt.Conv
	}
	if conv == "" {
		return true
	}
	// Before a conversation's first event nothing can be stored: no read.
	first := w.msg != nil && w.msg.Seq == 1
	e, err := s.inboxEntry(ctx, w.user, conv, first)
	for backoff := retryFirst; err != nil; backoff = nextBackoff(backoff) {
		s.f.m.summaryRetries.Inc()
		s.f.log.Warn("read summary, retrying", zap.String("user", w.user), zap.Duration("in", backoff), zap.Error(err))
		if !sleep(ctx, backoff) {
			return false
		}
		e, err = s.inboxEntry(ctx, w.user, conv, first)
	}
	changed := false
	if w.msg != nil {
		changed = e.s.ApplyMsg(w.user, w.msg, w.doc, w.src, w.group)
	} else {
		changed = e.s.ApplyReceipt(w.rcpt.Seq, w.rcpt.Status)
	}
	if changed {
		e.dirty = true
		s.inbox.dirty[inboxKey{w.user, conv}] = e
	}
	return true
}

// inboxEntry is user's summary of conv, read from the stream when not in
// memory, unless first: the conversation's first event, before which no
// summary can be stored (one stored by a run that stopped before its
// checkpoint is merged in when the write finds it, see flushInbox).
func (s *shard) inboxEntry(ctx context.Context, user, conv string, first bool) (*inboxEntry, error) {
	k := inboxKey{user, conv}
	if e := s.inbox.m[k]; e != nil {
		return e, nil
	}
	e := &inboxEntry{s: event.Summary{Conv: conv}}
	if !first {
		stored, seq, err := s.readSummary(ctx, user, conv)
		if err != nil {
			return nil, err
		}
		if stored != nil {
			e.s, e.subjSeq = *stored, seq
		}
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

// readSummary reads user's stored summary of conv: nil when there is none,
// an empty one (to be written over) when the stored one does not decode.
func (s *shard) readSummary(ctx context.Context, user, conv string) (*event.Summary, uint64, error) {
	f := s.f
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := f.h.Inbox[f.h.Layout.UserPartition(user)].GetLastMsgForSubject(ctx, f.h.Layout.Inbox(user, conv))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var sum event.Summary
	if err := json.Unmarshal(m.Data, &sum); err != nil {
		f.log.Error("unreadable summary, starting it again", zap.String("user", user), zap.String("conv", conv), zap.Error(err))
		return &event.Summary{Conv: conv}, m.Sequence, nil
	}
	return &sum, m.Sequence, nil
}

// flushInbox stores every changed summary, or only user's when user is
// set. Several changes to one conversation since the last flush make one
// write; the writes are published together and their acks awaited
// together. A write that finds another copy stored (another fan-out, or a
// summary made without a read) merges it in and writes again. It reports
// whether every one was stored: one that was not stays changed, for the
// next flush, and no checkpoint passes it meanwhile.
func (s *shard) flushInbox(ctx context.Context, user string) bool {
	var keys []inboxKey
	var entries []*inboxEntry
	var ws []casWrite
	for k, e := range s.inbox.dirty {
		if user != "" && k.user != user {
			continue
		}
		delete(s.inbox.dirty, k)
		keys, entries = append(keys, k), append(entries, e)
		ws = append(ws, casWrite{s.summaryMsg(k, e), e.subjSeq})
	}
	ok := true
	for i, seq := range publishTogether(s.f.js, ws) {
		e := entries[i]
		if seq == 0 {
			ok = s.storeSummary(ctx, keys[i], e) && ok
			continue
		}
		e.subjSeq, e.dirty = seq, false
		s.f.m.summaries.Inc()
	}
	return ok
}

func (s *shard) summaryMsg(k inboxKey, e *inboxEntry) *nats.Msg {
	data, _ := json.Marshal(&e.s)
	return &nats.Msg{Subject: s.f.h.Layout.Inbox(k.user, k.conv), Data: data}
}

// storeSummary writes one summary, merging in the stored copy when the
// compare-and-set finds one it did not know, with a few retries. When it
// gives up the summary stays changed, for the next flush.
func (s *shard) storeSummary(ctx context.Context, k inboxKey, e *inboxEntry) bool {
	f := s.f
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := f.js.PublishMsg(pctx, s.summaryMsg(k, e), jetstream.WithExpectLastSequencePerSubject(e.subjSeq))
		cancel()
		if err == nil {
			e.subjSeq, e.dirty = ack.Sequence, false
			f.m.summaries.Inc()
			return true
		}
		if streams.IsWrongLastSequence(err) {
			stored, seq, rerr := s.readSummary(ctx, k.user, k.conv)
			if rerr == nil {
				if stored != nil {
					e.s.Merge(stored)
				}
				e.subjSeq = seq
			}
		}
		if attempt >= 5 || ctx.Err() != nil {
			f.m.summaryRetries.Inc()
			f.log.Warn("store summary: kept for the next flush", zap.String("user", k.user), zap.Error(err))
			s.inbox.dirty[k] = e
			return false
		}
		time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
	}
}
