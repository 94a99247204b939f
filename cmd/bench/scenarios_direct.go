package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// directEnv is the direct and max scenarios' platform, workers and users:
// --users users in pairs, the two of a pair on different edges and (when
// there are several) in different workers, each sending to the other. The
// group scenario uses it too, with routes to groups; the fresh scenario
// with --users users each sending to users it never wrote to (freshUsers).
type directEnv struct {
	*env
	routes      [][][2]string // per worker: from, to
	toConv      bool          // routes go to conversations (groups), not users
	freshUsers  int           // fresh: users, named freshPrefix + index; routes name only the sender
	freshPrefix string
	copies      int64 // deliveries per message: 1, or the group's members
	totalRoutes int
	users       int
	idleCPU     float64 // platform CPU seconds per second with the users connected and nothing sent
}

func (b *bench) directSetup(ctx context.Context, scenario string) (*directEnv, func(), error) {
	o := b.opt
	e, cleanup, err := b.setup(ctx, scenario, platformSpec{mode: o.Start, edges: o.Edges, fanout: true, data: b.dataDir(scenario), chDB: o.ClickHouseDB})
	if err != nil {
		return nil, cleanup, err
	}
	d := &directEnv{env: e, users: o.Users &^ 1, copies: 1}
	if d.users < 2 {
		return nil, cleanup, errors.New("--users: at least 2")
	}
	W, E := len(e.ws), len(e.pl.edges)
	users := make([][]userSpec, W)
	d.routes = make([][][2]string, W)
	if scenario == "fresh" {
		d.freshUsers, d.freshPrefix = d.users, b.userName("f", 0)[:len(b.userName("f", 0))-1]
	}
	for i := 0; i < d.users; i++ {
		if d.freshUsers > 0 {
			users[i%W] = append(users[i%W], userSpec{Name: b.userName("f", i), URL: e.pl.edges[i%E]})
			d.routes[i%W] = append(d.routes[i%W], [2]string{b.userName("f", i), ""})
			continue
		}
		pair := i / 2
		edge := (pair + i%2) % E
		w := i % W
		users[w] = append(users[w], userSpec{Name: b.userName("d", i), URL: e.pl.edges[edge]})
		d.routes[w] = append(d.routes[w], [2]string{b.userName("d", i), b.userName("d", i^1)})
	}
	d.totalRoutes = d.users
	b.prog.set(scenario+": connecting", 0, func() string {
		p := progressAll(e.ws)
		return fmt.Sprintf("users %s/%s", fmtNum(float64(p.Clients+p.RawUp)), fmtNum(float64(d.users)))
	})
	reps, err := callAll[connectReply](ctx, e.ws, "connect", func(i int) any {
		return connectArgs{Users: users[i], Concurrency: 32, Raw: o.Driver == "raw", Receipts: o.Receipts}
	})
	if err != nil {
		return nil, cleanup, err
	}
	for _, r := range reps {
		if r.Failed > 0 {
			return nil, cleanup, fmt.Errorf("%d clients failed to connect: %v", r.Failed, r.Errors)
		}
	}
	// Warm up: one message each way in every pair creates the conversations
	// (the first send of a pair records it), then the edges' caches are warm.
	// Fresh: one message from every user, to its first fresh recipient.
	if _, err := b.runRate(ctx, d, scenario+": warm-up", "w", min(o.Rate, 2000), 0, 1); err != nil {
		return nil, cleanup, fmt.Errorf("warm-up: %w", err)
	}
	if d.idleCPU, err = b.idleCPU(ctx, scenario, e); err != nil {
		return nil, cleanup, err
	}
	return d, cleanup, nil
}

