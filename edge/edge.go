package edge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"messenger/edge/auth"
	"messenger/infra/jspub"
	"messenger/services/conversation"
	"messenger/services/event"
	"messenger/services/history"
	"messenger/services/pushreg"
	"messenger/streams"
	"messenger/subjects"
)

// Edge serves clients over WebSocket and HTTP.
type Edge struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	pub      *jspub.Publisher // sends and receipts: retried through node faults
	natsBack chan struct{}    // NATSReconnected: presence reports again at once
	h        *streams.Handles
	verifier *auth.Verifier
	log      *zap.Logger
	m        *metrics

	convs *conversation.Cache
	// groupsOf bounds the groups per user (groups.go).
	groupsOf *conversation.Memberships
	// pushreg: push registrations and mutes (push.go)
	pushreg *pushreg.Store
	// onlineSeen: users other edges recently said they hold (online.go).
	onlineSeen *onlineSeen
	hub        *hub
	limits     *limiters // sends
	writes     writeLimits
	conns      *connLimit
	// history reads
	historyLimits *limiters
	recent        *recentCache
	pager         *history.Pager
	// presence
	id          string
	typing      *typingLimiter
	devSigner   *auth.Signer // nil unless --dev
	inflight    inflight
	upgrader    *gws.Upgrader
	replaySlots chan struct{}
	stopping    chan struct{}
	stopOnce    sync.Once
	draining    atomic.Bool
	heads       headCache
	frames      framePool
}

// Deps are what an edge works with.
type Deps struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Handles  *streams.Handles
	Verifier *auth.Verifier
	Log      *zap.Logger
	Metrics  prometheus.Registerer // may be nil
	// Projection is the history projection (ClickHouse); nil serves history
	// from the conversation streams alone.
	Projection history.Store
	// DevSigner, when set (--dev), turns on the web client's development
	// sign-in: a token for any user id.
	DevSigner *auth.Signer
}

// New makes an edge. Its NATS connection's error handler should call
// Edge.NATSErrorHandler and its reconnect handler Edge.NATSReconnected, so
// that announcements NATS dropped are refilled from the queues.
func New(cfg Config, d Deps) (*Edge, error) {
	if d.NC == nil || d.JS == nil || d.Handles == nil || d.Verifier == nil || d.Log == nil {
		return nil, errors.New("edge: missing dependency")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	nc, h := d.NC, d.Handles
	e := &Edge{
		cfg: cfg, nc: nc, js: d.JS, h: h, verifier: d.Verifier,
		log:           d.Log.With(zap.String("component", "edge")),
		m:             newMetrics(d.Metrics),
		limits:        newLimiters(cfg.SendRate, cfg.SendBurst),
		writes:        newWriteLimits(cfg.Rates),
		conns:         newConnLimit(cfg.MaxConnsPerUser),
		historyLimits: newLimiters(cfg.HistoryRate, cfg.HistoryBurst),
		recent:        newRecentCache(cfg.RecentConvs, cfg.RecentMessages),
		id:            newEdgeID(),
		typing:        newTypingLimiter(cfg.TypingEvery),
		devSigner:     d.DevSigner,
		replaySlots:   make(chan struct{}, cfg.MaxReplays),
		stopping:      make(chan struct{}),
		onlineSeen:    newOnlineSeen(),
		natsBack:      make(chan struct{}, 1),
	}
	convs, err := conversation.NewCache(cfg.ConvCache, conversation.Deps{
		JS: d.JS, Handles: h, Store: conversation.NewStore(nc, h, e.log),
		OnConflict: e.m.conflicts.Inc,
		OnStored:   e.noteEvent,
		Publish:    e.publishConfig(),
	})
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e.convs = convs
	e.pub = jspub.New(d.JS, e.publishConfig())
	e.pushreg = pushreg.New(d.JS, nc, h, e.pub, e.log, pushreg.Config{MaxDevices: cfg.MaxPushRegs})
	e.groupsOf = conversation.NewMemberships(h.UserGroups, cfg.MaxGroupsPerUser, e.isMember)
	e.pager = &history.Pager{
		Projection: d.Projection,
		Stream:     &history.StreamStore{NC: nc, H: h},
		OnProjectionError: func(err error) {
			e.m.projectionErrors.Inc()
			e.log.Warn("history projection unavailable: reading the stream", zap.Error(err))
		},
	}
	e.hub = newHub(e)
	e.frames.start(frameWorkers, e.stopping)
	e.heads.parts = make([]headEntry, len(h.Queue))
	e.upgrader = gws.NewUpgrader(&wsHandler{e: e}, &gws.ServerOption{
		ReadMaxPayloadSize: cfg.MaxFrame,
		ReadBufferSize:     cfg.ReadBuffer,
		CheckUtf8Enabled:   true,
		HandshakeTimeout:   10 * time.Second,
		NewSession:         func() gws.SessionStorage { return &sessionSlot{} },
		Authorize:          func(*http.Request, gws.SessionStorage) bool { return true },
	})
	return e, nil
}

// Run dispatches live announcements and keeps connections alive until ctx
// ends. Call Drain before cancelling ctx for a graceful stop.
func (e *Edge) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() { defer close(done); e.hub.run() }()
	go e.presenceLoop(ctx)
	if sub, err := e.nc.Subscribe(subjects.PresenceEventsAll, e.onPresenceReport); err == nil {
		defer func() { _ = sub.Unsubscribe() }()
	} else {
		e.log.Warn("subscribe to connection reports: every online is asked", zap.Error(err))
	}
	t := time.NewTicker(e.cfg.PingInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.stop()
			<-done
			return nil
		case now := <-t.C:
			e.keepAlive(now)
			e.limits.sweep(now)
			e.historyLimits.sweep(now)
			e.writes.sweep(now)
		}
	}
}

