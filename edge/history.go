package edge

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"messenger/client/proto"
	"messenger/services/event"
	"messenger/services/history"
	"messenger/streams"
	"messenger/subjects"
)

// PageRequest is a history page request; nil bounds are absent.
type PageRequest struct {
	Before, After *uint64
	Limit         int
}

// Page is a history page.
type Page struct {
	Messages []json.RawMessage `json:"messages"`
	HasMore  bool              `json:"has_more"`
}

func parseBound(v string) (*uint64, *Error) {
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return nil, errf(proto.CodeBadRequest, "bounds are non-negative integers, got %q", v)
	}
	return &n, nil
}

func (e *Edge) getMessages(w http.ResponseWriter, r *http.Request, user string) {
	start := time.Now()
	q := r.URL.Query()
	var req PageRequest
	var cerr *Error
	if req.Before, cerr = parseBound(q.Get("before")); cerr == nil {
		req.After, cerr = parseBound(q.Get("after"))
	}
	if cerr == nil && q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 {
			cerr = errf(proto.CodeBadRequest, "limit is a positive integer, got %q", q.Get("limit"))
		}
		req.Limit = n
	}
	if cerr != nil {
		writeError(w, cerr)
		return
	}
	conv := r.PathValue("conv")
	if !validID(conv) {
		writeError(w, errForbidden)
		return
	}
	page, cerr := e.History(r.Context(), user, conv, req)
	if cerr != nil {
		writeError(w, cerr)
		return
	}
	e.m.historyLatency.Observe(time.Since(start).Seconds())
	writeJSON(w, http.StatusOK, page)
}

// History answers a page of conv for a member: ascending seq, never missing
// an acked event (what ClickHouse lacks is read from the stream).
func (e *Edge) History(ctx context.Context, user, conv string, req PageRequest) (*Page, *Error) {
	if wait, ok := e.historyLimits.allow(user); !ok {
		return nil, &Error{Code: proto.CodeRateLimited, Message: "too many history reads", RetryAfter: wait}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, last, err := e.convs.Fresh(ctx, conv)
	if err != nil {
		return nil, errUnavailable("history", err)
	}
	if m == nil || !m.Has(user) {
		return nil, errForbidden
	}
	limit := req.Limit
	if limit <= 0 {
		limit = e.cfg.HistoryPage
	}
	limit = min(limit, e.cfg.MaxHistoryPage)
	lo, hi, hasMore := pageBounds(m.JoinedSeq(user), last, req, uint64(limit))
	page := &Page{Messages: []json.RawMessage{}, HasMore: hasMore}
	if lo > hi {
		return page, nil
	}
	events, ok := e.recent.page(conv, lo, hi)
	if ok {
		e.m.historyPages.WithLabelValues("recent").Inc()
	} else {
		e.m.historyPages.WithLabelValues("store").Inc()
		if events, err = e.pager.Range(ctx, conv, lo, hi); err != nil {
			return nil, errUnavailable("history", err)
		}
		if hi == last && len(events) > 0 {
			e.recent.fill(conv, events)
		}
	}
	for _, ev := range events {
		page.Messages = append(page.Messages, ev.Doc)
	}
	return page, nil
}

// pageBounds turns a request into the seqs lo..hi to answer (lo > hi for an
// empty page) and whether more exist in the direction of paging: newer
// with after, older otherwise. joined..last are the seqs the member may see.
func pageBounds(joined, last uint64, req PageRequest, limit uint64) (lo, hi uint64, hasMore bool) {
	upper, lower := last, joined
	if req.Before != nil {
		if *req.Before == 0 {
			return 1, 0, false
		}
		upper = min(upper, *req.Before-1)
	}
	if req.After != nil {
		if *req.After == math.MaxUint64 { // nothing is after it (and +1 wraps to 0)
			return 1, 0, false
		}
		lower = max(lower, *req.After+1)
	}
	if lower > upper {
		return 1, 0, false
	}
	if req.After != nil { // forward
		hi = min(upper, lower+limit-1)
		return lower, hi, hi < upper
	}
	lo = lower
	if upper-lower+1 > limit {
		lo = upper - limit + 1
	}
	return lo, upper, lo > lower
}

// noteEvent keeps the recent cache current with an event this edge saw.
func (e *Edge) noteEvent(conv string, seq, streamSeq uint64, doc []byte) {
	e.recent.add(conv, history.Event{Seq: seq, StreamSeq: streamSeq, Doc: doc})
}

// ConversationItem is one entry of GET /v1/conversations.
type ConversationItem struct {
	Conv         string          `json:"conv"`
	Kind         string          `json:"kind"`
	Title        string          `json:"title"`
	Members      []string        `json:"members"`
	Last         json.RawMessage `json:"last"`
	Unread       int             `json:"unread"`
	DeliveredSeq uint64          `json:"delivered_seq"`
	ReadSeq      uint64          `json:"read_seq"`
}

func (e *Edge) getConversations(w http.ResponseWriter, r *http.Request, user string) {
	start := time.Now()
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, errf(proto.CodeBadRequest, "limit is a positive integer, got %q", v))
			return
		}
		limit = min(n, 200)
	}
	list, cerr := e.Conversations(r.Context(), user, limit)
	if cerr != nil {
		writeError(w, cerr)
		return
	}
	e.m.listLatency.Observe(time.Since(start).Seconds())
	writeJSON(w, http.StatusOK, map[string]any{"conversations": list})
}

