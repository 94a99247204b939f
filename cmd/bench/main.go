// Command bench is the load benchmark of the messenger: it drives a running
// platform through the public protocol only (WebSocket and HTTP, with tokens
// it mints from the configured secret) and says how fast and how lean it is,
// in figures that can be set beside other messaging servers.
//
//	go run ./cmd/bench idle                       # 20,000 idle connections over 2 edges
//	go run ./cmd/bench direct --rate 5000 --duration 60s
//	go run ./cmd/bench max                        # highest rate with p99 under 50 ms
//	go run ./cmd/bench reconnect                  # 10,000 clients drop and catch up
//	go run ./cmd/bench history --data /var/tmp/bench-history
//	go run ./cmd/bench group                      # 4 groups of 256, 4 msg/s: latency to the last member
//	go run ./cmd/bench fresh --rate 2500          # every message opens a new conversation
//
// By default it builds ./cmd/messenger and starts the platform itself
// (--start all: `messenger all` plus extra `messenger edge` processes;
// --start split: nats, fanout, presence, projector and N edges as separate
// processes), a fresh one for each scenario, and stops it at the end. With
// --start none it drives --urls and reads the memory and CPU of --pids.
// Users are spread over worker processes (`bench worker`, the same binary),
// each dialing every connection (raw or Go client) from its own source
// address 127.0.0.(2+i).
// A progress line is drawn on stderr; the results are a table on stdout,
// or one JSON document with --json. Every flag also reads BENCH_<FLAG>.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"messenger/edge/auth"
	"messenger/infra/flagenv"
)

type options struct {
	// platform
	Messenger     string
	Start         string
	Edges         int
	Data          string
	ClickHouse    string
	ClickHouseDB  string
	ClickHouseDir string
	URLs          string
	NATS          string
	NATSNkey      string
	JWTSecret     string
	Pids          string
	Partitions    int
	LogLevel      string
	PlatformArgs  string
	// bench
	Workers int
	JSON    bool
	Timeout time.Duration
	Keep    bool
	Profile string
	// idle
	Conns       int
	Concurrency int
	Hold        time.Duration
	// direct, max
	Rate         float64
	Duration     time.Duration
	Users        int
	TextSize     int
	Receipts     receiptMode
	Driver       string
	Drain        time.Duration
	MaxStart     float64
	MaxStep      float64
	MaxLimit     float64
	StepDuration time.Duration
	MaxP99       time.Duration
	Noise        float64
	// reconnect
	Clients   int
	Senders   int
	FlowRate  float64
	Spread    time.Duration
	Before    time.Duration
	CatchUpBy time.Duration
	// group
	Groups    int
	GroupSize int
	GroupRate float64
	// history
	Messages        int
	Convs           int
	Pages           int
	PageConcurrency int
	LoadTimeout     time.Duration
}

