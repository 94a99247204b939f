package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/natsauth"
	"messenger/services/event"
	ownership "messenger/services/partition"
	"messenger/streams"
)

// drain: the fan-out's capacity with 1, 2, ... fan-out processes sharing
// the partitions. A backlog of --drain-messages direct messages is stored
// in the conversation streams with no fan-out running (published straight
// into the streams as the admin identity: no edge, no client, so the load
// generator costs next to nothing while the clock runs); then the fan-outs
// start and the clock runs until every queue entry (two per message: the
// sender's and the recipient's) is stored. Each count gets a fresh
// `messenger nats` with the same backlog.

type drainOptions struct {
	Messages int
	Convs    int
	Fanouts  string
}

var drainOpt drainOptions

func drainFlags(fs *flag.FlagSet) {
	fs.IntVar(&drainOpt.Messages, "drain-messages", 100_000, "drain: direct messages in the backlog")
	fs.IntVar(&drainOpt.Convs, "drain-convs", 5_000, "drain: conversations (pairs of users) they are spread over")
	fs.StringVar(&drainOpt.Fanouts, "fanouts", "1,2", "drain: comma-separated numbers of fan-out processes, measured in turn")
}

func (b *bench) drain(ctx context.Context, res *result) error {
	var counts []int
	for _, s := range splitList(drainOpt.Fanouts) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("--fanouts: %q", s)
		}
		counts = append(counts, n)
	}
	res.Notes = append(res.Notes, fmt.Sprintf("%d direct messages over %d conversations, %d partitions; the clock runs from the fan-outs' start until every queue entry is stored",
		drainOpt.Messages, drainOpt.Convs, b.opt.Partitions))
	var base float64
	for round, k := range counts {
		secs, procs, err := b.drainOnce(ctx, round, k)
		if err != nil {
			return fmt.Errorf("%d fan-outs: %w", k, err)
		}
		rate := float64(drainOpt.Messages) / secs
		if base == 0 {
			base = rate
		}
		key := fmt.Sprintf("round_%d_fanouts_%d", round+1, k)
		label := fmt.Sprintf("round %d, %d fan-out(s): ", round+1, k)
		var cpu []string
		var natsCPU, fanCPU float64
		for _, p := range procs {
			cpu = append(cpu, fmt.Sprintf("%s %.0f %%", p.Name, p.CPUPct))
			if strings.HasPrefix(p.Name, "nats") {
				natsCPU += p.CPUSeconds
			} else {
				fanCPU += p.CPUSeconds
			}
		}
		per := func(cpuSecs float64) float64 { return cpuSecs / float64(drainOpt.Messages) * 1e6 }
		res.Figures = append(res.Figures,
			figure{Key: key + "_seconds", Label: label + "drain time", Value: secs, Unit: "s"},
			figure{Key: key + "_rate", Label: label + "messages fanned out", Value: rate, Unit: "per_s"},
			figure{Key: key + "_speedup", Label: label + "rate over the first round's", Unit: "text", Text: fmt.Sprintf("%.2f", rate/base)},
			figure{Key: key + "_fanout_us", Label: label + "fan-out CPU per message (all fan-outs)", Value: per(fanCPU), Unit: "us"},
			figure{Key: key + "_nats_us", Label: label + "NATS server CPU per message", Value: per(natsCPU), Unit: "us"},
			figure{Key: key + "_cpu", Label: label + "CPU of one core while draining", Unit: "text", Text: strings.Join(cpu, ", ")},
		)
		res.Processes = append(res.Processes, procs...)
	}
	return nil
}

// drainIDs are k worker ids that split the partitions as evenly as
// rendezvous hashing allows (ids are tried in order; the bench wants the
// capacity of k workers, not of an unlucky split).
func drainIDs(k, parts int) []string {
	if k == 1 {
		return []string{"drain-0"}
	}
	var best []string
	bestMax := parts + 1
	for try := 0; try < 2000 && bestMax > (parts+k-1)/k; try++ {
		ids := make([]string, k)
		for i := range ids {
			ids[i] = fmt.Sprintf("drain-%d-%d", try, i)
		}
		load := map[string]int{}
		for p := 0; p < parts; p++ {
			load[ownership.Owner(ids, p)]++
		}
		m := 0
		for _, id := range ids {
			m = max(m, load[id])
		}
		if len(load) == k && m < bestMax {
			best, bestMax = ids, m
		}
	}
	return best
}

