package main

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)

func sec(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// clean is a history without anomaly: conversation c with devices a/1, a/2,
// b/1, b/2; three acked sends; one unacked send never seen.
func clean() History {
	h := History{Members: map[string][]string{"c": {"a/1", "a/2", "b/1", "b/2"}}}
	for i, id := range []string{"m1", "m2", "m3"} {
		h.Sends = append(h.Sends, Send{ID: id, Sender: "a", Conv: "c", Seq: int64(i + 1), Acked: true, Start: sec(float64(i)), AckAt: sec(float64(i) + 0.1)})
	}
	h.Sends = append(h.Sends, Send{ID: "m4", Sender: "a", Conv: "c", Start: sec(3)})
	for _, dev := range h.Members["c"] {
		for i, id := range []string{"m1", "m2", "m3"} {
			h.Deliveries = append(h.Deliveries, Delivery{Device: dev, Conv: "c", Seq: int64(i + 1), ID: id, At: sec(float64(i) + 0.2)})
		}
	}
	return h
}

func cleanCH() []CHRow {
	return []CHRow{{"c", 1, "m1"}, {"c", 2, "m2"}, {"c", 3, "m3"}}
}

func TestCheckerClean(t *testing.T) {
	r := Check(clean(), cleanCH())
	if len(r.Anomalies) != 0 {
		t.Fatalf("anomalies in a clean history: %v", r.Anomalies)
	}
	if r.Acked != 3 || r.Maybe != 1 || r.MaybeSeen != 0 || !r.CHChecked {
		t.Fatalf("counts: %+v", r)
	}
}

func TestCheckerFlags(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(h *History, ch *[]CHRow)
		kind   string
		want   int
	}{
		{"loss on one device", func(h *History, _ *[]CHRow) {
			// b/2 never gets m2 (seq 2); the others do, so no conversation gap.
			out := h.Deliveries[:0]
			for _, d := range h.Deliveries {
				if !(d.Device == "b/2" && d.ID == "m2") {
					out = append(out, d)
				}
			}
			h.Deliveries = out
		}, AnomalyLost, 1},
		{"loss on every device", func(h *History, _ *[]CHRow) {
			h.Sends[1].Acked, h.Sends[1].Seq = true, 2
			out := h.Deliveries[:0]
			for _, d := range h.Deliveries {
				if d.ID != "m2" {
					out = append(out, d)
				}
			}
			h.Deliveries = out
		}, AnomalyLost, 4},
		{"duplicate delivery", func(h *History, _ *[]CHRow) {
			h.Deliveries = append(h.Deliveries, Delivery{Device: "a/2", Conv: "c", Seq: 3, ID: "m3", At: sec(5)})
		}, AnomalyDuplicate, 1},
		{"unacked send stored twice", func(h *History, _ *[]CHRow) {
			h.Deliveries = append(h.Deliveries,
				Delivery{Device: "a/1", Conv: "c", Seq: 4, ID: "m4", At: sec(6)},
				Delivery{Device: "a/1", Conv: "c", Seq: 5, ID: "m4", At: sec(7)})
		}, AnomalyDuplicate, 1},
		{"acked send stored twice", func(h *History, _ *[]CHRow) {
			h.Deliveries = append(h.Deliveries, Delivery{Device: "b/1", Conv: "c", Seq: 4, ID: "m1", At: sec(6)})
		}, AnomalySeqMismatch, 1},
		{"reorder", func(h *History, _ *[]CHRow) {
			// a/1 gets seq 3 before seq 2.
			for i, d := range h.Deliveries {
				if d.Device == "a/1" && d.Seq == 2 {
					h.Deliveries[i], h.Deliveries[i+1] = h.Deliveries[i+1], h.Deliveries[i]
					break
				}
			}
		}, AnomalyOutOfOrder, 1},
		{"seq gap", func(h *History, _ *[]CHRow) {
			// Everyone gets seq 5 (someone else's send) after 3: seq 4 is a hole.
			for _, dev := range h.Members["c"] {
				h.Deliveries = append(h.Deliveries, Delivery{Device: dev, Conv: "c", Seq: 5, ID: "x5", At: sec(8)})
			}
		}, AnomalyGap, 1},
		{"unknown conversation", func(h *History, _ *[]CHRow) {
			h.Sends = append(h.Sends, Send{ID: "z", Conv: "elsewhere", Seq: 1, Acked: true, Start: sec(1)})
		}, AnomalyUnknownConv, 1},
		{"ClickHouse hole", func(_ *History, ch *[]CHRow) { *ch = (*ch)[:2] }, AnomalyCHHole, 1},
		{"ClickHouse duplicate", func(_ *History, ch *[]CHRow) { *ch = append(*ch, CHRow{"c", 7, "m2"}) }, AnomalyCHDuplicate, 1},
		{"ClickHouse wrong id", func(_ *History, ch *[]CHRow) { (*ch)[0].ID = "other" }, AnomalyCHDuplicate, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, ch := clean(), cleanCH()
			tc.mutate(&h, &ch)
			r := Check(h, ch)
			if got := r.Count(tc.kind); got != tc.want {
				t.Fatalf("%s: %d, want %d; all: %v", tc.kind, got, tc.want, r.Anomalies)
			}
		})
	}
}

func TestUnavailability(t *testing.T) {
	acks := []time.Time{sec(0), sec(1), sec(2), sec(9), sec(10), sec(11)}
	if got := Unavailability(acks, sec(2.5), sec(12)); got != 6500*time.Millisecond {
		t.Fatalf("Unavailability = %v, want 6.5s", got)
	}
	if got := Unavailability(acks, sec(11), sec(20)); got != 9*time.Second {
		t.Fatalf("Unavailability to the end = %v, want 9s", got)
	}
	by := map[string][]time.Time{
		"fast": {sec(1), sec(2), sec(3), sec(4), sec(5), sec(6), sec(7), sec(8), sec(9), sec(10)},
		"slow": {sec(1), sec(7), sec(8), sec(9), sec(10)},
	}
	if got := AllMoving(by, sec(0.5), sec(10), map[string]time.Duration{"fast": 2 * time.Second, "slow": 2 * time.Second, "stuck": 2 * time.Second}); got != 6500*time.Millisecond {
		t.Fatalf("AllMoving = %v, want 6.5s", got)
	}
	if got := AllMoving(map[string][]time.Time{"fast": by["fast"]}, sec(0.5), sec(10), map[string]time.Duration{"fast": 2 * time.Second}); got != 0 {
		t.Fatalf("AllMoving without a stall = %v, want 0", got)
	}
	by["stuck"] = []time.Time{sec(1)}
	if got := AllMoving(by, sec(0.5), sec(10), map[string]time.Duration{"fast": 2 * time.Second, "slow": 2 * time.Second, "stuck": 2 * time.Second}); got != 9500*time.Millisecond {
		t.Fatalf("AllMoving with a stuck sender = %v, want 9.5s (to the end)", got)
	}
}