// idleCPU measures the platform's own background work (timers,
// checkpoints, the projector's polls, pings) over 5 s with nothing sent, in
// CPU seconds per second, to tell it from the cost of messages.
func (b *bench) idleCPU(ctx context.Context, scenario string, e *env) (float64, error) {
	b.prog.set(scenario+": idle CPU", 5*time.Second, func() string { return "measuring the platform's CPU with nothing sent" })
	_ = sleepCtx(ctx, time.Second)
	s0 := snapshot(e.procs, false)
	if err := sleepCtx(ctx, 5*time.Second); err != nil {
		return 0, err
	}
	idle := procFigures(e.procs, s0, snapshot(e.procs, false))
	if el := time.Since(s0[e.procs[0].Name].At).Seconds(); el > 0 {
		return sumCPU(idle, "platform") / el, nil
	}
	return 0, nil
}

// rateRun is the outcome of one open-loop run at a fixed rate.
type rateRun struct {
	rate                     float64
	duration                 time.Duration
	sent, acked, delivered   int64
	lost                     int64
	gaps, dups               int64 // raw users: seq gaps and duplicates per conversation
	raw                      bool  // --driver raw
	errors, retries          map[string]int64
	disconnects              int64
	ack, e2e                 histData
	deliveredPerSec          float64
	window                   time.Duration
	procs                    []procFigure
	platformCPU, loadCPU, ch float64 // µs per delivered message
	workerCPU, workerSys     float64 // µs per delivered message, the worker processes only (loadCPU less the coordinator); in the kernel
	marginalCPU              float64 // platform µs per delivered message above its idle CPU
	otherCPU                 float64 // cores used by processes outside the bench and the platform
	windowSecs               float64 // of the CPU samples
	profiles                 []string
	perMsg                   map[string][3]int64 // group: conv/seq -> due, arrivals, latest arrival (all workers)
}

