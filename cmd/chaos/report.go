package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

type report struct {
	o           options
	started     time.Time
	phases      []phaseResult
	h           History
	res         *Result
	deliveredIn time.Duration
	chWait      time.Duration
	chErr       error
	dir         string
}

func sortTimes(t []time.Time) { sort.Slice(t, func(i, j int) bool { return t[i].Before(t[j]) }) }

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// markdown is the results: how it ran, one row per phase, the totals and
// the first anomalies.
func (r *report) markdown() string {
	var b strings.Builder
	acks, bySender := ackTimes(r.h)
	dels := deliveryTimes(r.h)
	lastDelivery := map[convSeq]time.Time{} // the latest first delivery to a device
	firstPerDevice := map[string]map[convSeq]bool{}
	for _, d := range r.h.Deliveries {
		k := convSeq{d.Conv, d.Seq}
		if firstPerDevice[d.Device] == nil {
			firstPerDevice[d.Device] = map[convSeq]bool{}
		}
		if firstPerDevice[d.Device][k] {
			continue
		}
		firstPerDevice[d.Device][k] = true
		if d.At.After(lastDelivery[k]) {
			lastDelivery[k] = d.At
		}
	}
	fmt.Fprintf(&b, "## Chaos run of %s\n\n", r.started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %s; messenger at git %s\n", hostLine(), runtime.NumCPU(), runtime.Version(), gitRev())
	fmt.Fprintf(&b, "- Command: `%s`\n", strings.Join(os.Args, " "))
	fmt.Fprintf(&b, "- Workload: %d pairs and %d groups of %d, %d senders, %.0f msg/s in all, 2 devices per user on different edges\n",
		r.o.pairs, r.o.groups, r.o.groupSize, len(bySender), r.o.rate)
	fmt.Fprintf(&b, "- History: %d sends acked, %d never acked (maybe; %d of them seen), %d deliveries\n",
		r.res.Acked, r.res.Maybe, r.res.MaybeSeen, r.res.Deliveries)
	fmt.Fprintf(&b, "- Final read: every acked message on every member device %s after the senders stopped; ClickHouse read %s later", secs(r.deliveredIn), secs(r.chWait))
	if r.chErr != nil {
		fmt.Fprintf(&b, " (error: %v)", r.chErr)
	}
	if !r.res.CHChecked {
		b.WriteString(" (ClickHouse NOT checked)")
	}
	fmt.Fprintf(&b, "- Ack latency over the run: pairs %s, groups %s\n\n", latencies(r.h, false), latencies(r.h, true))
	b.WriteString("Unavailability: the longest stretch without a successful ack (sends) or without a delivery to any device (deliveries) from the fault's start to the phase's end; all senders moving: from the fault's start until the last sender's last stall (a wait for an ack longer than max(1 s, 5 times its median gap between acks)) ended; slowest delivery: the longest time from an ack to the last member device's delivery, of the messages sent in the phase. Anomalies are counted by the phase their send started in.\n\n")
	b.WriteString("| phase | fault | acked | sends unavailable | deliveries unavailable | all senders moving | slowest delivery | lost | duplicated | out of order | seq gaps | ClickHouse holes | notes |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	// A sender stalls when it waits for an ack much longer than usual for
	// it: five times its median gap between acks over the run, at least 1 s
	// (group members wait longer for each ack than pairs).
	stalls := map[string]time.Duration{}
	for u, t := range bySender {
		var gaps []time.Duration
		for i := 1; i < len(t); i++ {
			gaps = append(gaps, t[i].Sub(t[i-1]))
		}
		stalls[u] = time.Second
		if len(gaps) > 0 {
			sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
			stalls[u] = max(time.Second, 5*gaps[len(gaps)/2])
		}
	}
	for _, ph := range r.phases {
		end := ph.End
		if end.IsZero() {
			end = time.Now()
		}
		acked := 0
		var delay time.Duration
		for _, s := range r.h.Sends {
			if s.Acked && !s.Start.Before(ph.Start) && s.Start.Before(end) {
				acked++
				if t, ok := lastDelivery[convSeq{s.Conv, s.Seq}]; ok {
					delay = max(delay, t.Sub(s.AckAt))
				}
			}
		}
		count := func(kinds ...string) int {
			n := 0
			for _, a := range r.res.Anomalies {
				if !a.At.Before(ph.Start) && a.At.Before(end) && contains(kinds, a.Kind) {
					n++
				}
			}
			return n
		}
		ch := fmt.Sprint(count(AnomalyCHHole, AnomalyCHDuplicate))
		if !r.res.CHChecked {
			ch = "not checked"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %d | %d | %d | %d | %s | %s |\n",
			ph.Name, ph.Fault, acked,
			secs(Unavailability(acks, ph.FaultAt, end)),
			secs(Unavailability(dels, ph.FaultAt, end)),
			secs(AllMoving(bySender, ph.FaultAt, end, stalls)), secs(delay),
			count(AnomalyLost), count(AnomalyDuplicate, AnomalySeqMismatch), count(AnomalyOutOfOrder), count(AnomalyGap),
			ch, strings.Join(ph.Notes, "; "))
	}
	b.WriteString("\nTotals: ")
	var parts []string
	for _, k := range []string{AnomalyLost, AnomalyDuplicate, AnomalySeqMismatch, AnomalyOutOfOrder, AnomalyGap, AnomalyUnknownConv, AnomalyCHHole, AnomalyCHDuplicate} {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.res.Count(k)))
	}
	b.WriteString(strings.Join(parts, ", ") + "\n")
	if n := len(r.res.Anomalies); n > 0 {
		fmt.Fprintf(&b, "\nFirst anomalies (of %d):\n\n", n)
		for i, a := range r.res.Anomalies {
			if i == 30 {
				break
			}
			fmt.Fprintf(&b, "- %s %s\n", a.At.UTC().Format("15:04:05.000"), a)
		}
	}
	return b.String()
}

// latencies are the p50, p99 and max from send to ack, of the acked sends
// to groups (or pairs).
func latencies(h History, groups bool) string {
	var d []time.Duration
	for _, s := range h.Sends {
		if s.Acked && strings.HasPrefix(s.Conv, "g") == groups {
			d = append(d, s.AckAt.Sub(s.Start))
		}
	}
	if len(d) == 0 {
		return "none"
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	q := func(f float64) time.Duration { return d[min(len(d)-1, int(f*float64(len(d))))] }
	return fmt.Sprintf("p50 %v, p99 %v, max %v (%d)", q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), len(d))
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func hostLine() string {
	out, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		return runtime.GOOS
	}
	return strings.TrimSpace(string(out))
}

func gitRev() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// dumpHistory writes the history as JSON lines (sends.jsonl,
// deliveries.jsonl, members.json) under dir, for a look after the run.
func dumpHistory(dir string, h History) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	write := func(name string, n int, item func(i int) any) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(f)
		enc := json.NewEncoder(bw)
		for i := 0; i < n; i++ {
			if err := enc.Encode(item(i)); err != nil {
				f.Close()
				return err
			}
		}
		if err := bw.Flush(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := write("sends.jsonl", len(h.Sends), func(i int) any { return h.Sends[i] }); err != nil {
		return err
	}
	if err := write("deliveries.jsonl", len(h.Deliveries), func(i int) any { return h.Deliveries[i] }); err != nil {
		return err
	}
	return write("members.json", 1, func(int) any { return h.Members })
}
