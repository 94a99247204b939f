// Command chaos is the chaos suite (docs/CHAOS.md): it starts a clustered
// platform of bin/messenger processes on loopback (three nats nodes, two
// edges, two fan-outs, presence, two projectors, a ClickHouse database of
// its own), runs a steady workload through both edges, injects one fault
// per phase, and checks the history in the style of Jepsen's queue
// workload. It prints a results table; nothing of it runs in CI except the
// checker's unit test.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"messenger/edge/auth"
	chinfra "messenger/infra/clickhouse"
)

type options struct {
	bin        string
	clickhouse string
	dir        string
	keep       bool
	pairs      int
	groups     int
	groupSize  int
	rate       float64
	idle       int
	idleSrc    string
	faults     string
	settle     time.Duration
	down       time.Duration
	pause      time.Duration
	timeout    time.Duration
	partitions int
	out        string
	roleArgs   string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "idle" {
		if err := idleMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "chaos idle:", err)
			os.Exit(2)
		}
		return
	}
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.StringVar(&o.bin, "messenger", "bin/messenger", "the messenger binary under test (just chaos builds it)")
	fs.StringVar(&o.clickhouse, "clickhouse", "127.0.0.1:9000", "ClickHouse native address; the run uses a database chaos_<unix time> of its own")
	fs.StringVar(&o.dir, "dir", "", "directory of the run: data, logs, identities, results (default: a new temp dir, removed at the end unless --keep)")
	fs.BoolVar(&o.keep, "keep", false, "keep the run's directory and ClickHouse database")
	fs.IntVar(&o.pairs, "pairs", 20, "pairs of users writing to each other")
	fs.IntVar(&o.groups, "groups", 2, "groups")
	fs.IntVar(&o.groupSize, "group-size", 4, "members per group, every one sending")
	fs.Float64Var(&o.rate, "rate", 300, "messages per second, all senders together")
	fs.IntVar(&o.idle, "idle", 2000, "idle clients on the edge the edge-kill phase kills (0: none)")
	fs.StringVar(&o.idleSrc, "idle-src", "127.0.0.2", "source address of the idle clients")
	fs.StringVar(&o.faults, "faults", strings.Join(allFaults, ","), "phases to run, in order")
	fs.DurationVar(&o.settle, "settle", 10*time.Second, "steady load after each recovery, before the next phase")
	fs.DurationVar(&o.down, "down", 10*time.Second, "how long a killed process stays down")
	fs.DurationVar(&o.pause, "pause", 20*time.Second, "how long the paused node stays stopped")
	fs.DurationVar(&o.timeout, "timeout", 14*time.Minute, "the whole run's bound")
	fs.IntVar(&o.partitions, "partitions", 12, "stream partitions")
	fs.StringVar(&o.out, "out", "", "write the results (markdown) here too")
	fs.StringVar(&o.roleArgs, "role-args", "", "more flags for every role process (space-separated)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func run(o options) (err error) {
	zcfg := zap.NewDevelopmentConfig()
	zcfg.DisableStacktrace = true
	log, err := zcfg.Build()
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	defer killAll()

	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (build it: go build -o bin/messenger ./cmd/messenger)", bin, err)
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "chaos-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	started := time.Now()
	pl := &platform{
		log: log, bin: bin, dir: dir, chAddr: o.clickhouse,
		chDB:   fmt.Sprintf("chaos_%d", started.Unix()),
		secret: hex.EncodeToString(secret), partitions: o.partitions, replicas: 3,
		roleArgs: strings.Fields(o.roleArgs),
	}
	ch, err := chinfra.Server(ctx, o.clickhouse)
	if err != nil {
		return err
	}
	defer ch.Close()
	if !o.keep {
		defer func() {
			dctx, dcancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer dcancel()
			if err := ch.Exec(dctx, "DROP DATABASE IF EXISTS "+pl.chDB); err != nil {
				log.Warn("drop database", zap.String("db", pl.chDB), zap.Error(err))
			}
		}()
	}
	log.Info("starting the platform", zap.String("dir", dir), zap.String("clickhouse_db", pl.chDB))
	if err := pl.start(ctx, 2, 2, 2); err != nil {
		return fmt.Errorf("platform: %w", err)
	}
	defer pl.stop()
	admin, err := dialAdmin(pl.natsList(), pl.creds)
	if err != nil {
		return err
	}
	defer admin.close()

	signer, err := auth.NewHS256Signer([]byte(pl.secret))
	if err != nil {
		return err
	}
	w := &workload{log: log, pl: pl, signer: signer, run: fmt.Sprintf("c%d", started.Unix()%100000),
		pairs: o.pairs, groups: o.groups, groupSize: o.groupSize, rate: o.rate}
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	if err := w.start(sendCtx); err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	log.Info("workload running", zap.Int("senders", len(w.senders)), zap.Int("devices", len(w.devices)), zap.Float64("rate", o.rate))

	c := &chaos{o: o, log: log, pl: pl, admin: admin, w: w}
	var phases []phaseResult
	for _, name := range strings.Split(o.faults, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		f, ok := faults[name]
		if !ok {
			return fmt.Errorf("--faults: unknown phase %q (known: %s)", name, strings.Join(allFaults, ", "))
		}
		log.Info("phase", zap.String("name", name))
		ph, err := f(c, ctx)
		ph.Name = name
		if err != nil {
			// Keep what was measured; the table says where it stopped.
			log.Error("phase failed", zap.String("name", name), zap.Error(err))
			ph.Notes = append(ph.Notes, "FAILED: "+err.Error())
			phases = append(phases, ph)
			break
		}
		phases = append(phases, ph)
		if ctx.Err() != nil {
			break
		}
	}

	// The final read: senders stop, every acked message must reach every
	// member device, then the projection must hold each once.
	stopSending()
	w.stopSending()
	final := time.Now()
	for deadline := time.Now().Add(90 * time.Second); w.missing() > 0 && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
	}
	deliveredIn := time.Since(final)
	w.closeDevices()
	h := w.snapshot()
	if err := dumpHistory(filepath.Join(dir, "history"), h); err != nil {
		log.Warn("write the history", zap.Error(err))
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer fcancel()
	rows, chWait, chErr := waitProjection(fctx, ch, pl.chDB, h)
	if chErr != nil {
		log.Error("ClickHouse read", zap.Error(chErr))
	}
	res := Check(h, rows)
	rep := report{o: o, started: started, phases: phases, h: h, res: res, deliveredIn: deliveredIn, chWait: chWait, chErr: chErr, dir: dir}
	text := rep.markdown()
	fmt.Println(text)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(text), 0o644); err != nil {
		log.Warn("write results", zap.Error(err))
	}
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if o.keep || o.dir != "" {
		fmt.Printf("run directory kept: %s (ClickHouse database %s)\n", dir, pl.chDB)
	}
	if n := len(res.Anomalies); n > 0 {
		return fmt.Errorf("%d anomalies (see the table)", n)
	}
	return nil
}
