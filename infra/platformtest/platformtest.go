// Package platformtest starts the platform in the test process for
// integration tests: a real embedded nats-server with JetStream on disk
// (t.TempDir), the fan-out, and any number of edges, each with its own NATS
// connection as if it were its own process. Nothing is mocked.
//
// The server requires authentication as in production: each role connects
// with its own NKEY identity and permissions (infra/natsauth), and a
// permission violation on any role's connection fails the test, so the
// suite proves the permission sets suffice for every path it exercises.
// Conn gives tests the admin identity.
package platformtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"messenger/edge"
	"messenger/edge/auth"
	chinfra "messenger/infra/clickhouse"
	"messenger/infra/natsauth"
	"messenger/infra/natsserver"
	"messenger/services/fanout"
	"messenger/services/history"
	"messenger/services/presence"
	"messenger/services/projector"
	"messenger/streams"
)

// Secret is the HS256 secret of test platforms.
const Secret = "platformtest-secret-0123456789"

// Options shape a test platform. The zero value has one edge.
type Options struct {
	Edges      int
	Partitions int
	Edge       edge.Config
	NoFanout   bool
	// ClickHouse gives the platform a real ClickHouse database of its own
	// (at infra/clickhouse.TestAddr(), dropped after the test), a projector
	// and edges that read history from it.
	ClickHouse bool
	// ClickHouseAddr overrides infra/clickhouse.TestAddr() (a private server).
	ClickHouseAddr string
	// ClickHouseShards makes the database sharded over these servers
	// (infra/clickhouse.Config.Shards, cluster "messenger"; the platform
	// talks to the first): see infra/clickhouse.TestShards.
	ClickHouseShards []string
	Projector        projector.Config
	// NoProjector: with ClickHouse, start no projector (a test starts its
	// own with StartProjectorWorker).
	NoProjector bool
	// Presence configures the presence service (always started).
	Presence presence.Config
	// Fanout configures the fan-out.
	Fanout fanout.Config
	// Cluster, when 2 or more, runs that many clustered NATS servers
	// (cluster.go) instead of one, with streams of min(Cluster, 3)
	// replicas; clients connect with every node's URL.
	Cluster int
	// Dial, if set, gives the URL(s) (comma-separated) and extra options
	// of each role connection, from the role and the servers' URL(s): a test
	// puts a Proxy in front of the server for some roles.
	Dial func(role, server string) (string, []nats.Option)
}

// Platform is a running test platform.
type Platform struct {
	t testing.TB
	// NS is the server; in a cluster the first node (Nodes[0]).
	NS *server.Server
	// Nodes are a cluster's servers (Options.Cluster), nil otherwise.
	Nodes  []*server.Server
	nodes  []*node
	routes []string
	users  []*server.NkeyUser
	Signer *auth.Signer
	Conf   streams.Config
	Log    *zap.Logger

	mu         sync.Mutex
	Edges      []*Edge
	fanouts    []*running
	projectors []*running
	presences  []*running
	// CH is the platform's ClickHouse connection (Options.ClickHouse).
	CH     driver.Conn
	CHDB   string
	chAddr string
	opts   Options
	// creds holds the role seeds; violations the permission errors the
	// roles' connections were told of.
	creds      string
	violations []string
}

// Edge is one running edge.
type Edge struct {
	Edge *edge.Edge
	HTTP *httptest.Server
	NC   *nats.Conn
	// Metrics is the edge's own registry, for tests that read a counter.
	Metrics *prometheus.Registry
	cancel  context.CancelFunc
	done    chan struct{}
}

type running struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

// stop stops the service (ctx first: it hands over what it holds), then
// closes its connection; kill closes the connection first, as SIGKILL
// would (nothing is handed over, a lease is left to expire). Both may be
// called more than once.
func (r *running) stop() {
	r.cancel()
	<-r.done
	r.nc.Close()
}

func (r *running) kill() {
	r.nc.Close()
	r.cancel()
	<-r.done
}

// Worker is one fan-out or projector a test started apart (StartFanoutWorker,
// StartProjectorWorker); the platform stops it with the test too.
type Worker struct {
	r         *running
	Fanout    *fanout.Fanout       // set for a fan-out
	Projector *projector.Projector // set for a projector
}

// Stop stops the worker cleanly: it hands its partitions over and leaves.
func (w *Worker) Stop() { w.r.stop() }

