package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// env is what a running scenario holds: the platform, the workers, and
// the processes whose memory and CPU it reports.
type env struct {
	pl    *platform
	ws    []*workerProc
	procs []watched
}

// setup starts the platform (unless --start none) and the workers. The
// returned cleanup stops both, whatever happened.
func (b *bench) setup(ctx context.Context, scenario string, spec platformSpec) (*env, func(), error) {
	e := &env{}
	cleanup := func() {
		b.prog.set(scenario+": stopping", 0, func() string { return "" })
		stopWorkers(e.ws)
		e.pl.stop()
		if spec.mode != "none" && b.opt.Data == "" && !b.opt.Keep && spec.data != "" {
			_ = os.RemoveAll(spec.data)
		}
		b.prog.clear()
	}
	if spec.mode != "none" && spec.chDB != "" && !spec.keepDB {
		if err := b.dropDatabase(ctx, spec.chDB); err != nil {
			return e, cleanup, err
		}
	}
	b.prog.set(scenario+": starting the platform", 0, func() string { return "" })
	pl, err := b.startPlatform(ctx, spec)
	if err != nil {
		return e, cleanup, err
	}
	e.pl = pl
	if b.opt.Workers > 0 {
		ws, err := b.startWorkers(b.opt.Workers)
		e.ws = ws
		if err != nil {
			return e, cleanup, err
		}
	}
	e.procs = append(pl.watched(), workersWatched(e.ws)...)
	e.procs = append(e.procs, watched{Name: "bench", Pid: os.Getpid()})
	if pid := b.clickhousePid(); pid != 0 {
		e.procs = append(e.procs, watched{Name: "clickhouse", Pid: pid, Shared: true})
	}
	return e, cleanup, nil
}

// platformNames says which processes are the platform, for the notes.
func (e *env) platformNames() string {
	var n []string
	for _, p := range e.procs {
		if p.Platform {
			n = append(n, p.Name)
		}
	}
	return strings.Join(n, ", ")
}

// receiptSettle is how long a run waits after the last delivery for the
// Go clients' throttled delivered receipts (client.Config.DeliveredInterval,
// 1 s by default) to be written and stored, so that their cost is counted.
const receiptSettle = 1200 * time.Millisecond

// dialNote says what the users are and where their connections come from.
func (b *bench) dialNote(e *env) string {
	what := "raw WebSockets writing pre-encoded frames (--driver raw)"
	if b.opt.Driver == "client" {
		what = "Go clients (--driver client)"
	}
	return fmt.Sprintf("users: %s in %d workers, worker i dialing from 127.0.0.(2+i) (127.0.0.2-127.0.0.%d)", what, len(e.ws), 1+len(e.ws))
}

// progressAll sums the workers' progress counters (best effort, 2 s).
func progressAll(ws []*workerProc) progressReply {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	outs, _ := callAll[progressReply](ctx, ws, "progress", nil)
	var p progressReply
	for _, o := range outs {
		p.RawUp += o.RawUp
		p.RawMsgs += o.RawMsgs
		p.Clients += o.Clients
		p.Sent += o.Sent
		p.Acked += o.Acked
		p.Delivered += o.Delivered
		p.Errors += o.Errors
		p.Reconnects += o.Reconnects
	}
	return p
}

// rateMeter turns a growing counter into a rate between two calls.
type rateMeter struct {
	last  int64
	lastT time.Time
}

func (m *rateMeter) rate(v int64) float64 {
	now := time.Now()
	var r float64
	if !m.lastT.IsZero() {
		if d := now.Sub(m.lastT).Seconds(); d > 0 {
			r = float64(v-m.last) / d
		}
	}
	m.last, m.lastT = v, now
	return r
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// userName makes ids unique per run, so that every run starts with new
// conversations (seq 1) even on a reused platform.
func (b *bench) userName(prefix string, i int) string {
	return fmt.Sprintf("%s%s-%d", prefix, b.runID, i)
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}
