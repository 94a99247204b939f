package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// report is everything one invocation measured.
type report struct {
	Machine  machine   `json:"machine"`
	Command  string    `json:"command"`
	Platform string    `json:"platform"`
	Results  []*result `json:"results"`
}

// result is one scenario's figures.
type result struct {
	Scenario  string         `json:"scenario"`
	Command   string         `json:"command"`
	Start     string         `json:"start"`
	Date      string         `json:"date"`
	Seconds   float64        `json:"seconds"`
	Error     string         `json:"error,omitempty"`
	Figures   []figure       `json:"figures"`
	Targets   []target       `json:"targets,omitempty"`
	Processes []procFigure   `json:"processes,omitempty"`
	Steps     []stepFigure   `json:"steps,omitempty"`
	Notes     []string       `json:"notes,omitempty"`
	Extra     map[string]any `json:"extra,omitempty"`
}

// figure is one measured value. Unit is one of: count, per_s, ms, us,
// bytes, s, pct, text (Text then holds it).
type figure struct {
	Key   string  `json:"key"`
	Label string  `json:"label"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Text  string  `json:"text,omitempty"`
}

type target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// procFigure is the memory and CPU of one process over a scenario's window.
type procFigure struct {
	Name             string             `json:"name"`
	Pid              int                `json:"pid"`
	Role             string             `json:"role"` // platform, load, shared
	RSSBefore        int64              `json:"rss_before"`
	RSSAfter         int64              `json:"rss_after"`
	CPUSeconds       float64            `json:"cpu_seconds"`
	SysSeconds       float64            `json:"sys_seconds"` // of CPUSeconds, in the kernel
	CPUPct           float64            `json:"cpu_pct"`     // of one core, over the window
	HeapBefore       float64            `json:"heap_inuse_before,omitempty"`
	HeapAfter        float64            `json:"heap_inuse_after,omitempty"`
	StackAfter       float64            `json:"stack_inuse_after,omitempty"`
	StackBefore      float64            `json:"stack_inuse_before,omitempty"`
	GoroutinesBefore float64            `json:"goroutines_before,omitempty"`
	GoroutinesAfter  float64            `json:"goroutines_after,omitempty"`
	AllocBytes       float64            `json:"alloc_bytes,omitempty"` // allocated by the Go runtime in the window
	GCs              float64            `json:"gcs,omitempty"`
	Counters         map[string]float64 `json:"counters,omitempty"` // deltas of the scraped metrics
}

// stepFigure is one rate step of the max scenario.
type stepFigure struct {
	Rate        float64          `json:"rate"`
	DeliveredPS float64          `json:"delivered_per_s"`
	Sent        int64            `json:"sent"`
	Acked       int64            `json:"acked"`
	Delivered   int64            `json:"delivered"`
	Lost        int64            `json:"lost"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	Retries     map[string]int64 `json:"retries,omitempty"`
	AckP50      float64          `json:"ack_p50_ms"`
	AckP99      float64          `json:"ack_p99_ms"`
	E2EP50      float64          `json:"e2e_p50_ms"`
	E2EP99      float64          `json:"e2e_p99_ms"`
	E2EP999     float64          `json:"e2e_p999_ms"`
	E2EMax      float64          `json:"e2e_max_ms"`
	PlatformCPU float64          `json:"platform_cpu_us_per_msg"`
	LoadCPU     float64          `json:"load_cpu_us_per_msg"`
	MarginalCPU float64          `json:"platform_marginal_cpu_us_per_msg"`
	OtherCPU    float64          `json:"other_cpu_pct"`
	Pass        bool             `json:"pass"`
}

func (r *result) add(key, label string, v float64, unit string) {
	r.Figures = append(r.Figures, figure{Key: key, Label: label, Value: v, Unit: unit})
}

func (r *result) addText(key, label, text string) {
	r.Figures = append(r.Figures, figure{Key: key, Label: label, Unit: "text", Text: text})
}

func (r *result) target(name, want, got string, met bool) {
	r.Targets = append(r.Targets, target{Name: name, Want: want, Got: got, Met: met})
}

func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// procFigures compares two snapshots of the watched processes.
func procFigures(ps []watched, before, after procSnap) []procFigure {
	var out []procFigure
	for _, p := range ps {
		b, a := before[p.Name], after[p.Name]
		role := "load"
		switch {
		case p.Shared:
			role = "shared"
		case p.Platform:
			role = "platform"
		}
		f := procFigure{Name: p.Name, Pid: p.Pid, Role: role, RSSBefore: b.RSS, RSSAfter: a.RSS,
			HeapBefore: b.Heap, HeapAfter: a.Heap, StackBefore: b.Stack, StackAfter: a.Stack,
			GoroutinesBefore: b.Goroutines, GoroutinesAfter: a.Goroutines}
		if a.Counters != nil && b.Counters != nil {
			f.Counters = map[string]float64{}
			for k, v := range a.Counters {
				f.Counters[k] = v - b.Counters[k]
			}
			f.AllocBytes = f.Counters["go_memstats_alloc_bytes_total"]
			f.GCs = f.Counters["go_gc_duration_seconds_count"]
		}
		if b.OK && a.OK {
			f.CPUSeconds = a.CPU - b.CPU
			f.SysSeconds = a.Sys - b.Sys
			if d := a.At.Sub(b.At).Seconds(); d > 0 {
				f.CPUPct = 100 * f.CPUSeconds / d
			}
		}
		out = append(out, f)
	}
	return out
}

