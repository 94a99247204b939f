package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"messenger/client"
)

// group: --groups groups of --group-size members each (the sender
// included), created through POST /v1/conversations by their sender; the
// members (raw users or Go clients, --driver) are spread evenly over the
// workers and the edges. Each group's sender (its member 0, the groups'
// senders on different workers and edges) sends --group-rate/--groups messages per second for
// --duration, open loop. Every member's copy, the sender's own included,
// is timed from its send's scheduled time; a message's latency to the last
// member is the latest of its --group-size arrivals.
func (b *bench) group(ctx context.Context, res *result) error {
	o := b.opt
	G, S := o.Groups, o.GroupSize
	if G < 1 || S < 2 || o.GroupRate <= 0 {
		return errors.New("--groups at least 1, --group-size at least 2, --group-rate above 0")
	}
	var args []string
	if S > 256 { // the platform's default --max-group
		args = []string{"--max-group", strconv.Itoa(S)}
	}
	e, cleanup, err := b.setup(ctx, "group", platformSpec{mode: o.Start, edges: o.Edges, fanout: true, data: b.dataDir("group"), chDB: o.ClickHouseDB, args: args})
	defer cleanup()
	if err != nil {
		return err
	}
	W, E := len(e.ws), len(e.pl.edges)
	member := func(g, j int) string { return b.userName("g", g*S+j) }
	// Member j of group g on worker and edge (g+j) mod n: each group spread
	// evenly, and the senders (j = 0) on different workers and edges.
	users := make([][]userSpec, W)
	for g := range G {
		for j := range S {
			users[(g+j)%W] = append(users[(g+j)%W], userSpec{Name: member(g, j), URL: e.pl.edges[(g+j)%E]})
		}
	}
	b.prog.set("group: connecting", 0, func() string {
		p := progressAll(e.ws)
		return fmt.Sprintf("users %s/%s", fmtNum(float64(p.Clients+p.RawUp)), fmtNum(float64(G*S)))
	})
	reps, err := callAll[connectReply](ctx, e.ws, "connect", func(i int) any {
		return connectArgs{Users: users[i], Concurrency: 32, Raw: o.Driver == "raw", Receipts: o.Receipts, PerMessage: true}
	})
	if err != nil {
		return err
	}
	for _, r := range reps {
		if r.Failed > 0 {
			return fmt.Errorf("%d clients failed to connect: %v", r.Failed, r.Errors)
		}
	}

	d := &directEnv{env: e, toConv: true, copies: int64(S), totalRoutes: G, users: G * S, routes: make([][][2]string, W)}
	created := 0
	b.prog.set("group: creating groups", 0, func() string { return fmt.Sprintf("groups %d/%d", created, G) })
	for g := range G {
		var members []string
		for j := 1; j < S; j++ {
			members = append(members, member(g, j))
		}
		tok, err := b.signer.Token(member(g, 0), time.Hour)
		if err != nil {
			return err
		}
		id := "b" + b.runID + "-" + strconv.Itoa(g)
		conv, err := client.CreateGroup(ctx, nil, e.pl.edgeHTTP[g%E], tok, id, "bench "+id, members)
		if err != nil {
			return fmt.Errorf("group %d: %w", g, err)
		}
		d.routes[g%W] = append(d.routes[g%W], [2]string{member(g, 0), conv})
		created++
	}
	// Warm up: one message in every group, every member receiving it, so
	// that the edges and the fan-out know the groups' members.
	warm, err := b.runRate(ctx, d, "group: warm-up", "w", o.GroupRate, 0, 1)
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if warm.lost > 0 {
		return fmt.Errorf("warm-up: %d of %d copies never arrived", warm.lost, warm.acked*d.copies)
	}
	if d.idleCPU, err = b.idleCPU(ctx, "group", e); err != nil {
		return err
	}

	r, err := b.runRate(ctx, d, "group", "g", o.GroupRate, o.Duration, 0)
	if err != nil {
		return err
	}
	// Per message: the latest of its S arrivals, for the complete ones.
	var last hist
	var complete int64
	for _, m := range r.perMsg {
		if m[1] >= int64(S) {
			complete++
			last.Record(time.Duration(m[2] - m[0]))
		}
	}
	lm := last.Snapshot()
	n := float64(max(r.acked, 1))
	res.add("groups", "groups", float64(G), "count")
	res.add("group_size", "members per group (the sender included)", float64(S), "count")
	res.add("users", "users", float64(G*S), "count")
	res.add("edges", "edges", float64(E), "count")
	res.add("rate", "messages per second, all groups (open loop)", o.GroupRate, "per_s")
	res.add("duration", "duration", r.duration.Seconds(), "s")
	res.add("sent", "messages sent", float64(r.sent), "count")
	res.add("acked", "messages acked", float64(r.acked), "count")
	res.add("expected", "copies expected (acked × members)", float64(r.acked*d.copies), "count")
	res.add("delivered", "copies delivered", float64(r.delivered), "count")
	res.add("lost", "lost copies (expected, never delivered)", float64(r.lost), "count")
	res.add("incomplete", "messages not delivered to every member", float64(max(0, r.acked-complete)), "count")
	res.addText("errors", "send errors (by code)", fmtErrors(r.errors))
	res.addText("retries", "retried by the client (by code)", fmtErrors(r.retries))
	res.add("disconnects", "client disconnects", float64(r.disconnects), "count")
	res.add("delivered_per_s", "copies delivered/s (frames to members)", r.deliveredPerSec, "per_s")
	res.add("last_p50", "to the last member p50", lm.Quantile(0.5), "ms")
	res.add("last_p99", "to the last member p99", lm.Quantile(0.99), "ms")
	res.add("last_p999", "to the last member p99.9", lm.Quantile(0.999), "ms")
	res.add("last_max", "to the last member max", lm.MaxMs(), "ms")
	res.add("member_p50", "to each member p50", r.e2e.Quantile(0.5), "ms")
	res.add("member_p99", "to each member p99", r.e2e.Quantile(0.99), "ms")
	res.add("member_p999", "to each member p99.9", r.e2e.Quantile(0.999), "ms")
	res.add("member_max", "to each member max", r.e2e.MaxMs(), "ms")
	res.add("ack_p50", "ack latency p50", r.ack.Quantile(0.5), "ms")
	res.add("ack_p99", "ack latency p99", r.ack.Quantile(0.99), "ms")
	platform := 1e6 * sumCPU(r.procs, "platform")
	res.add("platform_cpu_per_msg", "platform CPU per group message (receipts included)", platform/n, "us")
	res.add("platform_cpu_marginal", "  of which above the platform's idle CPU", (platform-1e6*d.idleCPU*r.windowSecs)/n, "us")
	res.add("platform_cpu_per_copy", "platform CPU per delivered copy", r.platformCPU, "us")
	res.add("clickhouse_cpu_per_msg", "ClickHouse server CPU per group message", 1e6*sumCPU(r.procs, "shared")/n, "us")
	res.add("load_cpu_per_msg", "load generator CPU per group message", 1e6*sumCPU(r.procs, "load")/n, "us")
	res.add("idle_cpu", "platform CPU with nothing sent (% of one core)", 100*d.idleCPU, "pct")
	res.add("other_cpu", "CPU of other processes on the box (noise, % of one core)", 100*r.otherCPU, "pct")
	r.platformCounters(res, n, "group message")
	res.target(fmt.Sprintf("group of %d: p99 from the send to the last member", S), "≤ 50 ms", fmtMs(lm.Quantile(0.99)), lm.N > 0 && lm.Quantile(0.99) <= 50)
	res.target("nothing lost", "0", fmtNum(float64(r.lost)), r.lost == 0 && r.acked > 0)
	res.note("platform processes: %s; %s (the in-process BenchmarkGroupDelivery256 sends none)", e.platformNames(), o.Receipts.describe())
	res.note("latencies from each send's scheduled time (open loop); a member's copy is its msg as read from the socket (--driver raw) or handed to the Go client's OnEvent (--driver client), the sender's own copy included")
	res.note("%s", b.dialNote(d.env))
	res.note("in process, one message at a time, no receipts (go test -run '^$' -bench GroupDelivery256 ./edge/): p99 19.1 ms to the last of 256 (docs/BENCHMARKS.md)")
	return nil
}
