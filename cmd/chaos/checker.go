package main

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// The checker, in the style of Jepsen's queue workload: the history is every
// send (acked or not) and every delivery to every device; the invariants
// are checked after the run, once delivery and projection had time to catch
// up. A send without an ack is "maybe": it may or may not appear, never
// twice.

// Send is one message the workload sent.
type Send struct {
	ID     string
	Sender string
	Conv   string // from the ack (pairs) or known up front (groups)
	Seq    int64  // from the ack; 0 when not acked
	Acked  bool
	Start  time.Time
	AckAt  time.Time
}

// Delivery is one msg event handed to a device by its client (which drops
// a (conv, seq) it already handed over: the dedup of the checker's
// "exactly once after dedup").
type Delivery struct {
	Device string // user/device
	Conv   string
	Seq    int64
	ID     string
	At     time.Time
}

// History is what the checker reads.
type History struct {
	Sends      []Send
	Deliveries []Delivery
	// Members maps a conversation to the devices that must receive every
	// message of it.
	Members map[string][]string
}

// CHRow is one row of messages FINAL for the run's conversations.
type CHRow struct {
	Conv string
	Seq  int64
	ID   string
}

// Anomaly kinds.
const (
	AnomalyLost        = "lost"         // an acked message missing on a member device
	AnomalyDuplicate   = "duplicate"    // a (conv, seq) handed twice to a device, or one id stored at two seqs
	AnomalyOutOfOrder  = "out-of-order" // a device got a lower seq after a higher one in a conversation
	AnomalyGap         = "gap"          // a seq missing inside a conversation's range
	AnomalySeqMismatch = "seq-mismatch" // a device saw an id at another seq than its ack
	AnomalyUnknownConv = "unknown-conv" // an acked send to a conversation without known members
	AnomalyCHHole      = "ch-hole"      // an acked message absent from ClickHouse
	AnomalyCHDuplicate = "ch-duplicate" // an acked message in ClickHouse at two seqs, or another id at its seq
)

// Anomaly is one violation; At is when the send started (the delivery for
// those that have no send), to attribute it to a phase.
type Anomaly struct {
	Kind   string
	Conv   string
	Seq    int64
	ID     string
	Device string
	At     time.Time
	Detail string
}

func (a Anomaly) String() string {
	s := fmt.Sprintf("%s conv=%s seq=%d", a.Kind, a.Conv, a.Seq)
	if a.ID != "" {
		s += " id=" + a.ID
	}
	if a.Device != "" {
		s += " device=" + a.Device
	}
	if a.Detail != "" {
		s += ": " + a.Detail
	}
	return s
}

// Result sums up a check.
type Result struct {
	Acked      int // acked sends
	Maybe      int // sends never acked
	MaybeSeen  int // of those, seen by some device
	Deliveries int
	Anomalies  []Anomaly
	CHChecked  bool
}

// Count is the number of anomalies of kind.
func (r *Result) Count(kind string) int {
	n := 0
	for _, a := range r.Anomalies {
		if a.Kind == kind {
			n++
		}
	}
	return n
}

type convSeq struct {
	conv string
	seq  int64
}