// otherCPU is the CPU (in cores) the machine spent outside the watched
// processes between two snapshots: other people's work, the kernel.
func otherCPU(before, after procSnap, fs []procFigure) float64 {
	b, a := before[boxKey], after[boxKey]
	d := a.At.Sub(b.At).Seconds()
	if !b.OK || !a.OK || d <= 0 {
		return 0
	}
	var ours float64
	for _, f := range fs {
		ours += f.CPUSeconds
	}
	return max(0, (a.CPU-b.CPU-ours)/d)
}

// sumCPU adds the CPU seconds of the processes of one role.
func sumCPU(fs []procFigure, role string) float64 {
	var s float64
	for _, f := range fs {
		if f.Role == role {
			s += f.CPUSeconds
		}
	}
	return s
}

// counterSum adds a scraped counter's delta over the platform processes.
func counterSum(fs []procFigure, name string) float64 {
	var s float64
	for _, f := range fs {
		if f.Role == "platform" {
			s += f.Counters[name]
		}
	}
	return s
}

// --- output ---

func printJSON(w io.Writer, rep *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sanitize(rep))
}

// sanitize replaces NaN and Inf (not valid JSON) with -1.
func sanitize(rep *report) *report {
	for _, r := range rep.Results {
		for i := range r.Figures {
			if math.IsNaN(r.Figures[i].Value) || math.IsInf(r.Figures[i].Value, 0) {
				r.Figures[i].Value = -1
			}
		}
		for i := range r.Steps {
			s := &r.Steps[i]
			for _, p := range []*float64{&s.AckP50, &s.AckP99, &s.E2EP50, &s.E2EP99, &s.E2EP999, &s.E2EMax, &s.PlatformCPU, &s.LoadCPU, &s.DeliveredPS} {
				if math.IsNaN(*p) || math.IsInf(*p, 0) {
					*p = -1
				}
			}
		}
	}
	return rep
}

var printedHeader bool

func printResult(w io.Writer, rep *report, r *result) {
	if !printedHeader {
		m := rep.Machine
		fmt.Fprintf(w, "machine: %d cores (%s), %s memory, kernel %s, %s; %s\nplatform: %s\n", m.Cores, m.CPU, fmtBytes(float64(m.MemBytes)), m.Kernel, m.Go, m.Date, rep.Platform)
		printedHeader = true
	}
	fmt.Fprintf(w, "\n== %s  (--start %s, %.0f s)\n", r.Scenario, r.Start, r.Seconds)
	fmt.Fprintf(w, "   %s\n", r.Command)
	if r.Error != "" {
		fmt.Fprintf(w, "   ERROR: %s\n", r.Error)
	}
	tw := &table{}
	var long []figure
	for _, f := range r.Figures {
		if f.Unit == "text" && len(f.Text) > 40 {
			long = append(long, f)
			continue
		}
		tw.row(f.Label, fmtValue(f))
	}
	tw.print(w, "   ")
	for _, f := range long {
		fmt.Fprintf(w, "   %s: %s\n", f.Label, f.Text)
	}
	if len(r.Steps) > 0 {
		fmt.Fprintln(w)
		st := &table{}
		st.row("rate/s", "delivered/s", "sent", "lost", "errors", "retried", "ack p99", "e2e p50", "e2e p99", "e2e p99.9", "e2e max", "platform µs/msg", "load µs/msg", "others' CPU", "pass")
		for _, s := range r.Steps {
			st.row(fmtNum(s.Rate), fmtNum(s.DeliveredPS), fmtNum(float64(s.Sent)), fmtNum(float64(s.Lost)), fmtErrors(s.Errors), fmtErrors(s.Retries),
				fmtMs(s.AckP99), fmtMs(s.E2EP50), fmtMs(s.E2EP99), fmtMs(s.E2EP999), fmtMs(s.E2EMax),
				fmt.Sprintf("%.0f", s.PlatformCPU), fmt.Sprintf("%.0f", s.LoadCPU), fmt.Sprintf("%.0f %%", s.OtherCPU), map[bool]string{true: "yes", false: "no"}[s.Pass])
		}
		st.print(w, "   ")
	}
	if len(r.Processes) > 0 {
		fmt.Fprintln(w)
		pt := &table{}
		pt.row("process", "pid", "role", "rss before", "rss after", "cpu s", "cpu %", "goroutines", "heap after", "stacks after", "allocated", "GCs")
		for _, p := range r.Processes {
			gr, heap, stack, alloc, gcs := "", "", "", "", ""
			if p.GoroutinesAfter > 0 {
				gr = fmt.Sprintf("%.0f → %.0f", p.GoroutinesBefore, p.GoroutinesAfter)
				heap = fmtBytes(p.HeapAfter)
				stack = fmtBytes(p.StackAfter)
				alloc = fmtBytes(p.AllocBytes)
				gcs = fmt.Sprintf("%.0f", p.GCs)
			}
			pt.row(p.Name, fmt.Sprint(p.Pid), p.Role, fmtBytes(float64(p.RSSBefore)), fmtBytes(float64(p.RSSAfter)),
				fmt.Sprintf("%.1f", p.CPUSeconds), fmt.Sprintf("%.0f", p.CPUPct), gr, heap, stack, alloc, gcs)
		}
		pt.print(w, "   ")
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w)
		tt := &table{}
		tt.row("target", "want", "got", "met")
		for _, t := range r.Targets {
			tt.row(t.Name, t.Want, t.Got, map[bool]string{true: "yes", false: "NO"}[t.Met])
		}
		tt.print(w, "   ")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
}