func (o *options) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Messenger, "messenger", "", "messenger binary (default: go build ./cmd/messenger into a temporary directory)")
	fs.StringVar(&o.Start, "start", "all", "all: 'messenger all' plus extra edges; split: nats, fanout, presence, projector and N edges; none: drive --urls")
	fs.IntVar(&o.Edges, "edges", 2, "edges to start (all: the one inside `all` counts)")
	fs.StringVar(&o.Data, "data", "", "JetStream data directory (default: a fresh temporary one per scenario; history: a loaded one is reused)")
	fs.StringVar(&o.ClickHouse, "clickhouse", envOr("MESSENGER_CLICKHOUSE", "127.0.0.1:9000"), "ClickHouse native address")
	fs.StringVar(&o.ClickHouseDB, "clickhouse-db", "bench", "ClickHouse database of the started platform (dropped at start; history uses <db>_history)")
	fs.StringVar(&o.ClickHouseDir, "clickhouse-dir", "", "ClickHouse's directory, for its pid and disk use (default: <module>/.clickhouse)")
	fs.StringVar(&o.URLs, "urls", "", "--start none: comma-separated edge URLs ws://host:port")
	fs.StringVar(&o.NATS, "nats", "", "--start none: NATS URL (history loading)")
	fs.StringVar(&o.NATSNkey, "nats-nkey", "", "--start none: NKEY seed of the admin NATS identity (history loading; messenger nats-creds)")
	fs.StringVar(&o.JWTSecret, "jwt-secret", "", "--start none: the platform's HS256 secret (default: MESSENGER_JWT_SECRET)")
	fs.StringVar(&o.Pids, "pids", "", "--start none: comma-separated pids of every platform process (memory, CPU)")
	fs.IntVar(&o.Partitions, "partitions", 4, "stream partitions of the started platform")
	fs.StringVar(&o.LogLevel, "log-level", "warn", "log level of the started platform")
	fs.StringVar(&o.PlatformArgs, "platform-args", "", "more flags for every started platform process, space-separated (e.g. \"--fanout-shards 128\")")
	fs.IntVar(&o.Workers, "workers", 4, "load-generator worker processes")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON document instead of the table")
	fs.DurationVar(&o.Timeout, "timeout", 0, "bound on each scenario (default: idle 5m + --hold, direct and group 8m + --duration, max 30m, reconnect 5m + --before + --catch-up-by, history 30m + --load-timeout)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (logs, data)")
	fs.StringVar(&o.Profile, "profile", "", "save Go profiles of the platform processes into this directory (starts them with --pprof): CPU while direct sends and during the reconnect storm, heap after the idle hold")

	fs.IntVar(&o.Conns, "conns", 20000, "idle: connections")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "idle, reconnect: connects in flight per worker")
	fs.DurationVar(&o.Hold, "hold", 150*time.Second, "idle: how long the connections are held before memory is read (past Go's forced GC every 2 min)")

	fs.Float64Var(&o.Rate, "rate", 2000, "direct, fresh: total messages per second")
	fs.DurationVar(&o.Duration, "duration", 60*time.Second, "direct, fresh, group: how long to send")
	fs.IntVar(&o.Users, "users", 2000, "direct, max: users (in pairs, the two of a pair on different edges, both sending); fresh: users, each writing to (users-1)/2 others at most")
	fs.IntVar(&o.TextSize, "text-size", 40, "bytes of text per message")
	o.Receipts = receiptsThrottled
	fs.Var(&o.Receipts, "receipts", "direct, max, fresh, group: none; each (a delivered receipt for every message); throttled (as the Go client: per conversation the first at once, then at most one per second)")
	fs.StringVar(&o.Driver, "driver", "raw", "direct, max, fresh, group: raw (bare WebSockets writing pre-encoded frames, reading only the fields they need) or client (the Go client package, one goroutine per send)")
	fs.DurationVar(&o.Drain, "drain", 10*time.Second, "direct, max, group: stop waiting for deliveries when none came for this long (at most 3 min); reconnect: wait at most this long")
	fs.Float64Var(&o.MaxStart, "max-start", 1000, "max: first rate")
	fs.Float64Var(&o.MaxStep, "max-step", 1000, "max: rate added at each step")
	fs.Float64Var(&o.MaxLimit, "max-limit", 40000, "max: highest rate tried")
	fs.DurationVar(&o.StepDuration, "step-duration", 15*time.Second, "max: duration of each step")
	fs.Float64Var(&o.Noise, "noise", 0.2, "max: a failing step is run again (twice at most) when other processes used more than this many cores meanwhile")
	fs.DurationVar(&o.MaxP99, "max-p99", 50*time.Millisecond, "max: a step passes with p99 end to end at most this and no error or loss")

	fs.IntVar(&o.Clients, "clients", 10000, "reconnect: clients that drop and reconnect")
	fs.IntVar(&o.Senders, "senders", 200, "reconnect: users sending to them")
	fs.Float64Var(&o.FlowRate, "flow-rate", 1000, "reconnect: messages per second to the clients, throughout")
	fs.DurationVar(&o.Spread, "spread", 5*time.Second, "reconnect: reconnects are spread uniformly over this window after the drop")
	fs.DurationVar(&o.Before, "before", 5*time.Second, "reconnect: messages flow this long before the drop")
	fs.DurationVar(&o.CatchUpBy, "catch-up-by", 30*time.Second, "reconnect: messages keep flowing this long after the drop")

	fs.IntVar(&o.Groups, "groups", 4, "group: groups, each with its own sender")
	fs.IntVar(&o.GroupSize, "group-size", 256, "group: members per group, the sender included (above 256 the platform is started with --max-group)")
	fs.Float64Var(&o.GroupRate, "group-rate", 4, "group: total messages per second, spread evenly over the groups")

	fs.IntVar(&o.Messages, "messages", 10_000_000, "history: messages in ClickHouse")
	fs.IntVar(&o.Convs, "convs", 10000, "history: conversations they are spread over")
	fs.IntVar(&o.Pages, "pages", 2000, "history: pages read")
	fs.IntVar(&o.PageConcurrency, "page-concurrency", 1, "history: page requests in flight")
	fs.DurationVar(&o.LoadTimeout, "load-timeout", 25*time.Minute, "history: stop publishing after this long and measure what was loaded")
	drainFlags(fs)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

