package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// proc is one child process: a platform role, a nats node, the idle load.
// It can be killed, paused and started again with the same arguments.
type proc struct {
	name string
	bin  string
	args []string
	env  []string
	dir  string
	http string // host:port of its /readyz, "" for none
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// registry is every proc, so that any exit path kills them all.
var registry struct {
	sync.Mutex
	procs []*proc
}

func newProc(name, bin string, args, env []string, dir, logDir, httpAddr string) *proc {
	p := &proc{name: name, bin: bin, args: args, env: env, dir: dir, http: httpAddr, log: filepath.Join(logDir, name+".log")}
	registry.Lock()
	registry.procs = append(registry.procs, p)
	registry.Unlock()
	return p
}

// start runs the process (again); its output is appended to its log.
// Children get their own process group and die with the chaos program.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !closed(p.done) {
		return fmt.Errorf("%s: already running", p.name)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== chaos: start %s at %s\n", p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env, cmd.Dir = p.env, p.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !closed(p.done)
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || closed(p.done) {
		return fmt.Errorf("%s: not running", p.name)
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT) // a paused one too
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// stop sends SIGTERM, waits up to grace, then kills.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || closed(done) {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		p.kill()
	}
}

func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// killAll kills every process still running (the exit path).
func killAll() {
	registry.Lock()
	procs := slicesClone(registry.procs)
	registry.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.kill() }()
	}
	wg.Wait()
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }

var readyClient = &http.Client{Timeout: 2 * time.Second}

// ready reports whether /readyz answers 200.
func (p *proc) ready() bool {
	if p.http == "" {
		return p.running()
	}
	resp, err := readyClient.Get("http://" + p.http + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits until /readyz answers 200, the process dies, or timeout.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if !p.running() {
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.tail(20))
		}
		if p.ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v:\n%s", p.name, timeout, p.tail(20))
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// platform is the messenger under test: three clustered nats nodes and the
// roles run apart, each a process of bin/messenger.
type platform struct {
	log      *zap.Logger
	bin      string
	dir      string // everything of the run: data, logs, identities
	logDir   string
	creds    string
	chAddr   string
	chDB     string
	secret   string
	nodes    []*proc // nats-0..2
	nodeName []string
	natsURLs []string
	edges    []*proc
	fanouts  []*proc
	presence *proc
	projs    []*proc
	// Settings of the platform (flags of the chaos program).
	partitions, replicas int
	roleArgs             []string
}

func (pl *platform) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MESSENGER_") {
			env = append(env, kv)
		}
	}
	return append(env, "MESSENGER_JWT_SECRET="+pl.secret)
}

func (pl *platform) natsList() string { return strings.Join(pl.natsURLs, ",") }

// edgeURLs are the WebSocket base URLs, edge i first.
func (pl *platform) edgeURLs(first int) []string {
	var out []string
	for i := range pl.edges {
		out = append(out, "ws://"+pl.edges[(first+i)%len(pl.edges)].http)
	}
	return out
}

func (pl *platform) edgeHTTP(i int) string { return "http://" + pl.edges[i].http }

