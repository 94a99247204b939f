package main

import (
	"bytes"
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

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chinfra "messenger/infra/clickhouse"
)

// proc is a child process the bench started: a platform role or a worker.
type proc struct {
	name string
	cmd  *exec.Cmd
	http string // host:port of its HTTP listener, "" for none
	log  string // file with its stdout and stderr
	done chan struct{}
	err  error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// children is every process started and not yet reaped, so that Ctrl-C
// and any error path stop them all.
var children struct {
	sync.Mutex
	m map[*proc]bool
}

func track(p *proc) {
	children.Lock()
	defer children.Unlock()
	if children.m == nil {
		children.m = map[*proc]bool{}
	}
	children.m[p] = true
}

func untrack(p *proc) {
	children.Lock()
	defer children.Unlock()
	delete(children.m, p)
}

// killAll sends SIGKILL to every child still running (last resort).
func killAll() {
	children.Lock()
	defer children.Unlock()
	for p := range children.m {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
		}
	}
}

// startProc runs bin with args; output goes to a log file under logDir.
// Children die with the bench (PR_SET_PDEATHSIG) and get their own process
// group, so that a terminal's Ctrl-C reaches only the bench, which stops
// them in order.
func startProc(name, bin string, args []string, env []string, dir, logDir string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	track(p)
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM, waits up to grace, then SIGKILL.
func (p *proc) stop(grace time.Duration) {
	defer untrack(p)
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the end of the process's log.
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeAddr() (string, error) {
	p, err := freePort()
	return "127.0.0.1:" + strconv.Itoa(p), err
}

// platform is the messenger under test: the processes the bench started,
// or (--start none) what it was told.
type platform struct {
	mode     string
	procs    []*proc // in start order
	edges    []string
	edgeHTTP []string // http://host:port
	natsURL  string
	data     string
	chDB     string
	external []watched // --start none: --pids
}

// platformSpec says what a scenario needs.
type platformSpec struct {
	mode   string // all, split, none
	edges  int
	fanout bool     // split: run the fan-out (history runs without it)
	data   string   // JetStream data directory
	chDB   string   // ClickHouse database
	keepDB bool     // do not drop chDB first (a reused history load)
	args   []string // more flags for every platform process (before --platform-args, which win)
}

// messengerEnv is the environment of the platform processes: the bench's
// own minus any MESSENGER_* (the bench sets what it means), plus the secret.
func (b *bench) messengerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MESSENGER_") {
			env = append(env, kv)
		}
	}
	return append(env, "MESSENGER_JWT_SECRET="+b.secret)
}

// startPlatform starts what spec asks for and waits until every process
// answers /readyz.
func (b *bench) startPlatform(ctx context.Context, spec platformSpec) (pl *platform, err error) {
	pl = &platform{mode: spec.mode, data: spec.data, chDB: spec.chDB}
	if spec.mode == "none" {
		for _, u := range splitList(b.opt.URLs) {
			u = strings.TrimSuffix(strings.TrimRight(u, "/"), "/v1/ws")
			pl.edges = append(pl.edges, u)
			h := strings.Replace(strings.Replace(u, "wss://", "https://", 1), "ws://", "http://", 1)
			pl.edgeHTTP = append(pl.edgeHTTP, h)
		}
		if len(pl.edges) == 0 {
			return nil, errors.New("--start none needs --urls ws://host:port[,...]")
		}
		for i, s := range splitList(b.opt.Pids) {
			pid, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("--pids: %q is not a pid", s)
			}
			pl.external = append(pl.external, watched{Name: "pid-" + strconv.Itoa(pid), Pid: pid, Platform: true})
			_ = i
		}
		pl.natsURL = b.opt.NATS
		return pl, nil
	}
	defer func() {
		if err != nil {
			pl.stop()
			pl = nil
		}
	}()
	if err := os.MkdirAll(spec.data, 0o755); err != nil {
		return pl, err
	}
	natsPort, err := freePort()
	if err != nil {
		return pl, err
	}
	pl.natsURL = "nats://127.0.0.1:" + strconv.Itoa(natsPort)
	common := []string{
		"--log-level", b.opt.LogLevel,
		"--partitions", strconv.Itoa(b.opt.Partitions),
		"--shutdown-timeout", "5s",
	}
	if b.opt.Profile != "" {
		common = append(common, "--pprof")
	}
	common = append(common, spec.args...)
	common = append(common, strings.Fields(b.opt.PlatformArgs)...)
	withCH := []string{"--clickhouse", b.opt.ClickHouse, "--clickhouse-db", spec.chDB}
	start := func(name, role string, args ...string) (*proc, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		all := append([]string{role, "--http", addr}, args...)
		all = append(all, common...)
		p, err := startProc(name, b.bin, all, b.messengerEnv(), b.tmp, b.logDir)
		if err != nil {
			return nil, err
		}
		p.http = addr
		pl.procs = append(pl.procs, p)
		return p, nil
	}
	// The roles run apart read their NATS identities (seeds) from where the
	// nats or all process made them.
	natsArgs := []string{"--nats", pl.natsURL, "--nats-creds", filepath.Join(spec.data, "nats")}
	switch spec.mode {
	case "all":
		p, err := start("all", "all", append([]string{"--data", spec.data, "--nats-listen", "127.0.0.1:" + strconv.Itoa(natsPort)}, withCH...)...)
		if err != nil {
			return pl, err
		}
		if err := waitReady(ctx, p); err != nil {
			return pl, err
		}
		pl.addEdge(p)
		for i := 1; i < spec.edges; i++ {
			if _, err := start(fmt.Sprintf("edge-%d", i), "edge", append(natsArgs, withCH...)...); err != nil {
				return pl, err
			}
		}
	case "split":
		p, err := start("nats", "nats", "--data", spec.data, "--nats-listen", "127.0.0.1:"+strconv.Itoa(natsPort))
		if err != nil {
			return pl, err
		}
		if err := waitReady(ctx, p); err != nil {
			return pl, err
		}
		if spec.fanout {
			if _, err := start("fanout", "fanout", natsArgs...); err != nil {
				return pl, err
			}
			if _, err := start("presence", "presence", natsArgs...); err != nil {
				return pl, err
			}
		}
		if _, err := start("projector", "projector", append(natsArgs, withCH...)...); err != nil {
			return pl, err
		}
		for i := 0; i < spec.edges; i++ {
			if _, err := start(fmt.Sprintf("edge-%d", i), "edge", append(natsArgs, withCH...)...); err != nil {
				return pl, err
			}
		}
	default:
		return pl, fmt.Errorf("--start %q: all, split or none", spec.mode)
	}
	for _, p := range pl.procs {
		if err := waitReady(ctx, p); err != nil {
			return pl, err
		}
		if strings.HasPrefix(p.name, "edge-") {
			pl.addEdge(p)
		}
	}
	return pl, nil
}

