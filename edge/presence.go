package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"messenger/client/proto"
	"messenger/services/event"
	"messenger/streams"
	"messenger/subjects"
)

// newEdgeID names this edge process for the presence service.
func newEdgeID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, host)
	return id + "_" + hex.EncodeToString(b[:])
}

// reportPresence tells the presence service that user connected to (on) or
// left (!on) this edge.
func (e *Edge) reportPresence(user string, on bool) {
	data, _ := json.Marshal(event.PresenceReport{V: event.Version, Edge: e.id, User: user, On: on})
	_ = e.nc.Publish(e.h.Layout.PresenceEvents(user), data)
}

// presenceLoop beats the heartbeat and sends the full list of users now and
// then, and whenever the presence service asks (after it starts) or the
// NATS connection came back (reports sent into a silent server are lost;
// the heartbeat at once keeps the silence presence sees under its timeout).
func (e *Edge) presenceLoop(ctx context.Context) {
	resync := make(chan struct{}, 1)
	sub, err := e.nc.Subscribe(subjects.PresenceResync, func(*nats.Msg) {
		select {
		case resync <- struct{}{}:
		default:
		}
	})
	if err == nil {
		defer sub.Unsubscribe()
	}
	beat := time.NewTicker(e.cfg.PresenceHeartbeat)
	defer beat.Stop()
	full := time.NewTicker(e.cfg.PresenceSync)
	defer full.Stop()
	hb, _ := json.Marshal(event.PresenceReport{V: event.Version, Edge: e.id})
	var round uint64
	sync := func() {
		round++
		users := e.hub.users()
		for i := 0; ; i += 1000 {
			end := min(i+1000, len(users))
			data, _ := json.Marshal(event.PresenceReport{V: event.Version, Edge: e.id, Users: users[i:end], Round: round, Last: end == len(users)})
			_ = e.nc.Publish(subjects.PresenceSync(e.id), data)
			if end == len(users) {
				return
			}
		}
	}
	_ = e.nc.Publish(subjects.PresenceHeartbeat(e.id), hb)
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.stopping:
			return
		case <-beat.C:
			_ = e.nc.Publish(subjects.PresenceHeartbeat(e.id), hb)
		case <-full.C:
			sync()
		case <-resync:
			sync()
		case <-e.natsBack:
			_ = e.nc.Publish(subjects.PresenceHeartbeat(e.id), hb)
			sync()
		}
	}
}

// presenceOf reads the presence of users as watchers were last told it.
func (e *Edge) presenceOf(ctx context.Context, users []string) (map[string]event.Presence, error) {
	subs := make([]string, len(users))
	for i, u := range users {
		subs[i] = subjects.KVKey(streams.BucketPresence, u)
	}
	raw, err := streams.ReadLastOf(ctx, e.nc, subjects.KVStream(streams.BucketPresence), subs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]event.Presence, len(raw))
	for _, data := range raw {
		var p event.Presence
		if json.Unmarshal(data, &p) == nil && p.User != "" {
			out[p.User] = p
		}
	}
	return out, nil
}

// visibleTo is the set of users whose presence viewer may see, as its
// conversation summaries tell it (PROTOCOL.md section 7): those who have
// sent a text in a conversation both are members of now. The summaries
// themselves are returned by conversation.
func (e *Edge) visibleTo(ctx context.Context, viewer string) (map[string]bool, map[string]*event.Summary, error) {
	sums, err := e.summaries(ctx, viewer)
	if err != nil {
		return nil, nil, err
	}
	visible, byConv := map[string]bool{}, make(map[string]*event.Summary, len(sums))
	for i := range sums {
		s := &sums[i]
		byConv[s.Conv] = s
		for _, u := range s.Visible(viewer) {
			visible[u] = true
		}
	}
	return visible, byConv, nil
}

// maxDirectChecks bounds the stream reads one watch list may cost.
const maxDirectChecks = 100

// maxDirectScan bounds the events one check reads: the fan-out is behind a
// conversation by a few events at most (more only for summaries stored
// before they recorded writers).
const maxDirectScan = 512

// wroteTo tells whether u has sent a text in its direct conversation with
// viewer after what viewer's summary of it (sum, nil when none is stored)
// folded: the summaries are stored at the fan-out's checkpoints and after
// its reader, so a conversation started a moment ago is read from its
// stream.
func (e *Edge) wroteTo(ctx context.Context, viewer, u string, sum *event.Summary) (bool, error) {
	conv := event.DirectConv(viewer, u)
	stream := streams.ConvStream(e.h.Layout.ConvPartition(conv))
	subject := e.h.Layout.ConvEvents(conv)
	var after uint64
	if sum != nil {
		after = sum.Src
	}
	for read := 0; read < maxDirectScan; {
		msgs, more, err := streams.ReadAfter(ctx, e.nc, stream, subject, after, 64)
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			after = m.Seq
			var h struct {
				From string `json:"from"`
				Kind string `json:"kind"`
			}
			if json.Unmarshal(m.Data, &h) == nil && h.From == u && h.Kind == event.KindText {
				return true, nil
			}
		}
		read += len(msgs)
		if !more || len(msgs) == 0 {
			break
		}
	}
	return false, nil
}

