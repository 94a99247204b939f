package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"messenger/edge"
	"messenger/edge/auth"
	"messenger/infra/natsauth"
	"messenger/infra/natsserver"
	"messenger/services/fanout"
	"messenger/services/notifier"
	"messenger/services/presence"
	"messenger/services/projector"
	"messenger/streams"
)

// app is one process: the roles it runs and what they share.
type app struct {
	cfg      *config
	log      *zap.Logger
	ns       *server.Server
	conns    []*nats.Conn // one per role identity; /readyz wants all connected
	edge     *edge.Edge
	fanout   *fanout.Fanout
	presence *presence.Service
	notifier *notifier.Notifier
	mux      *http.ServeMux
	ln       net.Listener
	cmd      string
	ch       *chLink // nil without --clickhouse
	js       jetstream.JetStream
	h        *streams.Handles
	reg      prometheus.Registerer
	// metricsLn serves metricsMux (/metrics) apart from the API when
	// --metrics-listen is set; nil otherwise.
	metricsLn  net.Listener
	metricsMux *http.ServeMux
}

// runProjector projects into ClickHouse once it is connected.
func (a *app) runProjector(ctx context.Context) error {
	conn, err := a.ch.get(ctx)
	if err != nil {
		return nil
	}
	p, err := projector.New(projector.Config{BatchSize: a.cfg.ProjectorBatch, BatchWait: a.cfg.ProjectorWait,
		Ownership: a.cfg.PartitionOwnership, WorkerID: a.cfg.WorkerID, HistoryCheckEvery: a.cfg.HistoryCheckEvery}, a.js, a.h, conn, a.log, a.reg)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	return zc.Build()
}

