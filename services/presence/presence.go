package presence

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/streams"
	"messenger/subjects"
)

// Config of the presence service. The zero value has PROTOCOL.md's delays.
type Config struct {
	// OnlineDelay: online is told when the user is still connected this long
	// after connecting. Default 5s.
	OnlineDelay time.Duration
	// OfflineDelay: offline is told when no connection came back for this
	// long. Default 10s.
	OfflineDelay time.Duration
	// EdgeTimeout: an edge silent this long is dead. Default 15s (with the
	// offline delay: a dead edge's users are told offline within 25 s).
	EdgeTimeout time.Duration
	// ProbeTimeout bounds the ping the service sends its own NATS server
	// every second: not answered, the service is deaf (its server paused
	// or cut off) and holds no edge's silence against it. Default 1s.
	ProbeTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.OnlineDelay <= 0 {
		c.OnlineDelay = 5 * time.Second
	}
	if c.OfflineDelay <= 0 {
		c.OfflineDelay = 10 * time.Second
	}
	if c.EdgeTimeout <= 0 {
		c.EdgeTimeout = 15 * time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = time.Second
	}
	return c
}

// user is what the service keeps per user it has heard of and not yet told
// offline: a few words per connected user (most are on one edge).
type user struct {
	edges    []*edgeState // edges holding a connection of the user
	told     string       // status watchers were last told ("" = offline)
	lastSeen int64        // ms: when the user was last connected
	timer    *time.Timer  // the pending check; nil once it ran
	gen      uint32       // which check is pending: an older one does nothing
}

// holds tells whether e holds a connection of u.
func (u *user) holds(e *edgeState) bool {
	for _, x := range u.edges {
		if x == e {
			return true
		}
	}
	return false
}

type edgeState struct {
	seen  time.Time
	users map[string]bool
	// the full report being received, and its round
	round   uint64
	pending map[string]bool
}

// Service is the presence service.
type Service struct {
	cfg Config
	nc  *nats.Conn
	h   *streams.Handles
	log *zap.Logger
	m   *metrics

	mu    sync.Mutex
	users map[string]*user
	edges map[string]*edgeState

	// Run's goroutine only: whether the last probe of the own connection
	// failed, and its reconnect count then.
	deaf       bool
	reconnects uint64

	// Changes to tell, per shard of users (one user's in order): told by
	// a few goroutines, not one per change, as many connect at once.
	tells [tellShards]tellQueue
}

const tellShards = 8

type tellQueue struct {
	mu   sync.Mutex
	q    []event.Presence
	wake chan struct{}
}

// New makes the presence service.
func New(cfg Config, nc *nats.Conn, h *streams.Handles, log *zap.Logger, reg prometheus.Registerer) (*Service, error) {
	if nc == nil || h == nil || log == nil {
		return nil, errors.New("presence: missing dependency")
	}
	s := &Service{cfg: cfg.withDefaults(), nc: nc, h: h, log: log.With(zap.String("component", "presence")), m: newMetrics(reg),
		users: map[string]*user{}, edges: map[string]*edgeState{}}
	for i := range s.tells {
		s.tells[i].wake = make(chan struct{}, 1)
	}
	return s, nil
}

// Run serves until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var subs []*nats.Subscription
	for subject, handler := range map[string]nats.MsgHandler{
		subjects.PresenceEventsAll:     s.onEvent,
		subjects.PresenceHeartbeatsAll: s.onHeartbeat,
		subjects.PresenceSyncsAll:      s.onSync,
	} {
		sub, err := s.nc.Subscribe(subject, handler)
		if err != nil {
			return err
		}
		subs = append(subs, sub)
	}
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	for i := range s.tells {
		go s.teller(ctx, &s.tells[i])
	}
	// What edges hold right now: every edge answers with a full report.
	_ = s.nc.Publish(subjects.PresenceResync, nil)
	s.reconnects = s.nc.Stats().Reconnects
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for _, u := range s.users {
				if u.timer != nil {
					u.timer.Stop()
				}
			}
			s.mu.Unlock()
			return nil
		case <-t.C:
			if s.hearing() {
				s.expireEdges(time.Now())
			}
		}
	}
}

func (s *Service) edge(id string) *edgeState {
	e := s.edges[id]
	if e == nil {
		e = &edgeState{users: map[string]bool{}}
		s.edges[id] = e
	}
	e.seen = time.Now()
	return e
}

func (s *Service) onEvent(m *nats.Msg) {
	var r event.PresenceReport
	if json.Unmarshal(m.Data, &r) != nil || r.Edge == "" || r.User == "" {
		return
	}
	s.m.seen.WithLabelValues().Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.edge(r.Edge)
	if r.On {
		e.users[r.User] = true
	} else {
		delete(e.users, r.User)
	}
	s.setEdge(r.User, e, r.On)
}

func (s *Service) onHeartbeat(m *nats.Msg) {
	var r event.PresenceReport
	if json.Unmarshal(m.Data, &r) != nil || r.Edge == "" {
		return
	}
	s.mu.Lock()
	s.edge(r.Edge)
	s.mu.Unlock()
}