type table struct{ rows [][]string }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer, indent string) {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range r {
			pad := widths[i] - len([]rune(c))
			if i == 0 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString("  " + strings.Repeat(" ", pad) + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func fmtValue(f figure) string {
	switch f.Unit {
	case "text":
		return f.Text
	case "count":
		return fmtNum(f.Value)
	case "per_s":
		return fmtNum(f.Value) + " /s"
	case "ms":
		return fmtMs(f.Value)
	case "us":
		return fmt.Sprintf("%.1f µs", f.Value)
	case "bytes":
		return fmtBytes(f.Value)
	case "s":
		return fmt.Sprintf("%.2f s", f.Value)
	case "x":
		return fmt.Sprintf("%.3f", f.Value)
	case "pct":
		return fmt.Sprintf("%.1f %%", f.Value)
	}
	return fmt.Sprintf("%g %s", f.Value, f.Unit)
}

func fmtMs(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// fmtNum prints an integer-ish value with thousands separators.
func fmtNum(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	neg := v < 0
	n := int64(math.Round(math.Abs(v)))
	s := fmt.Sprint(n)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func fmtBytes(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case a >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case a >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

func fmtErrors(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, ",")
}

// --- progress line ---

// progress redraws one status line on stderr (every 500 ms on a terminal,
// every 10 s otherwise) from the function the running scenario sets.
type progress struct {
	mu     sync.Mutex
	fn     func() string
	name   string
	start  time.Time
	total  time.Duration
	tty    bool
	drawn  bool
	stopCh chan struct{}
	last   time.Time
}

func newProgress() *progress {
	p := &progress{stopCh: make(chan struct{})}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		p.tty = true
	}
	go p.loop()
	return p
}

// set starts a phase: name, expected length (0: unknown) and the status function.
func (p *progress) set(name string, total time.Duration, fn func() string) {
	p.mu.Lock()
	p.name, p.total, p.fn, p.start = name, total, fn, time.Now()
	p.mu.Unlock()
}

func (p *progress) loop() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stopCh:
			return
		case <-t.C:
		}
		p.mu.Lock()
		fn, name, start, total := p.fn, p.name, p.start, p.total
		p.mu.Unlock()
		if fn == nil {
			continue
		}
		status := fn()
		if !p.tty && time.Since(p.last) < 10*time.Second {
			continue
		}
		el := time.Since(start).Truncate(time.Second)
		line := fmt.Sprintf("[%s] %v", name, el)
		if total > 0 {
			frac := min(1, float64(time.Since(start))/float64(total))
			const width = 20
			n := int(frac * width)
			line = fmt.Sprintf("[%s] [%s%s] %v/%v", name, strings.Repeat("#", n), strings.Repeat(".", width-n), el, total.Truncate(time.Second))
		}
		line += "  " + status
		p.mu.Lock()
		p.last = time.Now()
		if p.tty {
			fmt.Fprintf(os.Stderr, "\r\033[K%s", line)
			p.drawn = true
		} else {
			fmt.Fprintln(os.Stderr, line)
		}
		p.mu.Unlock()
	}
}

// printf writes a line above the progress line.
func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(os.Stderr, "\r\033[K")
		p.drawn = false
	}
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// clear removes the line and forgets the phase.
func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fn = nil
	if p.drawn {
		fmt.Fprint(os.Stderr, "\r\033[K")
		p.drawn = false
	}
}

func (p *progress) stop() {
	p.clear()
	select {
	case <-p.stopCh:
	default:
		close(p.stopCh)
	}
}