func (b *bench) drainOnce(ctx context.Context, round, k int) (float64, []procFigure, error) {
	data := filepath.Join(b.dataDir("drain"), strconv.Itoa(round))
	natsPort, err := freePort()
	if err != nil {
		return 0, nil, err
	}
	natsURL := "nats://127.0.0.1:" + strconv.Itoa(natsPort)
	common := []string{"--log-level", b.opt.LogLevel, "--partitions", strconv.Itoa(b.opt.Partitions), "--shutdown-timeout", "5s"}
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(10 * time.Second)
		}
	}()
	start := func(name string, args ...string) (*proc, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		p, err := startProc(name, b.bin, append(append(args, "--http", addr), common...), b.messengerEnv(), b.tmp, b.logDir)
		if err != nil {
			return nil, err
		}
		p.http = addr
		procs = append(procs, p)
		return p, nil
	}
	ns, err := start(fmt.Sprintf("nats-%d", k), "nats", "--data", data, "--nats-listen", "127.0.0.1:"+strconv.Itoa(natsPort))
	if err != nil {
		return 0, nil, err
	}
	if err := waitReady(ctx, ns); err != nil {
		return 0, nil, err
	}
	creds := filepath.Join(data, "nats")
	b.logf("drain, %d fan-out(s): storing %d messages", k, drainOpt.Messages)
	if err := b.loadBacklog(ctx, natsURL, creds); err != nil {
		return 0, nil, err
	}
	nc, err := adminConn(natsURL, creds)
	if err != nil {
		return 0, nil, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	before := map[int]procSample{ns.pid(): sampleProc(ns.pid())}
	began := time.Now()
	var fanouts []*proc
	for i, id := range drainIDs(k, b.opt.Partitions) {
		p, err := start(fmt.Sprintf("fanout-%d-%d", k, i), "fanout", "--nats", natsURL, "--nats-creds", creds, "--worker-id", id)
		if err != nil {
			return 0, nil, err
		}
		before[p.pid()] = sampleProc(p.pid())
		fanouts = append(fanouts, p)
	}
	want := uint64(2 * drainOpt.Messages)
	var n uint64
	b.prog.set(fmt.Sprintf("drain, %d fan-out(s)", k), 0, func() string { return fmt.Sprintf("%d of %d queue entries", n, want) })
	for {
		n, err = queued(ctx, js, b.opt.Partitions)
		if err != nil {
			return 0, nil, err
		}
		if n >= want {
			break
		}
		for _, p := range fanouts {
			if p.exited() {
				return 0, nil, fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.tail(20))
			}
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	secs := time.Since(began).Seconds()
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.logf("drain, %d fan-out(s): %.1f s; load average after: %s", k, secs, strings.Join(strings.Fields(string(la))[:3], " "))
	}
	var figs []procFigure
	for _, p := range append([]*proc{ns}, fanouts...) {
		a, z := before[p.pid()], sampleProc(p.pid())
		cpu := z.CPU - a.CPU
		figs = append(figs, procFigure{Name: p.name, Pid: p.pid(), Role: "platform", RSSAfter: z.RSS,
			CPUSeconds: cpu, SysSeconds: z.Sys - a.Sys, CPUPct: 100 * cpu / z.At.Sub(a.At).Seconds()})
	}
	return secs, figs, nil
}

func adminConn(url, creds string) (*nats.Conn, error) {
	opts, err := natsauth.ClientOptions(natsauth.RoleAdmin, natsauth.SeedFile(creds, natsauth.RoleAdmin))
	if err != nil {
		return nil, err
	}
	return nats.Connect(url, opts...)
}

// loadBacklog publishes the backlog into the conversation streams, async,
// a window of acks at a time.
func (b *bench) loadBacklog(ctx context.Context, url, creds string) error {
	nc, err := adminConn(url, creds)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	layout := streams.Config{Partitions: b.opt.Partitions}.Layout()
	type pair struct {
		a, b, conv string
		seq        uint64
	}
	pairs := make([]pair, drainOpt.Convs)
	for i := range pairs {
		a, c := fmt.Sprintf("u%06da", i), fmt.Sprintf("u%06db", i)
		pairs[i] = pair{a: a, b: c, conv: event.DirectConv(a, c)}
	}
	now := time.Now().UnixMilli()
	for i := 0; i < drainOpt.Messages; i++ {
		pr := &pairs[i%len(pairs)]
		pr.seq++
		from, to := pr.a, pr.b
		if pr.seq%2 == 0 {
			from, to = to, from
		}
		doc, _ := json.Marshal(event.Msg{V: event.Version, Type: event.TypeMsg, Conv: pr.conv, Seq: pr.seq, TS: now,
			From: from, To: to, ID: "m" + strconv.Itoa(i), Kind: event.KindText, Text: "backlog message of about fifty bytes"})
		if _, err := js.PublishAsync(layout.ConvEvents(pr.conv), doc); err != nil {
			return fmt.Errorf("store backlog: %w", err)
		}
		if i%2_000 == 1_999 { // a window of acks at a time (no stall)
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	n, err := convStored(ctx, js, b.opt.Partitions)
	if err != nil {
		return err
	}
	if n != uint64(drainOpt.Messages) {
		return fmt.Errorf("backlog: %d of %d messages stored", n, drainOpt.Messages)
	}
	return nil
}

func queued(ctx context.Context, js jetstream.JetStream, parts int) (uint64, error) {
	return countStreams(ctx, js, parts, streams.QueueStream)
}

func convStored(ctx context.Context, js jetstream.JetStream, parts int) (uint64, error) {
	return countStreams(ctx, js, parts, streams.ConvStream)
}

func countStreams(ctx context.Context, js jetstream.JetStream, parts int, name func(int) string) (uint64, error) {
	var n uint64
	for p := 0; p < parts; p++ {
		s, err := js.Stream(ctx, name(p))
		if err != nil {
			return 0, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		n += info.State.Msgs
	}
	if n == 0 && ctx.Err() != nil {
		return 0, errors.New("cancelled")
	}
	return n, nil
}