// Kill stops the worker as a crash would: its connection goes first.
func (w *Worker) Kill() { w.r.kill() }

// Owned is the partitions the worker works now.
func (w *Worker) Owned() []int {
	if w.Fanout != nil {
		return w.Fanout.Owned()
	}
	return w.Projector.Owned()
}

// StartFanoutWorker starts one more fan-out with cfg (Options.Fanout is not
// used) and returns it.
func (p *Platform) StartFanoutWorker(cfg fanout.Config) *Worker {
	nc := p.RoleConn(natsauth.RoleFanout)
	js, h := p.handles(nc)
	f, err := fanout.New(cfg, nc, js, h, p.Log, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return &Worker{r: p.run("fanout", nc, f.Run, &p.fanouts), Fanout: f}
}

// StartProjectorWorker starts one more projector with cfg (BatchWait 1 s
// unless set) and returns it; the platform needs Options.ClickHouse.
func (p *Platform) StartProjectorWorker(cfg projector.Config) *Worker {
	if cfg.BatchWait == 0 {
		cfg.BatchWait = time.Second
	}
	nc := p.RoleConn(natsauth.RoleProjector)
	js, h := p.handles(nc)
	pr, err := projector.New(cfg, js, h, p.CH, p.Log, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return &Worker{r: p.run("projector", nc, pr.Run, &p.projectors), Projector: pr}
}

// Start starts a platform that stops with the test.
func Start(t testing.TB, o Options) *Platform {
	t.Helper()
	creds := filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(creds); err != nil {
		t.Fatal(err)
	}
	users, err := natsauth.LoadUsers(filepath.Join(creds, natsauth.UsersFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewHS256Signer([]byte(Secret))
	if err != nil {
		t.Fatal(err)
	}
	p := &Platform{t: t, Signer: signer, Conf: streams.Config{Partitions: o.Partitions}, Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), opts: o, creds: creds}
	if o.Cluster >= 2 {
		p.Conf.Replicas = min(o.Cluster, 3)
		p.startCluster(o.Cluster, users)
	} else {
		ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir(), Users: users})
		if err != nil {
			t.Fatal(err)
		}
		p.NS = ns
	}
	if o.ClickHouse {
		p.openClickHouse() // its cleanup runs after the one below
	}
	t.Cleanup(func() {
		p.mu.Lock()
		edges := p.Edges
		p.mu.Unlock()
		for _, e := range edges {
			e.stop()
		}
		p.StopFanout()
		p.StopProjector()
		p.StopPresence()
		if p.Nodes == nil {
			p.NS.Shutdown()
			p.NS.WaitForShutdown()
		}
		for i := range p.Nodes {
			p.StopNode(i)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.violations) > 0 {
			t.Errorf("NATS permission violations on the roles' connections: %v", p.violations)
		}
	})

	nc := p.Conn()
	js, _ := jetstream.New(nc)
	// A cluster makes each replicated stream through its Raft groups: on
	// a busy machine the whole set takes well over 10 s.
	ensureTimeout := 10 * time.Second
	if p.Nodes != nil {
		ensureTimeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), ensureTimeout)
	defer cancel()
	began := time.Now()
	if err := streams.Ensure(ctx, js, p.Conf); err != nil {
		t.Fatalf("%v (after %s)", err, time.Since(began))
	}
	if !o.NoFanout {
		p.StartFanout()
	}
	if o.ClickHouse && !o.NoProjector {
		p.StartProjector()
	}
	p.StartPresence()
	if o.Edges <= 0 {
		o.Edges = 1
	}
	for i := 0; i < o.Edges; i++ {
		p.StartEdge(o.Edge)
	}
	return p
}

// Conn is a new NATS connection to the platform's server as the admin
// identity (every subject but $SYS), closed with the test.
func (p *Platform) Conn(opts ...nats.Option) *nats.Conn {
	p.t.Helper()
	return p.RoleConn(natsauth.RoleAdmin, opts...)
}

