package edge

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"messenger/client/proto"
	"messenger/services/event"
	"messenger/streams"
)

// Long polling (PROTOCOL.md section 4): the stored events after a cursor,
// held until at least one exists or the timeout passes.

const (
	defaultPollTimeout = 25 * time.Second
	maxPollTimeout     = 60 * time.Second
	pollBatch          = 100
	// pollSlack: a held poll's read and write deadlines are its timeout
	// plus this, for the reads before it and the answer after it.
	pollSlack = 15 * time.Second
)

// PollAnswer is the body of GET /v1/poll.
type PollAnswer struct {
	Events []json.RawMessage `json:"events"`
	Cursor string            `json:"cursor"`
}

func (e *Edge) getPoll(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	timeout := defaultPollTimeout
	if v := q.Get("timeout"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) || n < 0 {
			writeError(w, errf(proto.CodeBadRequest, "timeout is a number of seconds, got %q", v))
			return
		}
		timeout = time.Duration(min(n, maxPollTimeout.Seconds()) * float64(time.Second))
	}
	if e.draining.Load() {
		writeError(w, errf(proto.CodeUnavailable, "server is draining: poll another edge"))
		return
	}
	// A held poll counts as a connection of the user.
	if cerr := e.conns.acquire(user); cerr != nil {
		writeError(w, cerr)
		return
	}
	defer e.conns.release(user)
	// The server's read and write timeouts are shorter than a poll may be
	// held: this request gets its own (an error means the writer does not
	// support deadlines, e.g. in a test recorder: nothing to extend).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(timeout + pollSlack))
	_ = rc.SetWriteDeadline(time.Now().Add(timeout + pollSlack))
	ctx, cancel := context.WithTimeout(r.Context(), timeout+10*time.Second)
	defer cancel()
	head, first, err := e.queueHead(ctx, user, false)
	if err != nil {
		writeError(w, errUnavailable("poll", err))
		return
	}
	if !q.Has("cursor") {
		writeJSON(w, http.StatusOK, PollAnswer{Events: []json.RawMessage{}, Cursor: event.Cursor(head)})
		return
	}
	after, expired := e.checkCursor(ctx, user, q.Get("cursor"), head, first)
	if expired {
		writeError(w, &Error{Code: proto.CodeCursorExpired, Message: "cursor unknown or expired: reload conversations, then poll without a cursor"})
		return
	}
	// Register before reading, so that an event stored in between wakes us.
	wake := make(chan struct{}, 1)
	e.hub.addWaiter(user, wake)
	defer e.hub.removeWaiter(user, wake)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	stream := streams.QueueStream(e.h.Layout.UserPartition(user))
	subject := e.h.Layout.Queue(user)
	for {
		msgs, _, err := streams.ReadAfter(ctx, e.nc, stream, subject, after, pollBatch)
		if err != nil {
			writeError(w, errUnavailable("poll", err))
			return
		}
		if len(msgs) > 0 || timeout == 0 {
			ans := PollAnswer{Events: []json.RawMessage{}, Cursor: event.Cursor(after)}
			for _, m := range msgs {
				ans.Events = append(ans.Events, event.WithCursor(m.Data, m.Seq))
				ans.Cursor = event.Cursor(m.Seq)
			}
			writeJSON(w, http.StatusOK, ans)
			return
		}
		select {
		case <-wake:
		case <-deadline.C:
			writeJSON(w, http.StatusOK, PollAnswer{Events: []json.RawMessage{}, Cursor: event.Cursor(after)})
			return
		case <-e.stopping:
			writeJSON(w, http.StatusOK, PollAnswer{Events: []json.RawMessage{}, Cursor: event.Cursor(after)})
			return
		case <-r.Context().Done():
			return
		}
	}
}