// start brings the platform up: identities, nats nodes, streams, roles.
func (pl *platform) start(ctx context.Context, edges, fanouts, projectors int) error {
	pl.logDir = filepath.Join(pl.dir, "logs")
	pl.creds = filepath.Join(pl.dir, "creds")
	if err := os.MkdirAll(pl.logDir, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, pl.bin, "nats-creds", "--nats-creds", pl.creds).CombinedOutput(); err != nil {
		return fmt.Errorf("messenger nats-creds: %w\n%s", err, out)
	}
	common := []string{"--partitions", strconv.Itoa(pl.partitions), "--replicas", strconv.Itoa(pl.replicas), "--shutdown-timeout", "5s", "--log-level", "info"}

	// Three nodes: client, cluster and http ports of their own.
	const n = 3
	var routes []string
	clusterAddrs := make([]string, n)
	clientAddrs := make([]string, n)
	for i := 0; i < n; i++ {
		var err error
		if clusterAddrs[i], err = freeAddr(); err != nil {
			return err
		}
		if clientAddrs[i], err = freeAddr(); err != nil {
			return err
		}
		routes = append(routes, "nats-route://"+clusterAddrs[i])
		pl.natsURLs = append(pl.natsURLs, "nats://"+clientAddrs[i])
	}
	for i := 0; i < n; i++ {
		httpAddr, err := freeAddr()
		if err != nil {
			return err
		}
		name := "n" + strconv.Itoa(i+1)
		args := append([]string{"nats",
			"--http", httpAddr,
			"--data", filepath.Join(pl.dir, "nats-"+strconv.Itoa(i)),
			"--nats-creds", pl.creds,
			"--nats-listen", clientAddrs[i],
			"--nats-server-name", name,
			"--nats-cluster-name", "chaos",
			"--nats-cluster-listen", clusterAddrs[i],
			"--nats-routes", strings.Join(routes, ","),
		}, common...)
		p := newProc("nats-"+strconv.Itoa(i), pl.bin, args, pl.env(), pl.dir, pl.logDir, httpAddr)
		pl.nodes = append(pl.nodes, p)
		pl.nodeName = append(pl.nodeName, name)
		if err := p.start(); err != nil {
			return err
		}
	}
	for _, p := range pl.nodes {
		if err := p.waitReady(ctx, 90*time.Second); err != nil {
			return err
		}
	}
	// Streams and buckets, R3: the cluster may still be electing its meta
	// leader, so the setup is tried again for a while.
	deadline := time.Now().Add(90 * time.Second)
	for {
		cmd := exec.CommandContext(ctx, pl.bin, append([]string{"setup", "--nats", pl.natsList(), "--nats-creds", pl.creds}, common...)...)
		cmd.Env = pl.env()
		out, err := cmd.CombinedOutput()
		if err == nil {
			pl.log.Info("streams set up", zap.String("out", strings.TrimSpace(string(out))))
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("messenger setup: %w\n%s", err, out)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}

	roleArgs := append([]string{"--nats", pl.natsList(), "--nats-creds", pl.creds}, common...)
	roleArgs = append(roleArgs, pl.roleArgs...)
	withCH := []string{"--clickhouse", pl.chAddr, "--clickhouse-db", pl.chDB}
	role := func(name, role string, extra ...string) (*proc, error) {
		httpAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		data := filepath.Join(pl.dir, name)
		args := append([]string{role, "--http", httpAddr, "--data", data}, roleArgs...)
		args = append(args, extra...)
		p := newProc(name, pl.bin, args, pl.env(), pl.dir, pl.logDir, httpAddr)
		return p, p.start()
	}
	var all []*proc
	for i := 0; i < projectors; i++ {
		p, err := role("projector-"+strconv.Itoa(i), "projector", withCH...)
		if err != nil {
			return err
		}
		pl.projs = append(pl.projs, p)
		all = append(all, p)
	}
	if len(pl.projs) > 0 {
		// The projector makes the ClickHouse schema; the edges read it.
		if err := pl.projs[0].waitReady(ctx, 90*time.Second); err != nil {
			return err
		}
	}
	for i := 0; i < fanouts; i++ {
		p, err := role("fanout-"+strconv.Itoa(i), "fanout")
		if err != nil {
			return err
		}
		pl.fanouts = append(pl.fanouts, p)
		all = append(all, p)
	}
	p, err := role("presence", "presence")
	if err != nil {
		return err
	}
	pl.presence = p
	all = append(all, p)
	for i := 0; i < edges; i++ {
		p, err := role("edge-"+strconv.Itoa(i), "edge", withCH...)
		if err != nil {
			return err
		}
		pl.edges = append(pl.edges, p)
		all = append(all, p)
	}
	for _, p := range all {
		if err := p.waitReady(ctx, 90*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// restart starts p again and waits for its readiness.
func (pl *platform) restart(ctx context.Context, p *proc) error {
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady(ctx, 90*time.Second)
}

// stop stops the edges, then the services, then the nats nodes.
func (pl *platform) stop() {
	group := func(ps []*proc) {
		var wg sync.WaitGroup
		for _, p := range ps {
			if p == nil {
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.stop(10 * time.Second) }()
		}
		wg.Wait()
	}
	group(pl.edges)
	group(append(append([]*proc{pl.presence}, pl.fanouts...), pl.projs...))
	group(pl.nodes)
}

// died names a platform process that exited while it should run.
func (pl *platform) died(expectDown map[*proc]bool) error {
	var errs []error
	for _, p := range append(append(append(append(slicesClone(pl.nodes), pl.edges...), pl.fanouts...), pl.projs...), pl.presence) {
		if p != nil && !expectDown[p] && !p.running() {
			errs = append(errs, fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.tail(5)))
		}
	}
	return errors.Join(errs...)
}