// presenceView answers the presence of users for viewer: the state as told
// to watchers for those visible to it (visibleTo, and a direct
// conversation's writes the summaries do not have yet), offline without
// last_seen for the others, and online for itself.
func (e *Edge) presenceView(ctx context.Context, viewer string, users []string) ([]event.Presence, map[string]bool, error) {
	visible, byConv, err := e.visibleTo(ctx, viewer)
	if err != nil {
		return nil, nil, err
	}
	checked := 0
	for _, u := range users {
		if visible[u] || u == viewer || checked >= maxDirectChecks {
			continue
		}
		checked++
		wrote, err := e.wroteTo(ctx, viewer, u, byConv[event.DirectConv(viewer, u)])
		if err != nil {
			return nil, nil, err
		}
		visible[u] = wrote
	}
	var asked []string
	for _, u := range users {
		if visible[u] && u != viewer {
			asked = append(asked, u)
		}
	}
	states, err := e.presenceOf(ctx, asked)
	if err != nil {
		return nil, nil, err
	}
	out := make([]event.Presence, 0, len(users))
	for _, u := range users {
		p := event.Presence{Type: "presence", User: u, Status: event.StatusOffline}
		switch {
		case u == viewer:
			p.Status = event.StatusOnline
		case visible[u]:
			if st, ok := states[u]; ok {
				p.Status, p.LastSeen = st.Status, st.LastSeen
			}
			if p.Status == event.StatusOnline {
				p.LastSeen = 0
			}
		}
		out = append(out, p)
	}
	return out, visible, nil
}

func (e *Edge) validUsers(users []string) *Error {
	if len(users) > e.cfg.MaxWatch {
		return errf(proto.CodeBadRequest, "at most %d users", e.cfg.MaxWatch)
	}
	for _, u := range users {
		if !validID(u) {
			return errf(proto.CodeBadRequest, "%q is not a valid user id", u)
		}
	}
	return nil
}

