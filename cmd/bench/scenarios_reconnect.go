package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// reconnect: --clients raw connections (one user each, from the workers'
// source addresses) receive messages from --senders users (Go client) at
// --flow-rate in total. After --before, every client's socket is closed at
// once (no close frame, as a lost network); each reconnects with the cursor
// of the last stored event it had, after a random wait in [0, --spread).
// Messages keep flowing for --catch-up-by after the drop. A client is
// caught up when it has received every message acked to its sender before
// its reconnect's hello; nothing may be missing at the end.
func (b *bench) reconnect(ctx context.Context, res *result) error {
	o := b.opt
	e, cleanup, err := b.setup(ctx, "reconnect", platformSpec{mode: o.Start, edges: o.Edges, fanout: true, data: b.dataDir("reconnect"), chDB: o.ClickHouseDB})
	defer cleanup()
	if err != nil {
		return err
	}
	W, E := len(e.ws), len(e.pl.edges)
	S := max(1, min(o.Senders, o.Clients))
	recvUsers := make([][]userSpec, W)
	sendUsers := make([][]userSpec, W)
	routes := make([][][2]string, W)
	for i := 0; i < o.Clients; i++ {
		recvUsers[i%W] = append(recvUsers[i%W], userSpec{Name: b.userName("r", i), URL: e.pl.edges[i%E]})
	}
	for j := 0; j < S; j++ {
		sendUsers[j%W] = append(sendUsers[j%W], userSpec{Name: b.userName("s", j), URL: e.pl.edges[(j+1)%E]})
	}
	for i := 0; i < o.Clients; i++ {
		j := i % S
		routes[j%W] = append(routes[j%W], [2]string{b.userName("s", j), b.userName("r", i)})
	}
	b.prog.set("reconnect: connecting", 0, func() string {
		p := progressAll(e.ws)
		return fmt.Sprintf("clients %s/%s  senders %s/%d", fmtNum(float64(p.RawUp)), fmtNum(float64(o.Clients)), fmtNum(float64(p.Clients)), S)
	})
	reps, err := callAll[connectReply](ctx, e.ws, "connect", func(i int) any {
		return connectArgs{Users: recvUsers[i], Concurrency: o.Concurrency, Raw: true, Record: true}
	})
	if err != nil {
		return err
	}
	for _, r := range reps {
		if r.Failed > 0 {
			return fmt.Errorf("%d clients failed to connect: %v", r.Failed, r.Errors)
		}
	}
	if _, err := callAll[connectReply](ctx, e.ws, "connect", func(i int) any {
		return connectArgs{Users: sendUsers[i], Concurrency: 16}
	}); err != nil {
		return err
	}

	flow := o.Before + o.CatchUpBy
	total := int(math.Round(o.FlowRate * flow.Seconds()))
	t0 := time.Now().Add(500 * time.Millisecond).UnixNano()
	dropAt := t0 + int64(o.Before)
	var meter rateMeter
	b.prog.set("reconnect", flow, func() string {
		p := progressAll(e.ws)
		phase := "flowing"
		if time.Now().UnixNano() >= dropAt {
			phase = "dropped"
		}
		return fmt.Sprintf("%s  clients up %s/%s  reconnected %s  sent %s  received %s  %s msg/s",
			phase, fmtNum(float64(p.RawUp)), fmtNum(float64(o.Clients)), fmtNum(float64(p.Reconnects)),
			fmtNum(float64(p.Sent)), fmtNum(float64(p.RawMsgs)), fmtNum(meter.rate(p.RawMsgs)))
	})
	before := snapshot(e.procs, true)
	sendDone := make(chan error, 1)
	go func() {
		_, err := callAll[sendReply](ctx, e.ws, "send", func(i int) any {
			share := float64(len(routes[i])) / float64(o.Clients)
			return sendArgs{
				Tag: "r", T0: t0, Offset: int64(float64(i) * 1e9 / o.FlowRate), Rate: o.FlowRate * share,
				Count: int(math.Round(float64(total) * share)), Routes: routes[i], TextSize: o.TextSize,
				Timeout: int64(30 * time.Second), LogAcks: true,
			}
		})
		sendDone <- err
	}()
	profDone := make(chan []string, 1)
	go func() {
		// A CPU profile of the storm: from the drop, over the spread and 5 s more.
		var files []string
		if sleepCtx(ctx, time.Until(time.Unix(0, dropAt))) == nil {
			files = b.profileCPU(ctx, e.pl, "reconnect", int((o.Spread + 5*time.Second).Seconds()))()
		}
		profDone <- files
	}()
	if _, err := callAll[struct{}](ctx, e.ws, "drop", func(int) any {
		return dropArgs{At: dropAt, Spread: int64(o.Spread), Deadline: dropAt + int64(o.CatchUpBy) + int64(o.Drain)}
	}); err != nil {
		return err
	}
	if err := <-sendDone; err != nil {
		return err
	}
	// Drain: until the clients have every acked message, or --drain.
	deadline := time.Now().Add(o.Drain)
	for time.Now().Before(deadline) {
		p := progressAll(e.ws)
		if p.RawMsgs >= p.Acked && p.RawUp == int64(o.Clients) {
			break
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	after := snapshot(e.procs, true)
	if err := e.pl.died(); err != nil {
		return err
	}
	b.prog.set("reconnect: collecting", 0, func() string { return "" })
	rr, err := callAll[rawReportReply](ctx, e.ws, "raw_report", nil)
	if err != nil {
		return err
	}
	stats, err := callAll[statsReply](ctx, e.ws, "stats", func(int) any { return map[string]string{"tag": "r"} })
	if err != nil {
		return err
	}

	acks := map[string][]ackLog{}
	users := map[string]rawReport{}
	for _, r := range rr {
		for _, a := range r.Acks {
			acks[a.To] = append(acks[a.To], a)
		}
		for _, u := range r.Users {
			users[u.Name] = u
		}
	}
	var sent, acked int64
	sendErrs := map[string]int64{}
	for _, s := range stats {
		sent += s.Sent
		acked += s.Acked
		for k, v := range s.Errors {
			sendErrs[k] += v
		}
	}
	var (
		catchUp, helloAfterDrop hist
		allCaughtUp             int64
		missing, notBack        int64
		missedWhileDown         int64
		gaps, dups, reconnErrs  int64
		received                int64
		clientErrs              = map[string]int64{}
	)
	for name, u := range users {
		gaps += u.Gaps
		dups += u.Dups
		reconnErrs += u.ReconnErr
		received += u.Count
		for k, v := range u.Errors {
			clientErrs[k] += v
		}
		recvAt := map[int64]int64{}
		for _, m := range u.Recv {
			if _, ok := recvAt[m[0]]; !ok {
				recvAt[m[0]] = m[1]
			}
		}
		for _, a := range acks[name] {
			if _, ok := recvAt[a.Seq]; !ok {
				missing++
			}
		}
		if len(u.Hellos) < 2 {
			notBack++
			continue
		}
		h1 := u.Hellos[len(u.Hellos)-1]
		helloAfterDrop.Record(time.Duration(h1 - dropAt))
		done := h1
		for _, a := range acks[name] {
			if a.At > h1 {
				continue
			}
			if a.At > u.DropAt {
				missedWhileDown++
			}
			if at, ok := recvAt[a.Seq]; ok {
				done = max(done, at)
			} else {
				done = math.MaxInt64
			}
		}
		if done == math.MaxInt64 {
			allCaughtUp = math.MaxInt64
			continue
		}
		catchUp.Record(time.Duration(done - h1))
		if allCaughtUp != math.MaxInt64 {
			allCaughtUp = max(allCaughtUp, done-dropAt)
		}
	}
	cu, ha := catchUp.Snapshot(), helloAfterDrop.Snapshot()
	res.Processes = procFigures(e.procs, before, after)
	res.add("other_cpu", "CPU of other processes on the box (noise, % of one core)", 100*otherCPU(before, after, res.Processes), "pct")
	res.add("clients", "clients", float64(o.Clients), "count")
	res.add("senders", "senders (Go client)", float64(S), "count")
	res.add("edges", "edges", float64(E), "count")
	res.add("flow_rate", "messages to the clients", o.FlowRate, "per_s")
	res.add("spread", "reconnects spread over", o.Spread.Seconds(), "s")
	res.add("sent", "sent", float64(sent), "count")
	res.add("acked", "acked", float64(acked), "count")
	res.addText("send_errors", "send errors (by code)", fmtErrors(sendErrs))
	res.add("received", "received by the clients", float64(received), "count")
	res.add("missed_while_down", "acked while the client was away (caught up from the cursor)", float64(missedWhileDown), "count")
	res.add("not_back", "clients that never reconnected", float64(notBack), "count")
	res.add("reconnect_errors", "failed reconnect attempts (retried)", float64(reconnErrs), "count")
	res.addText("client_errors", "error frames to the clients", fmtErrors(clientErrs))
	res.add("hello_p50", "reconnect hello after the drop, p50", ha.Quantile(0.5), "ms")
	res.add("hello_max", "reconnect hello after the drop, last", ha.MaxMs(), "ms")
	res.add("catchup_p50", "catch-up after the client's hello, p50", cu.Quantile(0.5), "ms")
	res.add("catchup_p99", "catch-up after the client's hello, p99", cu.Quantile(0.99), "ms")
	res.add("catchup_max", "catch-up after the client's hello, max", cu.MaxMs(), "ms")
	all := float64(allCaughtUp) / 1e9
	if allCaughtUp == math.MaxInt64 || notBack > 0 {
		all = math.Inf(1)
		res.addText("all_caught_up", "all clients caught up, after the drop", "never")
	} else {
		res.add("all_caught_up", "all clients caught up, after the drop", all, "s")
	}
	res.add("missing", "missing at the end (acked, never received)", float64(missing), "count")
	res.add("gaps", "seq gaps seen", float64(gaps), "count")
	res.add("duplicates", "duplicates seen", float64(dups), "count")
	res.target(fmt.Sprintf("%s clients caught up (reconnects spread over %v)", fmtNum(float64(o.Clients)), o.Spread), "≤ 10 s after the drop",
		map[bool]string{true: "never", false: fmt.Sprintf("%.2f s", all)}[math.IsInf(all, 1)], all <= 10)
	res.target("nothing missing", "0", fmtNum(float64(missing)), missing == 0 && notBack == 0)
	select {
	case files := <-profDone:
		for _, f := range files {
			res.note("CPU profile: go tool pprof -top %s", f)
		}
	case <-time.After(30 * time.Second):
	}
	res.note("clients are raw WebSockets, senders Go clients, both from 127.0.0.2-127.0.0.%d; the clients send no receipts; senders stay connected", 1+W)
	res.note("sockets closed without a close frame at %v, reconnect waits uniform in [0, %v), messages at %s/s throughout (%v before, %v after the drop)", o.Before, o.Spread, fmtNum(o.FlowRate), o.Before, o.CatchUpBy)
	return nil
}