// Check checks h. ch is nil when ClickHouse is not checked; otherwise it
// holds every row of messages FINAL of the run's conversations.
func Check(h History, ch []CHRow) *Result {
	r := &Result{Deliveries: len(h.Deliveries)}
	sends := map[string]*Send{}
	for i := range h.Sends {
		s := &h.Sends[i]
		sends[s.ID] = s
		if s.Acked {
			r.Acked++
		} else {
			r.Maybe++
		}
	}
	at := func(id string, fallback time.Time) time.Time {
		if s, ok := sends[id]; ok {
			return s.Start
		}
		return fallback
	}

	// Per device: what it got, in arrival order, after its client's dedup.
	type devConv struct{ dev, conv string }
	got := map[string]map[convSeq]int{}   // device -> (conv, seq) -> times handed over
	order := map[devConv]int64{}          // highest seq so far per device and conversation
	idSeqs := map[string]map[int64]bool{} // id -> every seq it was seen at
	convSeqs := map[string]map[int64]bool{}
	seenIDs := map[string]bool{}
	for _, d := range h.Deliveries {
		m := got[d.Device]
		if m == nil {
			m = map[convSeq]int{}
			got[d.Device] = m
		}
		k := convSeq{d.Conv, d.Seq}
		m[k]++
		if m[k] == 2 {
			r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyDuplicate, Conv: d.Conv, Seq: d.Seq, ID: d.ID, Device: d.Device, At: at(d.ID, d.At), Detail: "handed to the device twice"})
		}
		if m[k] > 1 {
			continue
		}
		dc := devConv{d.Device, d.Conv}
		if prev, ok := order[dc]; ok && d.Seq < prev {
			r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyOutOfOrder, Conv: d.Conv, Seq: d.Seq, ID: d.ID, Device: d.Device, At: at(d.ID, d.At), Detail: fmt.Sprintf("after seq %d", prev)})
		} else {
			order[dc] = d.Seq
		}
		if d.ID != "" {
			if idSeqs[d.ID] == nil {
				idSeqs[d.ID] = map[int64]bool{}
			}
			idSeqs[d.ID][d.Seq] = true
			seenIDs[d.ID] = true
		}
		if convSeqs[d.Conv] == nil {
			convSeqs[d.Conv] = map[int64]bool{}
		}
		convSeqs[d.Conv][d.Seq] = true
	}

	// Every acked send: one seq, that seq on every member device.
	for i := range h.Sends {
		s := &h.Sends[i]
		if !s.Acked {
			if seenIDs[s.ID] {
				r.MaybeSeen++
			}
			if len(idSeqs[s.ID]) > 1 {
				r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyDuplicate, Conv: s.Conv, ID: s.ID, At: s.Start, Detail: fmt.Sprintf("unacked send stored at seqs %v", keys(idSeqs[s.ID]))})
			}
			continue
		}
		if convSeqs[s.Conv] == nil {
			convSeqs[s.Conv] = map[int64]bool{}
		}
		convSeqs[s.Conv][s.Seq] = true
		for seq := range idSeqs[s.ID] {
			if seq != s.Seq {
				r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalySeqMismatch, Conv: s.Conv, Seq: s.Seq, ID: s.ID, At: s.Start, Detail: fmt.Sprintf("acked at seq %d, delivered at seq %d (stored twice)", s.Seq, seq)})
			}
		}
		members, ok := h.Members[s.Conv]
		if !ok {
			r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyUnknownConv, Conv: s.Conv, Seq: s.Seq, ID: s.ID, At: s.Start})
			continue
		}
		for _, dev := range members {
			if got[dev][convSeq{s.Conv, s.Seq}] == 0 {
				r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyLost, Conv: s.Conv, Seq: s.Seq, ID: s.ID, Device: dev, At: s.Start})
			}
		}
	}

	// No seq gap inside what was seen of a conversation (the events before
	// the devices connected, such as a group's creation, are not seen).
	convs := make([]string, 0, len(convSeqs))
	for c := range convSeqs {
		convs = append(convs, c)
	}
	sort.Strings(convs)
	for _, c := range convs {
		seqs := keys(convSeqs[c])
		for i := 1; i < len(seqs); i++ {
			for missing := seqs[i-1] + 1; missing < seqs[i]; missing++ {
				r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyGap, Conv: c, Seq: missing, At: atSeq(h, c, seqs[i])})
			}
		}
	}

	if ch != nil {
		r.CHChecked = true
		byKey := map[convSeq][]string{}
		byID := map[string][]int64{}
		for _, row := range ch {
			byKey[convSeq{row.Conv, row.Seq}] = append(byKey[convSeq{row.Conv, row.Seq}], row.ID)
			byID[row.ID] = append(byID[row.ID], row.Seq)
		}
		for i := range h.Sends {
			s := &h.Sends[i]
			if !s.Acked {
				if len(byID[s.ID]) > 1 {
					r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyCHDuplicate, Conv: s.Conv, ID: s.ID, At: s.Start, Detail: fmt.Sprintf("unacked send in ClickHouse at seqs %v", byID[s.ID])})
				}
				continue
			}
			ids := byKey[convSeq{s.Conv, s.Seq}]
			switch {
			case len(ids) == 0:
				r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyCHHole, Conv: s.Conv, Seq: s.Seq, ID: s.ID, At: s.Start})
			case len(ids) > 1 || ids[0] != s.ID:
				r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyCHDuplicate, Conv: s.Conv, Seq: s.Seq, ID: s.ID, At: s.Start, Detail: fmt.Sprintf("ClickHouse has ids %v at this seq", ids)})
			case len(byID[s.ID]) > 1:
				r.Anomalies = append(r.Anomalies, Anomaly{Kind: AnomalyCHDuplicate, Conv: s.Conv, Seq: s.Seq, ID: s.ID, At: s.Start, Detail: fmt.Sprintf("in ClickHouse at seqs %v", byID[s.ID])})
			}
		}
	}
	sort.SliceStable(r.Anomalies, func(i, j int) bool { return r.Anomalies[i].At.Before(r.Anomalies[j].At) })
	return r
}

// atSeq is the start of the send acked at (conv, seq), or the first
// delivery of it: when a gap before it appeared.
func atSeq(h History, conv string, seq int64) time.Time {
	for _, s := range h.Sends {
		if s.Acked && s.Conv == conv && s.Seq == seq {
			return s.Start
		}
	}
	for _, d := range h.Deliveries {
		if d.Conv == conv && d.Seq == seq {
			return d.At
		}
	}
	return time.Time{}
}

func keys(m map[int64]bool) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Unavailability is the longest stretch in [from, to] without an event of
// times (sorted): from the fault's start to the first event, between two
// events, or from the last event to the end.
func Unavailability(times []time.Time, from, to time.Time) time.Duration {
	last := from
	var worst time.Duration
	i := sort.Search(len(times), func(i int) bool { return !times[i].Before(from) })
	for ; i < len(times) && !times[i].After(to); i++ {
		worst = max(worst, times[i].Sub(last))
		last = times[i]
	}
	return max(worst, to.Sub(last))
}

// AllMoving is how long after from every sender was moving again: for each
// sender, the end of its last stretch in [from, to] longer than its stall
// without an ack (to itself when it had none since); the latest of them,
// minus from. Zero when no sender stalled.
func AllMoving(bySender map[string][]time.Time, from, to time.Time, stalls map[string]time.Duration) time.Duration {
	var worst time.Duration
	for sender, times := range bySender {
		stall := stalls[sender]
		last := from
		end := from
		i := sort.Search(len(times), func(i int) bool { return !times[i].Before(from) })
		for ; i < len(times) && !times[i].After(to); i++ {
			if times[i].Sub(last) > stall {
				end = times[i]
			}
			last = times[i]
		}
		if to.Sub(last) > stall {
			end = to
		}
		worst = max(worst, end.Sub(from))
	}
	return worst
}