// RoleConn is a new NATS connection as role (natsauth.Role*), closed with
// the test. A permission violation reported to it fails the test, unless
// opts set an error handler of their own.
func (p *Platform) RoleConn(role string, opts ...nats.Option) *nats.Conn {
	p.t.Helper()
	auth, err := natsauth.ClientOptions(role, natsauth.SeedFile(p.creds, role))
	if err != nil {
		p.t.Fatal(err)
	}
	record := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { p.violation(role, err) })
	all := append([]nats.Option{nats.MaxReconnects(-1), record}, auth...)
	url := p.URL()
	if p.opts.Dial != nil {
		var extra []nats.Option
		url, extra = p.opts.Dial(role, url)
		all = append(all, extra...)
	}
	nc, err := nats.Connect(url, append(all, opts...)...)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(nc.Close)
	return nc
}

// Creds is the directory of the platform's NKEY seeds (natsauth.SeedFile).
func (p *Platform) Creds() string { return p.creds }

// violation records a permission error told to a role's connection.
func (p *Platform) violation(role string, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	p.mu.Lock()
	p.violations = append(p.violations, role+": "+err.Error())
	p.mu.Unlock()
}

func (p *Platform) handles(nc *nats.Conn) (jetstream.JetStream, *streams.Handles) {
	js, err := jetstream.New(nc)
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := streams.Open(ctx, js, p.Conf)
	if err != nil {
		p.t.Fatal(err)
	}
	return js, h
}

// StartFanout starts a fan-out (again, or one more: several may run at once).
func (p *Platform) StartFanout() {
	nc := p.RoleConn(natsauth.RoleFanout)
	js, h := p.handles(nc)
	f, err := fanout.New(p.opts.Fanout, nc, js, h, p.Log, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	p.run("fanout", nc, f.Run, &p.fanouts)
}

// StopFanout stops every fan-out; its connection closes.
func (p *Platform) StopFanout() { p.stopAll(&p.fanouts) }

// run runs a service on its own connection until stopAll.
func (p *Platform) run(name string, nc *nats.Conn, run func(context.Context) error, into *[]*running) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := run(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrConnectionClosed) {
			p.t.Errorf("%s: %v", name, err)
		}
	}()
	p.mu.Lock()
	*into = append(*into, r)
	p.mu.Unlock()
	return r
}

// stopAll stops the services in list, as a crash would: their connections close.
func (p *Platform) stopAll(list *[]*running) {
	p.mu.Lock()
	rs := *list
	*list = nil
	p.mu.Unlock()
	for _, r := range rs {
		r.stop()
	}
}

func (p *Platform) openClickHouse() {
	p.chAddr = chinfra.TestAddr()
	if p.opts.ClickHouseAddr != "" {
		p.chAddr = p.opts.ClickHouseAddr
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	p.CHDB = "test_" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := chinfra.Config{Addr: p.chAddr, Database: p.CHDB, Shards: p.opts.ClickHouseShards}
	if len(cfg.Shards) > 0 {
		cfg.Addr = cfg.Shards[0]
	}
	conn, err := chinfra.Open(ctx, cfg)
	if err != nil {
		p.t.Fatalf("clickhouse at %s (run bash scripts/clickhouse.sh start, or start-shards): %v", cfg.Addr, err)
	}
	if err := chinfra.ApplyAll(ctx, conn, cfg); err != nil {
		p.t.Fatal(err)
	}
	p.CH = conn
	p.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+p.CHDB)
		_ = conn.Close()
		for _, a := range cfg.Shards[min(1, len(cfg.Shards)):] {
			if c, err := chinfra.Open(ctx, chinfra.Config{Addr: a, Database: p.CHDB}); err == nil {
				_ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+p.CHDB)
				_ = c.Close()
			}
		}
	})
}

// projectorConfig is Options.Projector, gathering for 1 s instead of the
// default 5 s unless told: tests wait for rows, not for fewer parts.
func (p *Platform) projectorConfig() projector.Config {
	c := p.opts.Projector
	if c.BatchWait == 0 {
		c.BatchWait = time.Second
	}
	return c
}