// GET /v1/presence?users=a,b,c
func (e *Edge) getPresence(w http.ResponseWriter, r *http.Request, user string) {
	var users []string
	if v := r.URL.Query().Get("users"); v != "" {
		users = strings.Split(v, ",")
	}
	if cerr := e.validUsers(users); cerr != nil {
		writeError(w, cerr)
		return
	}
	if wait, ok := e.historyLimits.allow(user); !ok {
		writeError(w, &Error{Code: proto.CodeRateLimited, Message: "too many reads", RetryAfter: wait})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	view, _, err := e.presenceView(ctx, user, users)
	if err != nil {
		writeError(w, errUnavailable("presence", err))
		return
	}
	type item struct {
		User     string `json:"user"`
		Status   string `json:"status"`
		LastSeen int64  `json:"last_seen,omitempty"`
	}
	out := make([]item, 0, len(view))
	for _, p := range view {
		out = append(out, item{User: p.User, Status: p.Status, LastSeen: p.LastSeen})
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

// watchState is a session's watch list as the client asked it, and which
// of those users it may see now (PROTOCOL.md section 7): the edge follows
// the changes of those only. Visibility changes while the list stands (a
// watched user writes to the watcher for the first time, a member is
// removed from a group): a delivered event that may change it makes the
// edge work the list out again (rewatch).
type watchState struct {
	mu      sync.Mutex
	gen     uint64          // which watch list: a newer one wins over a rewatch of an older
	asked   []string        // the list as asked
	visible map[string]bool // of asked, whom the session may see now
	// run: 0 no rewatch running, 1 one running, 2 and one more after it.
	run atomic.Int32
}

// watch replaces the session's watch list and answers with a snapshot.
func (e *Edge) watch(s *session, users []string) *Error {
	if cerr := e.validUsers(users); cerr != nil {
		return cerr
	}
	s.watch.mu.Lock()
	s.watch.gen++
	gen := s.watch.gen
	s.watch.asked = slices.Clone(users)
	s.watch.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	view, visible, err := e.presenceView(ctx, s.user, users)
	if err != nil {
		return errUnavailable("watch", err)
	}
	if !e.follow(s, gen, users, visible) {
		return nil // a newer list replaced this one meanwhile
	}
	for _, p := range view {
		b, _ := json.Marshal(p)
		s.send(b)
		e.m.presenceDelivered.Inc()
	}
	return nil
}

// follow makes the edge follow, for s, the users of its list gen that are
// visible; false when a newer list replaced gen meanwhile.
func (e *Edge) follow(s *session, gen uint64, users []string, visible map[string]bool) bool {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	if gen != s.watch.gen {
		return false
	}
	var follow []string
	s.watch.visible = map[string]bool{}
	for _, u := range users {
		if visible[u] && u != s.user {
			follow = append(follow, u)
			s.watch.visible[u] = true
		}
	}
	e.hub.setWatch(s, follow)
	return true
}

// unwatch drops s's watch list for good (s is gone): a rewatch running
// now follows nobody for it.
func (e *Edge) unwatch(s *session) {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	s.watch.gen++
	s.watch.asked, s.watch.visible = nil, nil
	e.hub.setWatch(s, nil)
}

// visibilityMayChange is told of each stored event delivered live to s:
// a text from a watched user s may not see yet, or the removal of a user
// s sees (or of s itself) from a group, makes the edge work out its watch
// list again.
func (e *Edge) visibilityMayChange(s *session, hd *event.Head) {
	if hd.Type != event.TypeMsg || (hd.Kind != event.KindText && hd.Kind != event.KindMemberRemoved) {
		return
	}
	s.watch.mu.Lock()
	var again bool
	if hd.Kind == event.KindText {
		again = hd.From != s.user && !s.watch.visible[hd.From] && slices.Contains(s.watch.asked, hd.From)
	} else {
		again = s.watch.visible[hd.User] || (hd.User == s.user && len(s.watch.visible) > 0)
	}
	s.watch.mu.Unlock()
	if again {
		e.rewatchSoon(s)
	}
}

// rewatchSoon runs rewatch for s in the background: one at a time per
// session, and once more after the running one when asked meanwhile.
func (e *Edge) rewatchSoon(s *session) {
	for {
		st := s.watch.run.Load()
		if st == 2 {
			return
		}
		if s.watch.run.CompareAndSwap(st, st+1) {
			if st == 0 {
				go e.rewatchLoop(s)
			}
			return
		}
	}
}

func (e *Edge) rewatchLoop(s *session) {
	for {
		e.rewatch(s)
		if s.watch.run.CompareAndSwap(1, 0) {
			return
		}
		s.watch.run.Store(1)
	}
}

// rewatch works out again whom of its watch list s may see: a user that
// became visible is told with its state and followed, one that no longer
// is is told offline without last_seen and no longer followed.
func (e *Edge) rewatch(s *session) {
	if s.isClosed() {
		return
	}
	s.watch.mu.Lock()
	gen, users, before := s.watch.gen, slices.Clone(s.watch.asked), maps.Clone(s.watch.visible)
	s.watch.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	view, visible, err := e.presenceView(ctx, s.user, users)
	if err != nil {
		e.log.Warn("presence visibility", zap.String("user", s.user), zap.Error(err))
		return
	}
	if !e.follow(s, gen, users, visible) {
		return
	}
	for _, p := range view {
		if p.User != s.user && before[p.User] != visible[p.User] {
			b, _ := json.Marshal(p)
			s.send(b)
			e.m.presenceDelivered.Inc()
		}
	}
}

// typingLimiter allows one typing event per user and conversation per interval.
type typingLimiter struct {
	every  time.Duration
	shards [16]struct {
		mu   sync.Mutex
		last map[string]time.Time
	}
	n atomic.Int64
}

func newTypingLimiter(every time.Duration) *typingLimiter {
	t := &typingLimiter{every: every}
	for i := range t.shards {
		t.shards[i].last = map[string]time.Time{}
	}
	return t
}

// due tells whether a typing event of user in conv would go out now.
func (t *typingLimiter) due(user, conv string, now time.Time) bool {
	key := user + "\x00" + conv
	sh := &t.shards[subjects.Partition(key, len(t.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return now.Sub(sh.last[key]) >= t.every
}

func (t *typingLimiter) allow(user, conv string, now time.Time) bool {
	key := user + "\x00" + conv
	sh := &t.shards[subjects.Partition(key, len(t.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.last[key]) < t.every {
		return false
	}
	sh.last[key] = now
	if len(sh.last) > 10_000 {
		for k, at := range sh.last {
			if now.Sub(at) >= t.every {
				delete(sh.last, k)
			}
		}
	}
	return true
}

// Typing tells the other members of conv who are online now that user is
// typing: nothing is stored, and at most one per interval goes out.
func (e *Edge) Typing(ctx context.Context, user, conv string) *Error {
	if !validID(conv) {
		return errf(proto.CodeBadRequest, "conv is not a valid conversation id")
	}
	// Coalesced events cost nothing; those that would go out are
	// rate-limited per user, before any lookup: a flood across many
	// conversations is refused.
	if !e.typing.due(user, conv, time.Now()) {
		return nil
	}
	if cerr := e.writes.typing.check(user, "typing events"); cerr != nil {
		return cerr
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, _, err := e.convs.Meta(ctx, conv)
	if err != nil {
		return errUnavailable("typing", err)
	}
	if m == nil || !m.Has(user) {
		return errForbidden
	}
	if !e.typing.allow(user, conv, time.Now()) {
		return nil // coalesced: one went out within the interval
	}
	doc, _ := json.Marshal(map[string]string{"type": "typing", "conv": conv, "user": user})
	for _, u := range m.Members {
		if u != user {
			// Only edges holding a connection of u hear its live subject.
			_ = e.nc.Publish(e.h.Layout.Live(u), event.EncodeLive(event.Live{Doc: doc}))
		}
	}
	return nil
}

func (e *Edge) postTyping(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		Conv string `json:"conv"`
	}
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	if cerr := e.Typing(r.Context(), user, req.Conv); cerr != nil {
		writeError(w, cerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}