func (e *Edge) stop() { e.stopOnce.Do(func() { close(e.stopping) }) }

// keepAlive pings connections, closes idle ones and those whose token expired.
func (e *Edge) keepAlive(now time.Time) {
	for i, s := range e.hub.all() {
		if i%64 == 63 {
			// Each ping is written by a goroutine of gws's: let them run
			// and end, rather than have one per connection at once (the
			// runtime keeps every goroutine's descriptor for good).
			runtime.Gosched()
		}
		ws, _ := s.out.(*wsSink)
		if ws != nil {
			ws.armDeadline()
		}
		switch {
		case !s.exp.IsZero() && now.After(s.exp):
			s.close(closeTokenExpiry, "token expired")
		case now.Sub(time.Unix(0, s.lastRead.Load())) > e.cfg.IdleTimeout:
			s.close(closeGoingAway, "idle")
		case now.Sub(time.Unix(0, s.lastRead.Load())) > e.cfg.PingInterval:
			if ws != nil {
				ws.ping()
			}
		}
	}
}

// Drain stops taking new work: /readyz answers 503, sends answer
// unavailable, WebSockets close with 1001; it returns once the sends in
// flight are answered or timeout passes.
func (e *Edge) Drain(timeout time.Duration) {
	e.draining.Store(true)
	ok := e.inflight.close(timeout)
	for _, s := range e.hub.all() {
		s.close(closeGoingAway, "server is draining: reconnect")
	}
	e.stop()
	if !ok {
		e.log.Warn("drain: sends still in flight at the deadline")
	}
}

// Abort cuts every connection at once, with no close frame: what clients
// see when an edge process dies. Used after a drain's deadline, and by tests.
func (e *Edge) Abort() {
	e.draining.Store(true)
	for _, s := range e.hub.all() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		if ws, ok := s.out.(*wsSink); ok {
			_ = ws.c.NetConn().Close()
		}
	}
	e.stop()
}

// Ready tells whether this edge accepts and stores messages now.
func (e *Edge) Ready() bool {
	return !e.draining.Load() && e.nc.Status() == nats.CONNECTED
}

// NATSErrorHandler refills users whose announcements NATS dropped.
func (e *Edge) NATSErrorHandler(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) {
		if user, ok := userOfSub(sub); ok {
			e.m.gaps.Inc()
			e.hub.refill(user)
			return
		}
	}
	e.log.Warn("nats", zap.Error(err))
}

// NATSReconnected refills every session: announcements sent while the
// connection was down are lost.
// It also has presence beat and report the edge's users at once.
func (e *Edge) NATSReconnected(*nats.Conn) {
	e.hub.refillAll()
	select {
	case e.natsBack <- struct{}{}:
	default:
	}
}

// online tells whether user has a connection on any edge: an edge holding
// one answers the probe on the user's live subject.
// headCache keeps, per queue stream, its first and last sequence, read at
// most every headTTL.
type headCache struct {
	mu    sync.Mutex
	parts []headEntry
}

type headEntry struct {
	first, last uint64
	at          time.Time
}

const headTTL = 2 * time.Second

func (e *Edge) queueBounds(ctx context.Context, p int, fresh bool) (first, last uint64, err error) {
	e.heads.mu.Lock()
	he := e.heads.parts[p]
	e.heads.mu.Unlock()
	if !fresh && time.Since(he.at) < headTTL {
		return he.first, he.last, nil
	}
	var info *jetstream.StreamInfo
	_, err = e.pub.Do(ctx, func(ctx context.Context) (err error) {
		info, err = e.h.Queue[p].Info(ctx)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("edge: queue stream info: %w", err)
	}
	he = headEntry{first: info.State.FirstSeq, last: info.State.LastSeq, at: time.Now()}
	e.heads.mu.Lock()
	e.heads.parts[p] = he
	e.heads.mu.Unlock()
	return he.first, he.last, nil
}

// queueHead is the cursor of the user's newest stored event, or for a user
// with none, a position before anything it will get.
// With fresh, the stream's bounds are read now rather than from the cache.
func (e *Edge) queueHead(ctx context.Context, user string, fresh bool) (head, first uint64, err error) {
	p := e.h.Layout.UserPartition(user)
	first, last, err := e.queueBounds(ctx, p, fresh)
	if err != nil {
		return 0, 0, err
	}
	// Short tries, not one wait for the whole budget: after a cluster
	// restart the first requests may go unanswered while leaders are
	// elected (hello waited 5 s, then failed).
	var m *jetstream.RawStreamMsg
	_, err = e.pub.Do(ctx, func(ctx context.Context) (err error) {
		m, err = e.h.Queue[p].GetLastMsgForSubject(ctx, e.h.Layout.Queue(user))
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return last, first, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("edge: queue head of %s: %w", user, err)
	}
	return m.Sequence, first, nil
}

// checkCursor parses a client cursor and tells whether it has expired. A
// cursor that looks ahead of a cached head is checked again against fresh
// bounds: another edge may have seen the stream further along.
func (e *Edge) checkCursor(ctx context.Context, user, cursor string, head, first uint64) (uint64, bool) {
	c, err := event.ParseCursor(cursor)
	if err != nil {
		return 0, true
	}
	if cursorValid(c, head, first) {
		return c, false
	}
	if h, f, err := e.queueHead(ctx, user, true); err == nil && cursorValid(c, h, f) {
		return c, false
	}
	return 0, true
}

// cursorValid tells whether a client cursor can be resumed from.
func cursorValid(c, head, first uint64) bool {
	return c <= head && (first == 0 || c+1 >= first)
}