func (pl *platform) addEdge(p *proc) {
	pl.edges = append(pl.edges, "ws://"+p.http)
	pl.edgeHTTP = append(pl.edgeHTTP, "http://"+p.http)
}

var readyClient = &http.Client{Timeout: 2 * time.Second}

func waitReady(ctx context.Context, p *proc) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		if p.exited() {
			return fmt.Errorf("%s exited at start (%v):\n%s", p.name, p.err, p.tail(20))
		}
		resp, err := readyClient.Get("http://" + p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 90 s (last: %v):\n%s", p.name, err, p.tail(20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop stops the edges first, then the services, then NATS.
func (pl *platform) stop() {
	if pl == nil {
		return
	}
	var wg sync.WaitGroup
	stopAll := func(match func(*proc) bool) {
		for _, p := range pl.procs {
			if match(p) {
				wg.Add(1)
				go func() { defer wg.Done(); p.stop(10 * time.Second) }()
			}
		}
		wg.Wait()
	}
	isEdge := func(p *proc) bool { return strings.HasPrefix(p.name, "edge-") }
	isNATS := func(p *proc) bool { return p.name == "nats" || p.name == "all" }
	stopAll(isEdge)
	stopAll(func(p *proc) bool { return !isEdge(p) && !isNATS(p) })
	stopAll(isNATS)
}

// watched lists the platform's processes.
func (pl *platform) watched() []watched {
	if pl.mode == "none" {
		return pl.external
	}
	var out []watched
	for _, p := range pl.procs {
		out = append(out, watched{Name: p.name, Pid: p.pid(), Metrics: "http://" + p.http + "/metrics", Platform: true})
	}
	return out
}

// died reports a platform process that exited while it should run.
func (pl *platform) died() error {
	for _, p := range pl.procs {
		if p.exited() {
			return fmt.Errorf("platform process %s exited (%v):\n%s", p.name, p.err, p.tail(20))
		}
	}
	return nil
}

// buildMessenger builds ./cmd/messenger of the module the bench runs in.
func buildMessenger(ctx context.Context, out string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the messenger module: run from it, or give --messenger <binary>")
	}
	root := filepath.Dir(mod)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/messenger")
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/messenger: %w\n%s", err, buf.String())
	}
	return root, nil
}

// moduleRoot is the directory of go.mod, or "".
func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return ""
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return ""
	}
	return filepath.Dir(mod)
}

// clickhouseConn opens the ClickHouse server of --clickhouse (default database).
func (b *bench) clickhouseConn(ctx context.Context) (driver.Conn, error) {
	return chinfra.Server(ctx, b.opt.ClickHouse)
}

// dropDatabase removes a bench database so that a fresh run starts empty.
func (b *bench) dropDatabase(ctx context.Context, db string) error {
	conn, err := b.clickhouseConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
}

// clickhousePid is the pid of the local ClickHouse server, from the pid
// file scripts/clickhouse.sh keeps (0 when unknown).
func (b *bench) clickhousePid() int {
	if b.opt.ClickHouseDir == "" {
		return 0
	}
	raw, err := os.ReadFile(filepath.Join(b.opt.ClickHouseDir, "clickhouse-server.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return 0
	}
	return pid
}

// duBytes is the disk usage of a directory (du -sb), 0 when unknown.
func duBytes(dir string) int64 {
	out, err := exec.Command("du", "-sb", dir).Output()
	if err != nil {
		return 0
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
