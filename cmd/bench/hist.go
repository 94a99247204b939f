package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// A hist is a log-linear latency histogram in microseconds: exact below
// 128 µs, then 64 buckets per power of two (about 1.6 % wide), up to hours.
// Record is lock-free; a snapshot (histData) travels between processes as
// JSON and merges by adding counts.
type hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64 // ns
}

const (
	histSub     = 64
	histLinear  = 2 * histSub // values below this are their own bucket
	histBuckets = histLinear + 40*histSub
)

func bucketOf(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	e := bits.Len64(us) - 7 // us>>e is in [64, 127]
	i := histLinear + (e-1)*histSub + int(us>>uint(e)) - histSub
	return min(i, histBuckets-1)
}

// bucketRange is the [lo, hi) of bucket i in µs.
func bucketRange(i int) (lo, hi float64) {
	if i < histLinear {
		return float64(i), float64(i + 1)
	}
	e := (i-histLinear)/histSub + 1
	sub := (i-histLinear)%histSub + histSub
	return float64(uint64(sub) << uint(e)), float64(uint64(sub+1) << uint(e))
}

// Record adds one latency.
func (h *hist) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// histData is a histogram snapshot: sparse [bucket, count] pairs.
type histData struct {
	B   [][2]uint64 `json:"b"`
	N   uint64      `json:"n"`
	Max int64       `json:"max_ns"`
}

func (h *hist) Snapshot() histData {
	d := histData{N: h.n.Load(), Max: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			d.B = append(d.B, [2]uint64{uint64(i), c})
		}
	}
	return d
}

// merged adds the snapshots together.
func merged(ds ...histData) histData {
	var counts [histBuckets]uint64
	var out histData
	for _, d := range ds {
		for _, b := range d.B {
			if b[0] < histBuckets {
				counts[b[0]] += b[1]
			}
		}
		out.N += d.N
		out.Max = max(out.Max, d.Max)
	}
	for i, c := range counts {
		if c > 0 {
			out.B = append(out.B, [2]uint64{uint64(i), c})
		}
	}
	return out
}

// Quantile returns the q-quantile (0 < q <= 1) in ms, interpolated inside
// its bucket and never above the recorded maximum; NaN when empty.
func (d histData) Quantile(q float64) float64 {
	if d.N == 0 {
		return math.NaN()
	}
	rank := q * float64(d.N)
	var cum float64
	for _, b := range d.B {
		c := float64(b[1])
		if cum+c >= rank {
			lo, hi := bucketRange(int(b[0]))
			v := lo + (hi-lo)*(rank-cum)/c
			return min(v/1000, d.MaxMs())
		}
		cum += c
	}
	return d.MaxMs()
}

// MaxMs is the largest recorded value in ms.
func (d histData) MaxMs() float64 { return float64(d.Max) / 1e6 }
