package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// idle holds --conns connections, one user each, spread evenly over the
// edges and the workers (raw gws connections from 127.0.0.2 and up), and
// counts the growth of the resident memory of every platform process
// divided by the connections, and the connect rate.
func (b *bench) idle(ctx context.Context, res *result) error {
	o := b.opt
	e, cleanup, err := b.setup(ctx, "idle", platformSpec{mode: o.Start, edges: o.Edges, fanout: true, data: b.dataDir("idle"), chDB: o.ClickHouseDB})
	defer cleanup()
	if err != nil {
		return err
	}
	edges := e.pl.edges
	b.prog.set("idle: settling", 3*time.Second, func() string { return "platform up, idle" })
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return err
	}
	before := snapshot(e.procs, true)

	W := len(e.ws)
	users := make([][]userSpec, W)
	for i := 0; i < o.Conns; i++ {
		users[i%W] = append(users[i%W], userSpec{Name: b.userName("i", i), URL: edges[i%len(edges)]})
	}
	var meter rateMeter
	b.prog.set("idle: connecting", 0, func() string {
		p := progressAll(e.ws)
		return fmt.Sprintf("connections %s/%s  %s /s", fmtNum(float64(p.RawUp)), fmtNum(float64(o.Conns)), fmtNum(meter.rate(p.RawUp)))
	})
	reps, err := callAll[connectReply](ctx, e.ws, "connect", func(i int) any {
		return connectArgs{Users: users[i], Concurrency: o.Concurrency, Raw: true}
	})
	if err != nil {
		return err
	}
	var connected, failed int
	var first, last int64
	errs := map[string]int64{}
	for _, r := range reps {
		connected += r.Connected
		failed += r.Failed
		if first == 0 || r.StartNs < first {
			first = r.StartNs
		}
		last = max(last, r.DoneNs)
		for k, v := range r.Errors {
			errs[k] += v
		}
	}
	connectSecs := float64(last-first) / 1e9
	afterConnect := snapshot(e.procs, false)

	b.prog.set("idle: holding", o.Hold, func() string {
		p := progressAll(e.ws)
		return fmt.Sprintf("connections up %s", fmtNum(float64(p.RawUp)))
	})
	// The platform's resident memory over the hold: a connect leaves garbage
	// that only a GC (at the latest Go's forced one, every 2 minutes) and
	// the scavenger give back, so the growth depends on when it is read.
	platformRSS := func(s procSnap) (sum int64) {
		for _, p := range e.procs {
			if p.Platform {
				sum += s[p.Name].RSS
			}
		}
		return sum
	}
	base := platformRSS(before)
	var series [][2]float64
	var peak int64
	holdEnd := time.Now().Add(o.Hold)
	for time.Now().Before(holdEnd) {
		if err := sleepCtx(ctx, min(5*time.Second, time.Until(holdEnd))); err != nil {
			return err
		}
		g := platformRSS(snapshot(e.procs, false)) - base
		peak = max(peak, g)
		series = append(series, [2]float64{time.Since(time.Unix(0, last)).Seconds(), float64(g) / float64(max(connected, 1))})
	}
	after := snapshot(e.procs, true)
	up := progressAll(e.ws).RawUp
	for _, f := range b.profileHeap(ctx, e.pl, "idle") {
		res.note("heap profile: go tool pprof -sample_index=inuse_space -top %s", f)
	}
	if err := e.pl.died(); err != nil {
		return err
	}

	res.Processes = procFigures(e.procs, before, after)
	res.add("other_cpu", "CPU of other processes on the box (noise, % of one core)", 100*otherCPU(before, after, res.Processes), "pct")
	var growth, heap, stack, gor float64
	for _, p := range res.Processes {
		if p.Role == "platform" {
			growth += float64(p.RSSAfter - p.RSSBefore)
			heap += p.HeapAfter - p.HeapBefore
			stack += p.StackAfter - p.StackBefore
			gor += p.GoroutinesAfter - p.GoroutinesBefore
		}
	}
	n := float64(max(connected, 1))
	connectCPU := procFigures(e.procs, before, afterConnect)
	res.add("conns", "connections asked", float64(o.Conns), "count")
	res.add("connected", "connected", float64(connected), "count")
	res.add("failed", "failed to connect", float64(failed), "count")
	res.add("up_at_end", fmt.Sprintf("still up after %v", o.Hold), float64(up), "count")
	res.add("edges", "edges", float64(len(edges)), "count")
	res.add("connect_rate", "connect rate", float64(connected)/connectSecs, "per_s")
	res.add("connect_seconds", "time to connect all", connectSecs, "s")
	res.add("rss_growth", "resident memory growth, platform", growth, "bytes")
	res.add("bytes_per_conn", "memory per connection (RSS growth / connections)", growth/n, "bytes")
	res.add("peak_bytes_per_conn", "  highest during the hold (per connection)", float64(peak)/n, "bytes")
	res.add("heap_per_conn", "  of which Go heap in use per connection", heap/n, "bytes")
	res.add("stack_per_conn", "  of which goroutine stacks per connection", stack/n, "bytes")
	res.add("goroutines_per_conn", "goroutines per connection (platform)", gor/n, "text")
	res.Figures[len(res.Figures)-1].Text = fmt.Sprintf("%.2f", gor/n)
	res.add("platform_cpu_connect_us", "platform CPU per connect", 1e6*sumCPU(connectCPU, "platform")/n, "us")
	res.Extra = map[string]any{"rss_growth_per_conn_over_hold": series}
	var traj []string
	for i, p := range series {
		if i%max(1, len(series)/8) == 0 || i == len(series)-1 {
			traj = append(traj, fmt.Sprintf("%.0fs %s", p[0], fmtBytes(p[1])))
		}
	}
	res.addText("rss_trajectory", "growth per connection over the hold", strings.Join(traj, ", "))
	if len(errs) > 0 {
		res.addText("connect_errors", "connect errors", fmtErrors(errs))
	}
	res.target("idle memory per connection", "≤ 16 KiB", fmtBytes(growth/n), growth/n <= 16<<10)
	res.note("platform processes: %s (NATS %s); memory read %v after the last connect", e.platformNames(), map[bool]string{true: "embedded in all", false: "its own process"}[o.Start == "all"], o.Hold)
	res.note("users: one per connection, alternating over %d edges; %d workers dialing from 127.0.0.2-127.0.0.%d, %d connects in flight each", len(edges), W, 1+W, o.Concurrency)
	return nil
}
