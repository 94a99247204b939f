package edge

import (
	"sync"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/subjects"
)

// hub knows the sessions of each user connected to this edge and holds the
// one live subscription per such user: an edge receives announcements only
// for users it holds.
type hub struct {
	e *Edge
	// watchers: per watched user, the sessions watching it and the one
	// subscription to its presence changes.
	watchMu  sync.Mutex
	watchers map[string]*watchEntry
	shards   [64]struct {
		mu    sync.Mutex
		users map[string]*userEntry
	}
	dispatch []chan *nats.Msg
}

type watchEntry struct {
	sessions map[*session]bool
	sub      *nats.Subscription
}

type userEntry struct {
	sessions []*session
	waiters  []chan struct{} // long polls of the user, woken by any announcement
	sub      *nats.Subscription
}

const (
	dispatchShards = 16
	dispatchDepth  = 8192
)

func newHub(e *Edge) *hub {
	h := &hub{e: e, watchers: map[string]*watchEntry{}}
	for i := range h.shards {
		h.shards[i].users = make(map[string]*userEntry)
	}
	for i := 0; i < dispatchShards; i++ {
		h.dispatch = append(h.dispatch, make(chan *nats.Msg, dispatchDepth))
	}
	return h
}

func (h *hub) shard(user string) *struct {
	mu    sync.Mutex
	users map[string]*userEntry
} {
	return &h.shards[subjects.Partition(user, len(h.shards))]
}

// run dispatches live announcements until the edge stops. The channels are
// never closed: the NATS connection may still be delivering into them.
func (h *hub) run() {
	var wg sync.WaitGroup
	for _, ch := range h.dispatch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case m := <-ch:
					h.handle(m)
				case <-h.e.stopping:
					return
				}
			}
		}()
	}
	wg.Wait()
}

// add registers s and subscribes to its user's announcements if it is the
// user's first session here.
func (h *hub) add(s *session) error {
	sh := h.shard(s.user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ue, err := h.entryLocked(sh, s.user)
	if err != nil {
		return err
	}
	ue.sessions = append(ue.sessions, s)
	return nil
}

// entryLocked returns the user's entry, subscribing (and reporting the user
// online here) when it is new; the shard's lock is held.
func (h *hub) entryLocked(sh *struct {
	mu    sync.Mutex
	users map[string]*userEntry
}, user string) (*userEntry, error) {
	ue := sh.users[user]
	if ue == nil {
		ch := h.dispatch[subjects.Partition(user, len(h.dispatch))]
		sub, err := h.e.nc.ChanSubscribe(h.e.h.Layout.Live(user), ch)
		if err != nil {
			return nil, err
		}
		ue = &userEntry{sub: sub}
		sh.users[user] = ue
		h.e.reportPresence(user, true)
	}
	return ue, nil
}

// releaseLocked drops the user's entry once nothing of it is left here.
func (h *hub) releaseLocked(sh *struct {
	mu    sync.Mutex
	users map[string]*userEntry
}, user string, ue *userEntry) {
	if len(ue.sessions) == 0 && len(ue.waiters) == 0 {
		_ = ue.sub.Unsubscribe()
		delete(sh.users, user)
		h.e.reportPresence(user, false)
	}
}

// addWaiter registers a long poll of user: a user polling counts as
// connected here, like a session.
func (h *hub) addWaiter(user string, wake chan struct{}) {
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ue, err := h.entryLocked(sh, user); err == nil {
		ue.waiters = append(ue.waiters, wake)
	}
}

func (h *hub) removeWaiter(user string, wake chan struct{}) {
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ue := sh.users[user]
	if ue == nil {
		return
	}
	for i, w := range ue.waiters {
		if w == wake {
			ue.waiters = append(ue.waiters[:i], ue.waiters[i+1:]...)
			break
		}
	}
	h.releaseLocked(sh, user, ue)
}

// wakeWaiters tells the user's long polls that its queue moved.
func (h *hub) wakeWaiters(user string) {
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ue := sh.users[user]; ue != nil {
		for _, w := range ue.waiters {
			select {
			case w <- struct{}{}:
			default:
			}
		}
	}
}

// remove forgets s, and the subscription with the user's last session.
func (h *hub) remove(s *session) {
	sh := h.shard(s.user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ue := sh.users[s.user]
	if ue == nil {
		return
	}
	for i, x := range ue.sessions {
		if x == s {
			ue.sessions = append(ue.sessions[:i], ue.sessions[i+1:]...)
			break
		}
	}
	h.releaseLocked(sh, s.user, ue)
	h.e.unwatch(s)
}

// users lists every user with a session here.
func (h *hub) users() []string {
	var out []string
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for u := range sh.users {
			out = append(out, u)
		}
		sh.mu.Unlock()
	}
	return out
}

// setWatch replaces the users s follows; the edge subscribes to a user's
// presence changes while at least one of its sessions follows it.
func (h *hub) setWatch(s *session, users []string) {
	h.watchMu.Lock()
	defer h.watchMu.Unlock()
	for _, u := range s.watching {
		if we := h.watchers[u]; we != nil {
			delete(we.sessions, s)
			if len(we.sessions) == 0 {
				_ = we.sub.Unsubscribe()
				delete(h.watchers, u)
			}
		}
	}
	s.watching = nil
	for _, u := range users {
		we := h.watchers[u]
		if we == nil {
			ch := h.dispatch[subjects.Partition(u, len(h.dispatch))]
			sub, err := h.e.nc.ChanSubscribe(h.e.h.Layout.PresenceChanges(u), ch)
			if err != nil {
				continue
			}
			we = &watchEntry{sessions: map[*session]bool{}, sub: sub}
			h.watchers[u] = we
		}
		we.sessions[s] = true
		s.watching = append(s.watching, u)
	}
}

func (h *hub) watchersOf(user string) []*session {
	h.watchMu.Lock()
	defer h.watchMu.Unlock()
	we := h.watchers[user]
	if we == nil {
		return nil
	}
	out := make([]*session, 0, len(we.sessions))
	for s := range we.sessions {
		out = append(out, s)
	}
	return out
}

func (h *hub) sessionsOf(user string) []*session {
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ue := sh.users[user]; ue != nil {
		return append([]*session(nil), ue.sessions...)
	}
	return nil
}

func (h *hub) has(user string) bool {
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.users[user] != nil
}

// all returns every session, for draining and keep-alives.
func (h *hub) all() []*session {
	var out []*session
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, ue := range sh.users {
			out = append(out, ue.sessions...)
		}
		sh.mu.Unlock()
	}
	return out
}