var scenarioNames = []string{"idle", "direct", "max", "reconnect", "history", "group", "fresh", "drain"}

// defaultTimeout bounds a scenario when --timeout is not given.
func (o *options) timeoutFor(s string) time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	switch s {
	case "idle":
		return 5*time.Minute + o.Hold
	case "direct", "fresh":
		return 8*time.Minute + o.Duration
	case "max":
		return 30 * time.Minute
	case "reconnect":
		return 5*time.Minute + o.Before + o.CatchUpBy
	case "history":
		return 30*time.Minute + o.LoadTimeout
	case "group":
		return 8*time.Minute + o.Duration
	}
	return 10 * time.Minute
}

const usage = `usage: bench [flags] <scenario>... [flags]

scenarios (each bounded by --timeout and stopping by itself):
  idle       N idle connections over the edges: memory per connection, connect rate
  direct     pairs on different edges at a fixed total rate: ack and end-to-end latency, CPU
  max        the highest rate with p99 end to end under --max-p99 and no error
  reconnect  N clients drop and reconnect with their cursor while messages flow
  history    page latency once ClickHouse holds --messages messages
  group      --groups groups of --group-size members at --group-rate: latency to the last member
  fresh      every message to a user the sender never wrote to nor heard from, at --rate
  drain      a stored backlog fanned out by 1, 2, ... fan-out processes (--fanouts): capacity per fan-out

flags (each also BENCH_<FLAG>, upper case, - as _):
`