// build wires the roles of cmd; cleanup releases what build made.
func build(ctx context.Context, cmd string, cfg *config) (*app, func(), error) {
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	a := &app{cfg: cfg, cmd: cmd, log: log.With(zap.String("role", cmd)), mux: http.NewServeMux()}
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		_ = log.Sync()
	}
	fail := func(err error) (*app, func(), error) { cleanup(); return nil, nil, err }

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var verifier *auth.Verifier
	var signer *auth.Signer
	if cmd == "all" || cmd == "edge" {
		if verifier, signer, err = keys(cfg, true, os.Stdout, a.log); err != nil {
			return fail(err)
		}
	}

	// NATS: embedded for all and nats, a client connection otherwise.
	sc := cfg.streams()
	if err := sc.Validate(); err != nil {
		return fail(err)
	}
	var e *edge.Edge
	url := cfg.NATS
	var ns *server.Server
	if cmd == "all" || cmd == "nats" {
		if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
			return fail(fmt.Errorf("data dir: %w", err))
		}
		users, err := natsUsers(cfg, a.log)
		if err != nil {
			return fail(err)
		}
		listen := cfg.NATSListen
		if !cfg.explicit["nats-listen"] && !portFree(listen) {
			// The default port is taken (another NATS on this box): take any
			// free one; the log says which.
			host, _, _ := net.SplitHostPort(listen)
			listen = net.JoinHostPort(host, "-1")
		}
		ns, err = natsserver.Start(natsserver.Config{Listen: listen, DataDir: cfg.Data, SyncAlways: cfg.SyncAlways,
			Users: users, TLSCert: cfg.NATSTLSCert, TLSKey: cfg.NATSTLSKey, TLSCA: cfg.NATSTLSCA,
			ServerName: cfg.NATSServerName, ClusterName: cfg.NATSClusterName, ClusterListen: cfg.NATSClusterListen, Routes: cfg.routes()})
		if err != nil {
			return fail(err)
		}
		a.ns = ns
		reg.MustRegister(natsserver.NewCollector(ns))
		cleanups = append(cleanups, func() { ns.Shutdown(); ns.WaitForShutdown() })
		a.log.Info("embedded nats started", zap.String("url", ns.ClientURL()), zap.String("store", filepath.Join(cfg.Data, "jetstream")),
			zap.Bool("sync_always", cfg.SyncAlways), zap.String("identities", cfg.natsCreds()), zap.Bool("tls", cfg.NATSTLSCert != ""),
			zap.String("server_name", cfg.NATSServerName), zap.String("cluster_listen", cfg.NATSClusterListen), zap.Strings("routes", cfg.routes()))
		url = ns.ClientURL()
	}
	// dial connects as role, closed by cleanup; the first one made is the
	// one /readyz watches, with every other.
	dial := func(role string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
		nc, err := dialNATS(cfg, url, role, "", ns, a.log, extra...)
		if err != nil {
			return nil, nil, err
		}
		cleanups = append(cleanups, func() { _ = nc.Drain(); nc.Close() })
		a.conns = append(a.conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, nil, fmt.Errorf("jetstream: %w", err)
		}
		return nc, js, nil
	}
	// open opens the streams on js; ensure as openStreams says.
	open := func(js jetstream.JetStream, ensure bool) (*streams.Handles, error) {
		return openStreams(ctx, js, sc, ensure)
	}
	if ns != nil {
		// The admin identity makes the streams; in `all` it is done then.
		nc, js, err := dial(natsauth.RoleAdmin)
		if err != nil {
			return fail(err)
		}
		// A node of a cluster does not make the streams: alone it has no
		// quorum for them. `messenger setup --replicas 3` makes them once
		// the nodes are up, as on a nats-server cluster.
		if cmd == "all" || cfg.NATSClusterListen == "" {
			if _, err := open(js, true); err != nil {
				return fail(err)
			}
		}
		if cmd == "all" {
			a.conns = a.conns[:0]
			_ = nc.Drain()
		}
	}
	// roleConn connects as role and opens the streams; a separate role
	// without an identity makes them itself (a server without
	// authentication, where every client may).
	roleConn := func(role string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, *streams.Handles, error) {
		nc, js, err := dial(role, extra...)
		if err != nil {
			return nil, nil, nil, err
		}
		h, err := open(js, ns == nil && natsSeed(cfg, role) == "")
		return nc, js, h, err
	}

	if cmd == "all" || cmd == "presence" {
		nc, _, h, err := roleConn(natsauth.RolePresence)
		if err != nil {
			return fail(err)
		}
		ps, err := presence.New(presence.Config{OnlineDelay: cfg.OnlineDelay, OfflineDelay: cfg.OfflineDelay, EdgeTimeout: cfg.EdgeTimeout}, nc, h, a.log, reg)
		if err != nil {
			return fail(err)
		}
		a.presence = ps
	}
	if cmd == "all" || cmd == "fanout" {
		nc, js, h, err := roleConn(natsauth.RoleFanout)
		if err != nil {
			return fail(err)
		}
		f, err := fanout.New(fanout.Config{Shards: cfg.FanoutShards, CheckpointEvery: cfg.FanoutFlush,
			Ownership: cfg.PartitionOwnership, WorkerID: cfg.WorkerID}, nc, js, h, a.log, reg)
		if err != nil {
			return fail(err)
		}
		a.fanout = f
	}
	if cmd == "all" || cmd == "notifier" {
		n, err := a.buildNotifier(cmd, roleConn, reg)
		if err != nil {
			return fail(err)
		}
		a.notifier = n
	}
	usesCH := cfg.ClickHouse != "" && (cmd == "all" || cmd == "edge" || cmd == "projector")
	if usesCH {
		chc, err := chConfig(cfg, a.log)
		if err != nil {
			return fail(err)
		}
		// Only the projection's writer makes the schema; an edge reads.
		a.ch = newCHLink(chc, cmd != "edge", a.log)
	}
	if cmd == "projector" && !usesCH {
		return fail(errors.New("the projector needs --clickhouse"))
	}
	if a.ch != nil && (cmd == "all" || cmd == "projector") {
		nc, js, h, err := roleConn(natsauth.RoleProjector)
		if err != nil {
			return fail(err)
		}
		_ = nc
		a.js, a.h = js, h
	}
	if cmd == "all" || cmd == "edge" {
		nc, js, h, err := roleConn(natsauth.RoleEdge,
			nats.ErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
				if errors.Is(err, nats.ErrPermissionViolation) {
					a.log.Error("nats permission violation", zap.String("nats_identity", natsauth.RoleEdge), zap.Error(err))
				}
				if e != nil {
					e.NATSErrorHandler(c, s, err)
				}
			}),
			nats.ReconnectHandler(func(c *nats.Conn) {
				a.log.Info("nats reconnected")
				if e != nil {
					e.NATSReconnected(c)
				}
			}))
		if err != nil {
			return fail(err)
		}
		d := edge.Deps{NC: nc, JS: js, Handles: h, Verifier: verifier, Log: a.log, Metrics: reg}
		if cfg.Dev {
			d.DevSigner = signer
		}
		if a.ch != nil {
			d.Projection = linkStore{a.ch}
		}
		wpKey, err := webPushKey(cfg, cmd == "all")
		if err != nil {
			return fail(err)
		}
		e, err = edge.New(edge.Config{
			MaxText: cfg.MaxText, MaxFrame: cfg.MaxFrame, SendRate: cfg.SendRate, SendBurst: cfg.SendBurst,
			QueueFrames: cfg.QueueFrames, PingInterval: cfg.PingInterval, IdleTimeout: cfg.IdleTimeout,
			AllowedOrigins: cfg.origins(), HistoryRate: cfg.HistoryRate, HistoryBurst: cfg.HistoryBurst,
			PresenceHeartbeat: cfg.EdgeHeartbeat, PresenceSync: cfg.PresenceSync, MaxWatch: cfg.MaxWatch, TypingEvery: cfg.TypingEvery, MaxGroup: cfg.MaxGroup, MaxGroupsPerUser: cfg.MaxGroupsPerUser, ReadBuffer: cfg.ReadBuffer,
			Rates: cfg.rates(), MaxConnsPerUser: cfg.MaxConnsPerUser, MaxPushRegs: cfg.MaxPushTokens,
			PublishAttempt: cfg.NATSPublishAttempt, WebPushKey: wpKey,
		}, d)
		if err != nil {
			return fail(err)
		}
		a.edge = e
		e.Routes(a.mux)
	}
	a.reg = reg
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	a.mux.HandleFunc("GET /readyz", a.readyz)
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if cfg.MetricsListen == "" {
		a.mux.Handle("GET /metrics", metrics)
	} else {
		// Metrics (connection counts, queue depths, Go internals) stay off
		// the public listener: only the metrics listener has them.
		a.mux.HandleFunc("/metrics", http.NotFound)
		a.metricsMux = http.NewServeMux()
		a.metricsMux.Handle("GET /metrics", metrics)
	}
	if cfg.Pprof {
		a.mux.HandleFunc("/debug/pprof/", pprof.Index)
		a.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		a.mux.HandleFunc("/debug/pprof/profile", noWriteDeadline(pprof.Profile))
		a.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		a.mux.HandleFunc("/debug/pprof/trace", noWriteDeadline(pprof.Trace))
	}
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fail(fmt.Errorf("listen %s: %w", cfg.HTTP, err))
	}
	a.ln = ln
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fail(fmt.Errorf("listen %s (--metrics-listen): %w", cfg.MetricsListen, err))
		}
		a.metricsLn = mln
	}
	return a, cleanup, nil
}

