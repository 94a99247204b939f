package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (`getconf CLK_TCK`; 100 on every Linux this runs on).
const clockTicks = 100

// procSample is what /proc says of one process at one moment.
type procSample struct {
	RSS int64   // bytes (VmRSS)
	CPU float64 // seconds of user + system time
	Sys float64 // seconds of system time (in the kernel: system calls, the network stack)
	At  time.Time
	OK  bool
}

func sampleProc(pid int) procSample {
	s := procSample{At: time.Now()}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		str := string(b)
		if i := strings.LastIndexByte(str, ')'); i > 0 {
			f := strings.Fields(str[i+1:])
			// f[0] is field 3 (state); utime and stime are fields 14 and 15.
			if len(f) > 12 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				s.CPU = (ut + st) / clockTicks
				s.Sys = st / clockTicks
				s.OK = true
			}
		}
	}
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "VmRSS:") {
				fs := strings.Fields(line)
				if len(fs) >= 2 {
					kb, _ := strconv.ParseInt(fs[1], 10, 64)
					s.RSS = kb * 1024
				}
				break
			}
		}
		f.Close()
	}
	return s
}

// watched is a process whose memory and CPU a scenario reports.
type watched struct {
	Name     string // e.g. "all", "edge-1", "nats", "worker-0"
	Pid      int
	Metrics  string // http://host:port/metrics, or ""
	Platform bool   // part of the platform (else load generator or shared)
	Shared   bool   // not ours alone (the ClickHouse server)
}

// procSnap is one sample of a set of processes, plus the Go runtime and
// messenger metrics scraped from /metrics where a process serves them.
type procSnap map[string]procPoint

type procPoint struct {
	procSample
	Heap       float64 // go_memstats_heap_inuse_bytes
	Stack      float64 // go_memstats_stack_inuse_bytes
	Goroutines float64 // go_goroutines
	Counters   map[string]float64
}

// scraped are the metrics read from each platform process (summed over
// label sets): the runtime's, and the platform's own counters of the work
// behind each message, so that a figure can say what it is made of.
var scraped = []string{
	"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines",
	"go_memstats_alloc_bytes_total", "go_gc_duration_seconds_count",
	"messenger_edge_sends_total", "messenger_edge_frames_delivered_total", "messenger_edge_replays_total",
	"messenger_edge_live_gaps_total", "messenger_edge_seq_conflicts_total", "messenger_edge_slow_reader_closes_total",
	"messenger_edge_connects_total",
	"messenger_fanout_events_total", "messenger_fanout_queue_writes_total", "messenger_fanout_queue_writes_skipped_total",
	"messenger_fanout_queue_conflicts_total", "messenger_fanout_queue_retries_total", "messenger_fanout_summary_writes_total",
	"messenger_projector_events_total",
	"messenger_nats_in_msgs_total", "messenger_nats_out_msgs_total", "messenger_jetstream_stored_msgs_total",
	"messenger_fanout_queue_write_seconds_sum", "messenger_fanout_queue_write_seconds_count",
}

// boxKey holds, in a procSnap, the busy CPU time of the whole machine
// (/proc/stat), so that the CPU of processes the bench does not know
// (other people's work on a shared box) shows as noise.
const boxKey = "_box"

func boxBusy() procSample {
	s := procSample{At: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return s
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	s.CPU, s.OK = busy/clockTicks, true
	return s
}

func snapshot(ps []watched, scrape bool) procSnap {
	out := procSnap{boxKey: {procSample: boxBusy()}}
	for _, p := range ps {
		pt := procPoint{procSample: sampleProc(p.Pid)}
		if scrape && p.Metrics != "" {
			m := scrapeMetrics(p.Metrics, scraped)
			pt.Heap, pt.Stack, pt.Goroutines = m["go_memstats_heap_inuse_bytes"], m["go_memstats_stack_inuse_bytes"], m["go_goroutines"]
			pt.Counters = m
		}
		out[p.Name] = pt
	}
	return out
}

var metricsClient = &http.Client{Timeout: 3 * time.Second}

// scrapeMetrics reads a Prometheus text endpoint and sums, per wanted
// metric name, the samples of all its label sets.
func scrapeMetrics(url string, names []string) map[string]float64 {
	out := map[string]float64{}
	resp, err := metricsClient.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 || !want[line[:end]] {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:end]] += v
		}
	}
	return out
}

// machine is the box the figures come from.
type machine struct {
	Cores    int    `json:"cores"`
	MemBytes int64  `json:"mem_bytes"`
	CPU      string `json:"cpu"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Date     string `json:"date"`
}

func machineFacts() machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC().Format("2006-01-02 15:04 UTC")}
	if out, err := exec.Command("nproc").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
			m.Cores = n
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				f := strings.Fields(line)
				if len(f) >= 2 {
					kb, _ := strconv.ParseInt(f[1], 10, 64)
					m.MemBytes = kb * 1024
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if _, v, ok := strings.Cut(line, ":"); ok {
					m.CPU = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