// StartProjector starts a ClickHouse projector (again).
func (p *Platform) StartProjector() {
	nc := p.RoleConn(natsauth.RoleProjector)
	js, h := p.handles(nc)
	pr, err := projector.New(p.projectorConfig(), js, h, p.CH, p.Log, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	p.run("projector", nc, pr.Run, &p.projectors)
}

// StartPresence starts the presence service (again).
func (p *Platform) StartPresence() {
	nc := p.RoleConn(natsauth.RolePresence)
	_, h := p.handles(nc)
	s, err := presence.New(p.opts.Presence, nc, h, p.Log, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	p.run("presence", nc, s.Run, &p.presences)
}

// StopPresence stops the presence service.
func (p *Platform) StopPresence() { p.stopAll(&p.presences) }

// StopProjector stops every projector.
func (p *Platform) StopProjector() { p.stopAll(&p.projectors) }

// Handles opens the streams and buckets on a new connection.
func (p *Platform) Handles() (*nats.Conn, *streams.Handles) {
	nc := p.Conn()
	_, h := p.handles(nc)
	return nc, h
}

// RoleHandles opens the streams and buckets on a new connection as role
// (an edge a test builds itself connects as natsauth.RoleEdge).
func (p *Platform) RoleHandles(role string) (*nats.Conn, *streams.Handles) {
	nc := p.RoleConn(role)
	_, h := p.handles(nc)
	return nc, h
}

// Projector makes a projector that is not running (for admin calls), on
// the projector's identity as `messenger replay-dead-letters` uses it.
func (p *Platform) Projector() (*projector.Projector, *nats.Conn, *streams.Handles) {
	nc := p.RoleConn(natsauth.RoleProjector)
	js, h := p.handles(nc)
	pr, err := projector.New(p.projectorConfig(), js, h, p.CH, p.Log, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return pr, nc, h
}

// WaitProjected waits until every conversation stream is in ClickHouse.
func (p *Platform) WaitProjected() {
	p.t.Helper()
	nc := p.Conn()
	_, h := p.handles(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := projector.WaitCaughtUp(ctx, h); err != nil {
		p.t.Fatalf("projection not caught up: %v", err)
	}
}

// StartEdge starts one more edge and returns its index.
func (p *Platform) StartEdge(cfg edge.Config) int { return p.startEdge(cfg, nil) }

// StartDevEdge starts one more edge with the development sign-in on (as
// `messenger all --dev` has it, with the platform's signer) and returns
// its index.
func (p *Platform) StartDevEdge(cfg edge.Config) int { return p.startEdge(cfg, p.Signer) }

func (p *Platform) startEdge(cfg edge.Config, dev *auth.Signer) int {
	var e *edge.Edge
	nc := p.RoleConn(natsauth.RoleEdge,
		nats.ErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
			p.violation(natsauth.RoleEdge, err)
			if e != nil {
				e.NATSErrorHandler(c, s, err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			if e != nil {
				e.NATSReconnected(c)
			}
		}),
	)
	js, h := p.handles(nc)
	v, err := auth.NewHS256Verifier([]byte(Secret))
	if err != nil {
		p.t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	d := edge.Deps{NC: nc, JS: js, Handles: h, Verifier: v, Log: p.Log, Metrics: reg, DevSigner: dev}
	if p.CH != nil {
		d.Projection = &history.ClickHouse{Conn: p.CH}
	}
	e, err = edge.New(cfg, d)
	if err != nil {
		p.t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.Routes(mux)
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	pe := &Edge{Edge: e, HTTP: srv, NC: nc, Metrics: reg, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(pe.done); _ = e.Run(ctx) }()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Edges = append(p.Edges, pe)
	return len(p.Edges) - 1
}

// Counter is the value of the edge's counter name (0 when it was never set).
func (e *Edge) Counter(name string) float64 {
	mfs, err := e.Metrics.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func (e *Edge) stop() {
	e.Edge.Abort()
	e.HTTP.CloseClientConnections()
	e.HTTP.Close()
	e.cancel()
	<-e.done
	e.NC.Close()
}

// KillEdge stops edge i abruptly, as SIGKILL would: its NATS connection
// goes first (it tells nobody anything), then its client connections are cut.
func (p *Platform) KillEdge(i int) {
	p.mu.Lock()
	e := p.Edges[i]
	p.mu.Unlock()
	e.NC.Close()
	e.stop()
}

// WS is the WebSocket base URL of edge i (ws://host:port).
func (p *Platform) WS(i int) string {
	return "ws" + strings.TrimPrefix(p.Edges[i].HTTP.URL, "http")
}

// HTTP is the base URL of edge i.
func (p *Platform) HTTP(i int) string { return p.Edges[i].HTTP.URL }

// Token mints a valid token for user.
func (p *Platform) Token(user string) string {
	tok, err := p.Signer.Token(user, time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	return tok
}

// Eventually waits until f returns nil, or fails the test with f's last error.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// Errorf is fmt.Errorf, for conditions.
var Errorf = fmt.Errorf