// bench is one invocation: options and what every scenario shares.
type bench struct {
	opt     *options
	bin     string
	root    string
	tmp     string
	logDir  string
	secret  string
	signer  *auth.Signer
	runID   string
	command string
	prog    *progress
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := workerMain(); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// parseArgs reads flags anywhere among the scenario names, then fills the
// flags not given from BENCH_<FLAG>.
func parseArgs(args []string) (*options, []string, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o.flags(fs)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fs.PrintDefaults()
	}
	var scen []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		scen = append(scen, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if _, err := flagenv.Fill(fs, "BENCH"); err != nil {
		return nil, nil, err
	}
	if len(scen) == 0 {
		if v := os.Getenv("BENCH_SCENARIOS"); v != "" {
			scen = splitList(v)
		}
	}
	for _, s := range scen {
		ok := false
		for _, n := range scenarioNames {
			ok = ok || s == n
		}
		if !ok {
			return nil, nil, fmt.Errorf("unknown scenario %q (%s)", s, strings.Join(scenarioNames, ", "))
		}
	}
	if o.Driver != "raw" && o.Driver != "client" {
		return nil, nil, fmt.Errorf("--driver: raw or client, not %q", o.Driver)
	}
	if len(scen) == 0 {
		fs.Usage()
		return nil, nil, flag.ErrHelp
	}
	return o, scen, nil
}

func run(args []string) error {
	o, scen, err := parseArgs(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// A second Ctrl-C kills everything at once.
	go func() {
		<-ctx.Done()
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
		<-c
		killAll()
		os.Exit(130)
	}()
	defer killAll()

	b := &bench{opt: o, runID: randomID(4), command: "go run ./cmd/bench " + strings.Join(args, " ")}
	b.prog = newProgress()
	defer b.prog.stop()
	if b.tmp, err = os.MkdirTemp("", "messenger-bench-"); err != nil {
		return err
	}
	b.logDir = filepath.Join(b.tmp, "logs")
	if err := os.MkdirAll(b.logDir, 0o755); err != nil {
		return err
	}
	defer func() {
		if o.Keep {
			fmt.Fprintf(os.Stderr, "bench: kept %s\n", b.tmp)
		} else {
			_ = os.RemoveAll(b.tmp)
		}
	}()
	b.root = moduleRoot()
	if o.ClickHouseDir == "" && b.root != "" {
		o.ClickHouseDir = filepath.Join(b.root, ".clickhouse")
	}
	if o.Start == "none" {
		if o.JWTSecret == "" {
			o.JWTSecret = os.Getenv("MESSENGER_JWT_SECRET")
		}
		if o.JWTSecret == "" {
			return errors.New("--start none needs --jwt-secret (or MESSENGER_JWT_SECRET)")
		}
		b.secret = o.JWTSecret
	} else {
		b.secret = randomID(24)
		b.bin = o.Messenger
		if b.bin != "" {
			if b.bin, err = filepath.Abs(b.bin); err != nil {
				return err
			}
		} else {
			b.logf("building ./cmd/messenger")
			b.bin = filepath.Join(b.tmp, "messenger")
			if b.root, err = buildMessenger(ctx, b.bin); err != nil {
				return err
			}
		}
	}
	if b.signer, err = auth.NewHS256Signer([]byte(b.secret)); err != nil {
		return err
	}

	rep := &report{Machine: machineFacts(), Command: b.command, Platform: platformRev(b)}
	for _, s := range scen {
		if ctx.Err() != nil {
			break
		}
		sctx, cancel := context.WithTimeout(ctx, o.timeoutFor(s))
		start := time.Now()
		res := &result{Scenario: s, Command: b.command, Start: o.Start, Date: start.UTC().Format(time.RFC3339)}
		var err error
		switch s {
		case "idle":
			err = b.idle(sctx, res)
		case "direct":
			err = b.direct(sctx, res, "direct")
		case "max":
			err = b.max(sctx, res)
		case "reconnect":
			err = b.reconnect(sctx, res)
		case "history":
			err = b.history(sctx, res)
		case "group":
			err = b.group(sctx, res)
		case "fresh":
			err = b.direct(sctx, res, "fresh")
		case "drain":
			err = b.drain(sctx, res)
		}
		if err == nil && sctx.Err() != nil {
			err = sctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %v (--timeout)", o.timeoutFor(s))
		}
		cancel()
		b.prog.clear()
		res.Seconds = time.Since(start).Seconds()
		if err != nil {
			res.Error = err.Error()
			b.logf("%s: %v", s, err)
		}
		rep.Results = append(rep.Results, res)
		if !o.JSON {
			printResult(os.Stdout, rep, res)
		}
	}
	if o.JSON {
		return printJSON(os.Stdout, rep)
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			return errors.New("some scenarios failed")
		}
	}
	return nil
}

// platformRev says which platform is measured: the module's commit (and
// whether the tree had changes) for a binary the bench built.
func platformRev(b *bench) string {
	switch {
	case b.opt.Start == "none":
		return "external: " + b.opt.URLs
	case b.opt.Messenger != "":
		return "binary " + b.opt.Messenger
	}
	if b.root == "" {
		return "built here"
	}
	out, err := exec.Command("git", "-C", b.root, "describe", "--always", "--dirty").Output()
	if err != nil {
		return "built from " + b.root
	}
	return "built from commit " + strings.TrimSpace(string(out))
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// logf prints a line on stderr above the progress line.
func (b *bench) logf(format string, args ...any) {
	b.prog.printf(format, args...)
}

// dataDir is a fresh JetStream directory for a scenario, or --data.
func (b *bench) dataDir(s string) string {
	if b.opt.Data != "" {
		return b.opt.Data
	}
	return filepath.Join(b.tmp, "data-"+s)
}