// readyz: 200 once the process can accept and persist messages (NATS
// connected, not draining: PROTOCOL.md section 10). ClickHouse is reported
// in the body but does not gate readiness: without it messages are still
// stored and delivered, and history is read from the streams.
func (a *app) readyz(w http.ResponseWriter, _ *http.Request) {
	ready := len(a.conns) > 0
	for _, nc := range a.conns {
		ready = ready && nc.Status() == nats.CONNECTED
	}
	if a.edge != nil {
		ready = ready && a.edge.Ready()
	}
	if !ready {
		http.Error(w, "not ready\n", http.StatusServiceUnavailable)
		return
	}
	if a.ns != nil && a.ns.JetStreamIsClustered() && !a.ns.JetStreamIsCurrent() {
		// A node with no JetStream leader in sight (no quorum yet, or cut
		// off) cannot store anything.
		http.Error(w, "not ready (no JetStream quorum: are the other nodes up?)\n", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte(a.readyText()))
}

// readyText is /readyz's 200 body: each role says what a ClickHouse
// outage means for it.
func (a *app) readyText() string {
	if a.ch == nil || a.ch.healthy.Load() {
		return "ready\n"
	}
	switch {
	case a.cmd == "edge" && a.ch.noSchema.Load():
		return "ready (no projection in clickhouse yet: history is read from the streams)\n"
	case a.cmd == "edge":
		return "ready (clickhouse unavailable: history is read from the streams)\n"
	case a.cmd == "projector":
		return "ready (clickhouse unavailable: projecting resumes when it answers; the events wait in the streams)\n"
	default: // all
		return "ready (clickhouse unavailable: history is read from the streams; projecting resumes when it answers)\n"
	}
}

// run serves until ctx ends (SIGTERM), then drains: /readyz turns 503,
// sends in flight are answered, WebSockets close with 1001, the fan-out
// finishes what it read and saves its checkpoints.
func (a *app) run(ctx context.Context) error {
	srv := newHTTPServer(a.cfg, a.mux)
	runCtx, stopRoles := context.WithCancel(context.Background())
	defer stopRoles()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error {
		if err := srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	var msrv *http.Server
	if a.metricsLn != nil {
		msrv = newHTTPServer(a.cfg, a.metricsMux)
		g.Go(func() error {
			if err := msrv.Serve(a.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics http: %w", err)
			}
			return nil
		})
		a.log.Info("metrics listening", zap.String("http", "http://"+a.metricsLn.Addr().String()+"/metrics"))
	}
	if a.edge != nil {
		g.Go(func() error { return a.edge.Run(gctx) })
	}
	if a.fanout != nil {
		g.Go(func() error { return a.fanout.Run(gctx) })
	}
	if a.presence != nil {
		g.Go(func() error { return a.presence.Run(gctx) })
	}
	if a.notifier != nil {
		g.Go(func() error { return a.notifier.Run(gctx) })
	}
	if a.ch != nil {
		g.Go(func() error { a.ch.run(gctx); return nil })
		if a.cmd == "all" || a.cmd == "projector" {
			g.Go(func() error { return a.runProjector(gctx) })
		}
	}
	a.log.Info("listening", zap.String("http", "http://"+a.ln.Addr().String()))
	select {
	case <-ctx.Done():
	case <-gctx.Done():
	}
	a.log.Info("draining", zap.Duration("timeout", a.cfg.ShutdownTimeout))
	deadline := time.Now().Add(a.cfg.ShutdownTimeout)
	if a.edge != nil {
		a.edge.Drain(a.cfg.ShutdownTimeout)
	}
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if msrv != nil {
		_ = msrv.Shutdown(sctx)
	}
	stopRoles()
	err := g.Wait()
	a.log.Info("stopped")
	return err
}

// portFree tells whether addr can be listened on now.
func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}