// Conversations is the user's conversation list, most recent activity
// first, read from the user's summaries (one stream read, no ClickHouse).
func (e *Edge) Conversations(ctx context.Context, user string, limit int) ([]ConversationItem, *Error) {
	if wait, ok := e.historyLimits.allow(user); !ok {
		return nil, &Error{Code: proto.CodeRateLimited, Message: "too many reads", RetryAfter: wait}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	all, err := e.summaries(ctx, user)
	if err != nil {
		return nil, errUnavailable("conversations", err)
	}
	slices.SortFunc(all, func(a, b event.Summary) int {
		if a.TS != b.TS {
			if a.TS > b.TS {
				return -1
			}
			return 1
		}
		if a.Conv < b.Conv {
			return -1
		}
		return 1
	})
	out := []ConversationItem{}
	for _, s := range all {
		if len(out) == limit {
			break
		}
		members := s.Members
		if members == nil {
			members = []string{}
		}
		out = append(out, ConversationItem{Conv: s.Conv, Kind: s.Kind, Title: s.Title, Members: members,
			Last: s.Last, Unread: s.Unread, DeliveredSeq: s.DeliveredSeq, ReadSeq: s.ReadSeq})
	}
	return out, nil
}

// fanoutFlushWait bounds the wait for the fan-out's flush of a user's
// summaries and of the watermarks before they are read.
const fanoutFlushWait = time.Second

// flushFanout asks the fan-outs to store what they hold in memory of
// user's summaries and of every watermark (subjects.FanoutFlush). Fan-outs
// sharing the partitions each hold some of the user's summaries: each
// answers with how many share them, and the reader waits for that many
// answers. Without them all within fanoutFlushWait (no fan-out running, one
// too busy, or one that just died and is still counted) the reader reads
// what is stored.
func (e *Edge) flushFanout(user string) {
	inbox := e.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := e.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return
	}
	defer sub.Unsubscribe()
	if err := e.nc.PublishRequest(subjects.FanoutFlush, inbox, []byte(user)); err != nil {
		return
	}
	timeout := time.NewTimer(fanoutFlushWait)
	defer timeout.Stop()
	for want, got := 1, 0; got < want; {
		select {
		case m := <-ch:
			got++
			if n, err := strconv.Atoi(string(m.Data)); err == nil && n > want {
				want = n
			}
		case <-timeout.C:
			return
		}
	}
}

// summaries reads every conversation summary of user: batch direct gets on
// its subjects in its inbox stream, no consumer.
func (e *Edge) summaries(ctx context.Context, user string) ([]event.Summary, error) {
	// The fan-out stores summaries every --fanout-flush; asked, it stores
	// the user's at once.
	e.flushFanout(user)
	stream := streams.InboxStream(e.h.Layout.UserPartition(user))
	subject := e.h.Layout.InboxOf(user)
	var all []event.Summary
	var after uint64
	for {
		msgs, more, err := streams.ReadAfter(ctx, e.nc, stream, subject, after, 1024)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			after = m.Seq
			var s event.Summary
			if json.Unmarshal(m.Data, &s) == nil && s.LastSeq > 0 {
				all = append(all, s)
			}
		}
		if !more || len(msgs) == 0 {
			return all, nil
		}
	}
}