// onSync takes a chunk of an edge's full report; at its last chunk, users
// the edge no longer holds are taken off it (a lost report is repaired).
func (s *Service) onSync(m *nats.Msg) {
	var r event.PresenceReport
	if json.Unmarshal(m.Data, &r) != nil || r.Edge == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.edge(r.Edge)
	if e.pending == nil || e.round != r.Round {
		e.round, e.pending = r.Round, map[string]bool{}
	}
	for _, u := range r.Users {
		e.pending[u] = true
		if !e.users[u] {
			e.users[u] = true
			s.setEdge(u, e, true)
		}
	}
	if !r.Last {
		return
	}
	for u := range e.users {
		if !e.pending[u] {
			delete(e.users, u)
			s.setEdge(u, e, false)
		}
	}
	e.pending = nil
}

// hearing tells whether the service hears the edges: its connection is up
// and its server answers a ping. When it did not (the server paused: the
// client notices only after its ping interval x max pings out, then moves
// to another server) or the connection moved since the last tick, the
// edges' silence meanwhile was the service's own: every edge's clock
// starts again and every edge is asked for its full report (reports sent
// into a silent server are lost).
func (s *Service) hearing() bool {
	if s.nc.Status() != nats.CONNECTED || s.nc.FlushTimeout(s.cfg.ProbeTimeout) != nil {
		if !s.deaf {
			s.deaf = true
			s.m.deaf.Inc()
			s.log.Warn("presence cannot hear the edges: edge timeouts paused", zap.String("nats_status", s.nc.Status().String()))
		}
		return false
	}
	reconnects := s.nc.Stats().Reconnects
	if !s.deaf && reconnects == s.reconnects {
		return true
	}
	s.deaf, s.reconnects = false, reconnects
	now := time.Now()
	s.mu.Lock()
	for _, e := range s.edges {
		e.seen = now
	}
	s.mu.Unlock()
	_ = s.nc.Publish(subjects.PresenceResync, nil)
	s.log.Info("presence hears the edges again: their clocks restarted, full reports asked")
	return true
}

// expireEdges takes dead edges' users off them.
func (s *Service) expireEdges(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.edges {
		if now.Sub(e.seen) < s.cfg.EdgeTimeout {
			continue
		}
		s.log.Warn("edge silent: its users are gone", zap.String("edge", id), zap.Int("users", len(e.users)))
		for u := range e.users {
			s.setEdge(u, e, false)
		}
		delete(s.edges, id)
	}
}

// setEdge records that edge e holds (or no longer holds) user, and
// schedules the check that tells a change once its delay has passed. s.mu
// is held.
func (s *Service) setEdge(name string, e *edgeState, on bool) {
	u := s.users[name]
	if u == nil {
		if !on {
			return
		}
		u = &user{}
		s.users[name] = u
	}
	wasOnline := len(u.edges) > 0
	if on {
		if !u.holds(e) {
			u.edges = append(u.edges, e)
		}
	} else {
		for i, x := range u.edges {
			if x == e {
				u.edges = append(u.edges[:i], u.edges[i+1:]...)
				break
			}
		}
		if len(u.edges) == 0 {
			u.edges = nil
		}
	}
	online := len(u.edges) > 0
	if !online {
		u.lastSeen = time.Now().UnixMilli()
	}
	if online == wasOnline {
		return
	}
	if u.timer != nil {
		u.timer.Stop()
	}
	delay := s.cfg.OnlineDelay
	if !online {
		delay = s.cfg.OfflineDelay
	}
	u.gen++
	gen := u.gen
	u.timer = time.AfterFunc(delay, func() { s.settle(name, gen) })
}

// settle tells the user's state if it held for its delay and differs from
// what was told. gen is the check's: a check stopped too late (it had
// already fired) does nothing.
func (s *Service) settle(name string, gen uint32) {
	s.mu.Lock()
	u := s.users[name]
	if u == nil || u.gen != gen {
		s.mu.Unlock()
		return
	}
	u.timer = nil
	status := event.StatusOffline
	if len(u.edges) > 0 {
		status = event.StatusOnline
	}
	told := u.told
	if told == "" {
		told = event.StatusOffline
	}
	if status == told {
		if status == event.StatusOffline {
			delete(s.users, name) // nothing to remember but last seen, which is stored
		}
		s.mu.Unlock()
		return
	}
	u.told = status
	p := event.Presence{V: event.Version, Type: "presence", User: name, Status: status}
	if status == event.StatusOffline {
		p.LastSeen = u.lastSeen
		delete(s.users, name)
	}
	s.mu.Unlock()
	tq := &s.tells[subjects.Partition(name, tellShards)]
	tq.mu.Lock()
	tq.q = append(tq.q, p)
	tq.mu.Unlock()
	select {
	case tq.wake <- struct{}{}:
	default:
	}
}

// teller tells the changes of one shard, in order, until ctx ends.
func (s *Service) teller(ctx context.Context, tq *tellQueue) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tq.wake:
		}
		tq.mu.Lock()
		q := tq.q
		tq.q = nil
		tq.mu.Unlock()
		for _, p := range q {
			s.tell(p)
		}
	}
}

func (s *Service) tell(p event.Presence) {
	data, _ := json.Marshal(p)
	if err := s.nc.Publish(s.h.Layout.PresenceChanges(p.User), data); err != nil {
		s.log.Warn("tell presence", zap.Error(err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.h.Presence.Put(ctx, p.User, data); err != nil {
		s.log.Warn("store presence", zap.String("user", p.User), zap.Error(err))
	}
	s.m.told.WithLabelValues(p.Status).Inc()
}