// handle routes one message of a user's subscriptions: a presence change
// of a watched user, an online probe from another edge (it has a reply
// subject), or an announcement on the user's live subject.
func (h *hub) handle(m *nats.Msg) {
	sp, err := subjects.Parse(m.Subject)
	if err != nil {
		return
	}
	switch {
	case sp.Prefix == subjects.PresenceChangesPrefix:
		h.presenceChanged(sp.ID, m.Data)
	case m.Reply != "":
		h.answerProbe(sp.ID, m)
	default:
		h.announced(sp.ID, m)
	}
}

// presenceChanged hands a presence change of user to its watchers here.
func (h *hub) presenceChanged(user string, frame []byte) {
	for _, s := range h.watchersOf(user) {
		s.send(frame)
		h.e.m.presenceDelivered.Inc()
	}
}

// answerProbe answers another edge's question "is user connected here?"
// (edge/online.go) only when it is: silence means no.
func (h *hub) answerProbe(user string, m *nats.Msg) {
	if h.has(user) {
		_ = m.Respond([]byte("1"))
	}
}

// announced handles what the fan-out (or an edge) published on user's live
// subject: a stored queue entry, a live-only event, or a nudge to catch up.
func (h *hub) announced(user string, m *nats.Msg) {
	l, err := event.DecodeLive(m.Data)
	if err != nil {
		h.e.log.Warn("bad live announcement", zap.String("subject", m.Subject))
		return
	}
	switch {
	case l.Seq == 0 && len(l.Doc) > 0:
		h.liveOnly(user, l.Doc)
	case l.Seq == 0:
		// A nudge: the queue has entries that may not have been announced.
		h.wakeWaiters(user)
		h.refill(user)
	default:
		h.stored(user, l)
	}
}

// liveOnly gives a live event (typing, a group's coalesced receipt) to
// every session of user now; it is never stored.
func (h *hub) liveOnly(user string, doc []byte) {
	for _, s := range h.sessionsOf(user) {
		s.send(doc)
		h.e.m.typingDelivered.Inc()
	}
}

// stored offers a stored queue entry to user's sessions, after learning
// from it the conversation's last event (the next send's expected
// sequence and the recent-history cache).
func (h *hub) stored(user string, l event.Live) {
	h.wakeWaiters(user)
	hd, err := event.DecodeHead(l.Doc)
	if err == nil && hd.Type == event.TypeMsg {
		// The cache serves docs and a later page anchors on its own rows,
		// so a stream sequence of 0 (not a text message) is fine.
		h.e.noteEvent(hd.Conv, hd.Seq, l.Src, l.Doc)
		if l.Src != 0 {
			h.e.convs.Hint(hd.Conv, hd.Seq, l.Src, hd.TS)
		}
	}
	for _, s := range h.sessionsOf(user) {
		s.offer(l.Seq, l.Prev, l.Doc)
		h.e.visibilityMayChange(s, &hd)
	}
}

// refill makes every session of user catch up from the queue: after NATS
// dropped announcements to this edge.
func (h *hub) refill(user string) {
	for _, s := range h.sessionsOf(user) {
		s.catchUp(false)
	}
}

// refillAll does it for every session (after a reconnect to NATS).
func (h *hub) refillAll() {
	for _, s := range h.all() {
		s.catchUp(false)
	}
}

// userOfSub maps a dropped-messages report back to its user.
func userOfSub(sub *nats.Subscription) (string, bool) {
	if sub == nil {
		return "", false
	}
	sp, err := subjects.Parse(sub.Subject)
	if err != nil || sp.Prefix != subjects.LivePrefix {
		return "", false
	}
	return sp.ID, true
}