// runRate sends at rate for dur (or perRoute messages on every route when
// perRoute > 0), waits for the deliveries (d.copies per acked message; at
// most --drain without progress), and collects.
func (b *bench) runRate(ctx context.Context, d *directEnv, phase, tag string, rate float64, dur time.Duration, perRoute int) (*rateRun, error) {
	o := b.opt
	W := len(d.ws)
	total := int(math.Round(rate * dur.Seconds()))
	if perRoute > 0 {
		total = perRoute * d.totalRoutes
		dur = time.Duration(float64(total) / rate * 1e9)
	}
	t0 := time.Now().Add(300 * time.Millisecond).UnixNano()
	var meter rateMeter
	b.prog.set(phase, dur, func() string {
		p := progressAll(d.ws)
		return fmt.Sprintf("sent %s  acked %s  delivered %s  errors %s  %s msg/s delivered",
			fmtNum(float64(p.Sent)), fmtNum(float64(p.Acked)), fmtNum(float64(p.Delivered)), fmtNum(float64(p.Errors)), fmtNum(meter.rate(p.Delivered)))
	})
	before := snapshot(d.procs, true)
	var profiles func() []string
	if name := map[string]string{"d": "direct", "g": "group", "f": "fresh"}[tag]; name != "" {
		profiles = b.profileCPU(ctx, d.pl, name, int(min(dur, 30*time.Second).Seconds()))
	}
	_, err := callAll[sendReply](ctx, d.ws, "send", func(i int) any {
		share := float64(len(d.routes[i])) / float64(d.totalRoutes)
		return sendArgs{
			Tag: tag, T0: t0, Offset: int64(float64(i) * 1e9 / rate),
			Rate: rate * share, Count: int(math.Round(float64(total) * share)),
			Routes: d.routes[i], ToConv: d.toConv, TextSize: o.TextSize, Timeout: int64(30 * time.Second),
			FreshUsers: d.freshUsers, FreshPrefix: d.freshPrefix,
		}
	})
	if err != nil {
		return nil, err
	}
	// Drain: until every acked message is delivered, or nothing more has
	// arrived for --drain (late is not lost), at most 3 minutes.
	hardStop := time.Now().Add(3 * time.Minute)
	lastMove, lastDelivered := time.Now(), int64(-1)
	var stats []statsReply
	for {
		stats, err = callAll[statsReply](ctx, d.ws, "stats", func(int) any { return map[string]string{"tag": tag} })
		if err != nil {
			return nil, err
		}
		var acked, delivered int64
		for _, s := range stats {
			acked += s.Acked
			delivered += s.Delivered
		}
		if delivered != lastDelivered {
			lastMove, lastDelivered = time.Now(), delivered
		}
		if delivered >= acked*d.copies || time.Since(lastMove) > o.Drain || time.Now().After(hardStop) {
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	// Receipts of the last deliveries (throttled by the Go client to one per
	// conversation per second) are part of the cost.
	_ = sleepCtx(ctx, receiptSettle)
	after := snapshot(d.procs, true)
	if err := d.pl.died(); err != nil {
		return nil, err
	}
	r := &rateRun{rate: rate, duration: dur, errors: map[string]int64{}, retries: map[string]int64{}, raw: o.Driver == "raw"}
	if profiles != nil {
		r.profiles = profiles()
	}
	var acks, e2es []histData
	var lastDelivery int64
	for _, s := range stats {
		r.sent += s.Sent
		r.acked += s.Acked
		r.delivered += s.Delivered
		r.gaps += s.Gaps
		r.dups += s.Dups
		for k, v := range s.Errors {
			r.errors[k] += v
		}
		for k, v := range s.Retries {
			r.retries[k] += v
		}
		r.disconnects += s.Disconnects
		acks = append(acks, s.Ack)
		e2es = append(e2es, s.E2E)
		lastDelivery = max(lastDelivery, s.LastDelivery)
		for k, m := range s.PerMsg {
			if r.perMsg == nil {
				r.perMsg = map[string][3]int64{}
			}
			t := r.perMsg[k]
			r.perMsg[k] = [3]int64{m[0], t[1] + m[1], max(t[2], m[2])}
		}
	}
	r.ack, r.e2e = merged(acks...), merged(e2es...)
	r.lost = max(0, r.acked*d.copies-r.delivered)
	if lastDelivery > t0 {
		r.window = time.Duration(lastDelivery - t0)
		r.deliveredPerSec = float64(r.delivered) / r.window.Seconds()
	}
	r.procs = procFigures(d.procs, before, after)
	r.otherCPU = otherCPU(before, after, r.procs)
	if r.delivered > 0 {
		n := float64(r.delivered)
		r.platformCPU = 1e6 * sumCPU(r.procs, "platform") / n
		r.loadCPU = 1e6 * sumCPU(r.procs, "load") / n
		for _, p := range r.procs {
			if strings.HasPrefix(p.Name, "worker-") {
				r.workerCPU += 1e6 * p.CPUSeconds / n
				r.workerSys += 1e6 * p.SysSeconds / n
			}
		}
		r.ch = 1e6 * sumCPU(r.procs, "shared") / n
		r.windowSecs = after[d.procs[0].Name].At.Sub(before[d.procs[0].Name].At).Seconds()
		r.marginalCPU = 1e6 * (sumCPU(r.procs, "platform") - d.idleCPU*r.windowSecs) / n
	}
	_ = W
	return r, nil
}

func (r *rateRun) pass(p99 time.Duration) bool {
	var errs int64
	for _, v := range r.errors {
		errs += v
	}
	return errs == 0 && r.lost == 0 && r.delivered > 0 && r.e2e.Quantile(0.99) <= float64(p99)/1e6
}

func (r *rateRun) step() stepFigure {
	return stepFigure{
		Rate: r.rate, DeliveredPS: r.deliveredPerSec, Sent: r.sent, Acked: r.acked, Delivered: r.delivered, Lost: r.lost,
		Errors: r.errors, Retries: r.retries, AckP50: r.ack.Quantile(0.5), AckP99: r.ack.Quantile(0.99),
		E2EP50: r.e2e.Quantile(0.5), E2EP99: r.e2e.Quantile(0.99), E2EP999: r.e2e.Quantile(0.999), E2EMax: r.e2e.MaxMs(),
		PlatformCPU: r.platformCPU, LoadCPU: r.loadCPU, MarginalCPU: r.marginalCPU, OtherCPU: 100 * r.otherCPU,
	}
}

// figures writes a run's figures into res.
func (r *rateRun) figures(res *result) {
	res.add("rate", "rate asked (open loop)", r.rate, "per_s")
	res.add("duration", "duration", r.duration.Seconds(), "s")
	res.add("sent", "sent", float64(r.sent), "count")
	res.add("acked", "acked", float64(r.acked), "count")
	res.add("delivered", "delivered", float64(r.delivered), "count")
	res.add("lost", "lost (acked, never delivered)", float64(r.lost), "count")
	if r.raw {
		res.add("gaps", "seq gaps seen by the users (per conversation, own messages included)", float64(r.gaps), "count")
		res.add("duplicates", "duplicates or out-of-order seqs seen by the users", float64(r.dups), "count")
	}
	res.addText("errors", "errors (by code)", fmtErrors(r.errors))
	res.addText("retries", "retried by the client (by code)", fmtErrors(r.retries))
	res.add("disconnects", "client disconnects", float64(r.disconnects), "count")
	res.add("delivered_per_s", "delivered/s", r.deliveredPerSec, "per_s")
	res.add("ack_p50", "ack latency p50", r.ack.Quantile(0.5), "ms")
	res.add("ack_p99", "ack latency p99", r.ack.Quantile(0.99), "ms")
	res.add("ack_p999", "ack latency p99.9", r.ack.Quantile(0.999), "ms")
	res.add("ack_max", "ack latency max", r.ack.MaxMs(), "ms")
	res.add("e2e_p50", "end to end p50", r.e2e.Quantile(0.5), "ms")
	res.add("e2e_p99", "end to end p99", r.e2e.Quantile(0.99), "ms")
	res.add("e2e_p999", "end to end p99.9", r.e2e.Quantile(0.999), "ms")
	res.add("e2e_max", "end to end max", r.e2e.MaxMs(), "ms")
	res.add("platform_cpu_per_msg", "platform CPU per delivered message (receipts included)", r.platformCPU, "us")
	res.add("platform_cpu_marginal", "  of which above the platform's idle CPU", r.marginalCPU, "us")
	res.add("clickhouse_cpu_per_msg", "ClickHouse server CPU per delivered message", r.ch, "us")
	res.add("load_cpu_per_msg", "load generator CPU per delivered message", r.loadCPU, "us")
	res.add("worker_cpu_per_msg", "  of which the worker processes (the users)", r.workerCPU, "us")
	res.add("worker_sys_per_msg", "    of which in the kernel (socket reads and writes)", r.workerSys, "us")
	res.add("other_cpu", "CPU of other processes on the box (noise, % of one core)", 100*r.otherCPU, "pct")
	r.platformCounters(res, float64(r.delivered), "delivered message")
}

// platformCounters adds what each of n messages cost the platform, from
// its own counters (unit names the message; nothing when n is 0), the
// processes and the profiles taken.
func (r *rateRun) platformCounters(res *result, n float64, unit string) {
	res.Processes = r.procs
	for _, f := range r.profiles {
		res.note("CPU profile: go tool pprof -top %s", f)
	}
	if n == 0 {
		return
	}
	per := func(key, label, metric string) {
		res.add(key, label, counterSum(r.procs, metric)/n, "x")
	}
	res.add("alloc_per_msg", "  Go allocation per "+unit+" (platform)", counterSum(r.procs, "go_memstats_alloc_bytes_total")/n, "bytes")
	per("gc_per_1000", "  GC cycles per 1,000 "+unit+"s", "go_gc_duration_seconds_count")
	res.Figures[len(res.Figures)-1].Value *= 1000
	per("fanout_events_per_msg", "  conversation-stream events per message (msg + receipts)", "messenger_fanout_events_total")
	per("queue_writes_per_msg", "  user-queue writes per message", "messenger_fanout_queue_writes_total")
	per("frames_per_msg", "  stored frames delivered by the edges per message", "messenger_edge_frames_delivered_total")
	per("replays_per_msg", "  catch-ups (queue reads) per message", "messenger_edge_replays_total")
	per("gaps_per_msg", "  live gaps per message", "messenger_edge_live_gaps_total")
	per("seq_conflicts_per_msg", "  seq conflicts per message", "messenger_edge_seq_conflicts_total")
	per("projected_per_msg", "  events projected into ClickHouse per message", "messenger_projector_events_total")
	per("js_stored_per_msg", "  JetStream messages stored per message (every stream and KV bucket)", "messenger_jetstream_stored_msgs_total")
	per("nats_in_per_msg", "  NATS messages received by the server per message", "messenger_nats_in_msgs_total")
	per("nats_out_per_msg", "  NATS messages sent by the server per message", "messenger_nats_out_msgs_total")
	if c := counterSum(r.procs, "messenger_fanout_queue_write_seconds_count"); c > 0 {
		res.add("queue_write_ms", "  fan-out: mean time to store one queue entry", 1000*counterSum(r.procs, "messenger_fanout_queue_write_seconds_sum")/c, "ms")
	}
}

// direct: pairs on different edges at a fixed total rate. fresh: every
// message opens a conversation (to a user the sender never wrote to nor
// heard from), at a fixed total rate.
func (b *bench) direct(ctx context.Context, res *result, scenario string) error {
	o := b.opt
	if scenario == "fresh" {
		// Each user sends its share of the run plus the warm-up's one.
		if per := o.Rate*o.Duration.Seconds()/float64(o.Users&^1) + 1; per > float64((o.Users&^1-1)/2) {
			return fmt.Errorf("fresh: %.0f messages per user need more than --users %d (each can write to (users-1)/2 others)", per, o.Users)
		}
	}
	d, cleanup, err := b.directSetup(ctx, scenario)
	defer cleanup()
	if err != nil {
		return err
	}
	r, err := b.runRate(ctx, d, scenario, scenario[:1], o.Rate, o.Duration, 0)
	if err != nil {
		return err
	}
	if scenario == "fresh" {
		res.add("users", "users (each message to a user the sender never wrote to nor heard from)", float64(d.users), "count")
	} else {
		res.add("users", "users (pairs on different edges, both sending)", float64(d.users), "count")
	}
	res.add("edges", "edges", float64(len(d.pl.edges)), "count")
	res.add("idle_cpu", "platform CPU with nothing sent (% of one core)", 100*d.idleCPU, "pct")
	r.figures(res)
	switch {
	case scenario == "fresh" && o.Rate >= 2500:
		res.target("fresh at 2,500 msg/s: p99 end to end", "≤ 50 ms", fmtMs(r.e2e.Quantile(0.99)), r.e2e.Quantile(0.99) <= 50)
	case scenario == "direct" && o.Rate >= 5000:
		res.target("direct at 5,000 msg/s: p99 end to end", "≤ 10 ms", fmtMs(r.e2e.Quantile(0.99)), r.e2e.Quantile(0.99) <= 10)
	}
	res.target("nothing lost", "0", fmtNum(float64(r.lost)), r.lost == 0)
	res.target("platform CPU per delivered message", "≤ 100 µs", fmt.Sprintf("%.0f µs", r.platformCPU), r.platformCPU <= 100)
	res.note("platform processes: %s; the projector runs; %s", d.platformNames(), o.Receipts.describe())
	res.note("latencies are measured from each send's scheduled time (open loop): a stall of the sender or the platform shows in them")
	res.note("%s", b.dialNote(d.env))
	return nil
}

// max steps the rate up until p99 end to end exceeds --max-p99 or anything
// fails, then tries once halfway between the last pass and the failure.
func (b *bench) max(ctx context.Context, res *result) error {
	o := b.opt
	d, cleanup, err := b.directSetup(ctx, "max")
	defer cleanup()
	if err != nil {
		return err
	}
	var best *rateRun
	var failAt float64
	k := 0
	// A step that fails while other processes on the box used more than
	// --noise of a core is run again (twice at most): on a shared machine
	// someone else's burst is not the platform's limit.
	try := func(rate float64) (*rateRun, error) {
		for attempt := 0; ; attempt++ {
			k++
			r, err := b.runRate(ctx, d, fmt.Sprintf("max: %s msg/s", fmtNum(rate)), "s"+strconv.Itoa(k), rate, o.StepDuration, 0)
			if err != nil {
				return nil, err
			}
			s := r.step()
			s.Pass = r.pass(o.MaxP99)
			res.Steps = append(res.Steps, s)
			b.logf("max: %s msg/s: delivered %s/s, e2e p99 %s, lost %d, errors %s, others' CPU %.0f %%: %s", fmtNum(rate), fmtNum(r.deliveredPerSec), fmtMs(s.E2EP99), r.lost, fmtErrors(r.errors), 100*r.otherCPU, map[bool]string{true: "pass", false: "fail"}[s.Pass])
			// Let receipts, the projector and the fan-out settle between steps.
			_ = sleepCtx(ctx, 3*time.Second)
			if s.Pass || r.otherCPU <= o.Noise || attempt >= 2 || ctx.Err() != nil {
				return r, nil
			}
			b.logf("max: others used %.0f %% of a core during the step: running it again", 100*r.otherCPU)
		}
	}
	// Up by --max-step until a step fails (down by halves if the first
	// does), then two bisections between the last pass and the first failure.
	passAt := 0.0
	for rate := o.MaxStart; rate <= o.MaxLimit && rate >= 100; {
		r, err := try(rate)
		if err != nil {
			if best != nil && ctx.Err() != nil {
				break
			}
			return err
		}
		if r.pass(o.MaxP99) {
			best, passAt = r, rate
			if failAt > 0 {
				break
			}
			rate += o.MaxStep
			continue
		}
		failAt = rate
		if best != nil {
			break
		}
		rate = math.Round(rate / 2)
	}
	for i := 0; i < 2 && failAt > 0 && passAt > 0 && ctx.Err() == nil; i++ {
		mid := math.Round((passAt+failAt)/2/50) * 50
		if mid <= passAt || mid >= failAt {
			break
		}
		r, err := try(mid)
		if err != nil {
			break
		}
		if r.pass(o.MaxP99) {
			best, passAt = r, mid
		} else {
			failAt = mid
		}
	}
	res.add("users", "users (pairs on different edges, both sending)", float64(d.users), "count")
	res.add("edges", "edges", float64(len(d.pl.edges)), "count")
	res.add("step_duration", "step duration", o.StepDuration.Seconds(), "s")
	if best == nil {
		res.add("max_rate", "highest passing rate", 0, "per_s")
		res.target("max rate with p99 under 50 ms, no error", "≥ 10,000 msg/s", "none passed", false)
		return nil
	}
	res.add("max_rate", fmt.Sprintf("highest rate with p99 e2e ≤ %v, no error, no loss", o.MaxP99), best.rate, "per_s")
	res.add("max_delivered_per_s", "delivered/s at that rate", best.deliveredPerSec, "per_s")
	res.add("max_e2e_p99", "end to end p99 at that rate", best.e2e.Quantile(0.99), "ms")
	res.add("max_platform_cpu", "platform CPU per delivered message at that rate", best.platformCPU, "us")
	res.add("max_load_cpu", "load generator CPU per delivered message at that rate", best.loadCPU, "us")
	if failAt > 0 {
		res.add("first_fail", "lowest failing rate", failAt, "per_s")
	}
	res.Processes = best.procs
	res.target("max: delivered with p99 < 50 ms, load generator included", "≥ 10,000 msg/s", fmtNum(best.deliveredPerSec)+" /s", best.deliveredPerSec >= 10000 && o.MaxP99 <= 50*time.Millisecond)
	res.note("processes: the CPU of the highest passing step; platform: %s", d.platformNames())
	res.note("%s", b.dialNote(d.env))
	return nil
}
