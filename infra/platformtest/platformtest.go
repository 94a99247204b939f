// Package platformtest starts the platform in the test process for
// integration tests: a real embedded nats-server with JetStream on disk
// (t.TempDir), the fan-out, and any number of edges, each with its own NATS
// connection as if it were its own process. Nothing is mocked.
package platformtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"messenger/edge"
	"messenger/edge/auth"
	"messenger/infra/natsserver"
	"messenger/services/fanout"
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
}

// Platform is a running test platform.
type Platform struct {
	t      testing.TB
	NS     *server.Server
	Signer *auth.Signer
	Conf   streams.Config
	Log    *zap.Logger

	mu      sync.Mutex
	Edges   []*Edge
	fanouts []*running
}

// Edge is one running edge.
type Edge struct {
	Edge   *edge.Edge
	HTTP   *httptest.Server
	NC     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

type running struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts a platform that stops with the test.
func Start(t testing.TB, o Options) *Platform {
	t.Helper()
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewHS256Signer([]byte(Secret))
	if err != nil {
		t.Fatal(err)
	}
	p := &Platform{t: t, NS: ns, Signer: signer, Conf: streams.Config{Partitions: o.Partitions}, Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
	t.Cleanup(func() {
		p.mu.Lock()
		edges := p.Edges
		p.mu.Unlock()
		for _, e := range edges {
			e.stop()
		}
		p.StopFanout()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	nc := p.Conn()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, p.Conf); err != nil {
		t.Fatal(err)
	}
	if !o.NoFanout {
		p.StartFanout()
	}
	if o.Edges <= 0 {
		o.Edges = 1
	}
	for i := 0; i < o.Edges; i++ {
		p.StartEdge(o.Edge)
	}
	return p
}

// Conn is a new NATS connection to the platform's server, closed with the test.
func (p *Platform) Conn(opts ...nats.Option) *nats.Conn {
	p.t.Helper()
	nc, err := nats.Connect(p.NS.ClientURL(), append([]nats.Option{nats.MaxReconnects(-1)}, opts...)...)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(nc.Close)
	return nc
}

func (p *Platform) handles(nc *nats.Conn) (jetstream.JetStream, *streams.Handles) {
	js, err := jetstream.New(nc)
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := streams.Open(ctx, js, p.Conf)
	if err != nil {
		p.t.Fatal(err)
	}
	return js, h
}

// StartFanout starts a fan-out (again, or one more: several may run at once).
func (p *Platform) StartFanout() {
	nc := p.Conn()
	js, h := p.handles(nc)
	f, err := fanout.New(fanout.Config{}, nc, js, h, p.Log, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := f.Run(ctx); err != nil {
			p.t.Errorf("fanout: %v", err)
		}
	}()
	p.mu.Lock()
	p.fanouts = append(p.fanouts, r)
	p.mu.Unlock()
}

// StopFanout stops every fan-out; its connection closes.
func (p *Platform) StopFanout() {
	p.mu.Lock()
	rs := p.fanouts
	p.fanouts = nil
	p.mu.Unlock()
	for _, r := range rs {
		r.cancel()
		<-r.done
		r.nc.Close()
	}
}

// StartEdge starts one more edge and returns its index.
func (p *Platform) StartEdge(cfg edge.Config) int {
	var e *edge.Edge
	nc := p.Conn(
		nats.ErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
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
	e, err = edge.New(cfg, nc, js, h, v, p.Log, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.Routes(mux)
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	pe := &Edge{Edge: e, HTTP: srv, NC: nc, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(pe.done); _ = e.Run(ctx) }()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Edges = append(p.Edges, pe)
	return len(p.Edges) - 1
}

func (e *Edge) stop() {
	e.Edge.Abort()
	e.HTTP.CloseClientConnections()
	e.HTTP.Close()
	e.cancel()
	<-e.done
	e.NC.Close()
}

// KillEdge stops edge i abruptly: its connections are cut, nothing drains.
func (p *Platform) KillEdge(i int) {
	p.mu.Lock()
	e := p.Edges[i]
	p.mu.Unlock()
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
