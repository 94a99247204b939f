package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"messenger/client"
	"messenger/edge/auth"
)

// The bench spreads its users over worker processes (`bench worker`, the
// same binary), each with its own open-file limit and its own source
// address 127.0.0.(2+i) for every connection it dials, raw or Go client.
// The coordinator talks to a worker over its stdin and stdout, one JSON
// object per line:
//
//	request  {"id": 7, "op": "send", "args": {...}}
//	reply    {"id": 7, "data": {...}}  or  {"id": 7, "error": "..."}
//
// Requests run concurrently (progress polls while a send runs).

type request struct {
	ID   int64           `json:"id"`
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

type reply struct {
	ID    int64           `json:"id"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error string          `json:"error,omitempty"`
}

// userSpec is one user a worker connects: its name and edge.
type userSpec struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

type connectArgs struct {
	Users       []userSpec  `json:"users"`
	Concurrency int         `json:"concurrency"`
	Raw         bool        `json:"raw"`         // bare gws connections (rawConn), else the client package
	Receipts    receiptMode `json:"receipts"`    // delivered receipts: none, each, throttled (as the Go client)
	Record      bool        `json:"record"`      // raw: keep (seq, time) of every msg
	PerMessage  bool        `json:"per_message"` // count each message's arrivals by conv and seq, own copies included (group)
}

type connectReply struct {
	Connected int              `json:"connected"`
	Failed    int              `json:"failed"`
	Errors    map[string]int64 `json:"errors,omitempty"`
	StartNs   int64            `json:"start_ns"`
	DoneNs    int64            `json:"done_ns"`
}

// sendArgs: an open-loop schedule. Send k is due at T0 + Offset + k/Rate
// and goes along Routes[k % len(Routes)]; its text carries Tag and the due
// time, so that the recipient measures from the schedule, not from when the
// send actually left (a stall is not hidden).
type sendArgs struct {
	Tag      string      `json:"tag"`
	T0       int64       `json:"t0"`
	Offset   int64       `json:"offset"`
	Rate     float64     `json:"rate"`
	Count    int         `json:"count"`
	Routes   [][2]string `json:"routes"`  // from, to
	ToConv   bool        `json:"to_conv"` // Routes[k][1] is a conversation (a group), not a user
	TextSize int         `json:"text_size"`
	Timeout  int64       `json:"timeout"`  // per send, ns
	LogAcks  bool        `json:"log_acks"` // Go client senders only
	// Fresh: every send opens a conversation. The users are FreshPrefix+i for
	// i in [0, FreshUsers); Routes[k][1] is ignored, and the j-th send of user
	// i goes to user (i+j) mod FreshUsers (j from 1 to (FreshUsers-1)/2, over
	// all the runs of a worker): no two sends share a pair of users, in
	// either direction.
	FreshUsers  int    `json:"fresh_users,omitempty"`
	FreshPrefix string `json:"fresh_prefix,omitempty"`
}

type sendReply struct {
	Sent  int64 `json:"sent"`
	Acked int64 `json:"acked"`
}

type dropArgs struct {
	At       int64 `json:"at"`
	Spread   int64 `json:"spread"`
	Deadline int64 `json:"deadline"`
}

type progressReply struct {
	RawUp      int64 `json:"raw_up"`
	RawMsgs    int64 `json:"raw_msgs"`
	Clients    int64 `json:"clients"`
	Sent       int64 `json:"sent"`
	Acked      int64 `json:"acked"`
	Delivered  int64 `json:"delivered"`
	Errors     int64 `json:"errors"`
	Reconnects int64 `json:"reconnects"`
}

// tagStats are the counters and latencies of one tagged run.
type tagStats struct {
	sent, acked, delivered, receipts atomic.Int64
	failed, gaps, dups               atomic.Int64 // raw users see gaps and duplicates (per conversation)
	lastDelivery                     atomic.Int64
	ack, e2e                         hist
	mu                               sync.Mutex
	errs                             map[string]int64
	msgs                             map[string]*msgArrivals // PerMessage users: by conv/seq
}

// msgArrivals is what one worker saw of one message: its due time, how
// many of the worker's users received it and when the latest did.
type msgArrivals struct{ due, n, latest int64 }

// arrived records one user's copy of message conv/seq.
func (st *tagStats) arrived(conv string, seq, due, now int64) {
	key := conv + "/" + strconv.FormatInt(seq, 10)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.msgs == nil {
		st.msgs = map[string]*msgArrivals{}
	}
	m := st.msgs[key]
	if m == nil {
		m = &msgArrivals{due: due}
		st.msgs[key] = m
	}
	m.n++
	m.latest = max(m.latest, now)
}

type statsReply struct {
	Sent         int64            `json:"sent"`
	Acked        int64            `json:"acked"`
	Delivered    int64            `json:"delivered"`
	Receipts     int64            `json:"receipts"`
	Gaps         int64            `json:"gaps"`
	Dups         int64            `json:"dups"`
	LastDelivery int64            `json:"last_delivery"`
	Errors       map[string]int64 `json:"errors,omitempty"`
	Retries      map[string]int64 `json:"retries,omitempty"`
	Disconnects  int64            `json:"disconnects"`
	Ack          histData         `json:"ack"`
	E2E          histData         `json:"e2e"`
	// PerMsg: conv/seq -> due, arrivals at this worker's users, latest
	// arrival (unix ns); only for PerMessage users.
	PerMsg map[string][3]int64 `json:"per_msg,omitempty"`
}

// ackLog is one acked message of a logged send: recipient, seq, ack time.
type ackLog struct {
	To  string `json:"to"`
	Seq int64  `json:"seq"`
	At  int64  `json:"at"`
}

type rawReportReply struct {
	Users []rawReport `json:"users"`
	Acks  []ackLog    `json:"acks"`
}

// worker is the state of one worker process.
type worker struct {
	idx    int
	src    net.IP
	dialer *net.Dialer // from src; shared by every connection of the worker
	signer *auth.Signer
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	clients map[string]*client.Client
	raws    []*rawConn
	rawBy   map[string]*rawConn
	fresh   map[string]int // fresh sends made by each user
	stats   map[string]*tagStats
	acks    []ackLog
	retries map[string]int64

	rawUp, rawMsgs, nClients, sent, acked, delivered, errs, reconnects, disconnects atomic.Int64

	out   *json.Encoder
	outMu sync.Mutex
}

// workerMain is `bench worker`: it serves requests until stdin ends.
func workerMain() error {
	idx, _ := strconv.Atoi(os.Getenv("BENCH_WORKER_INDEX"))
	signer, err := auth.NewHS256Signer([]byte(os.Getenv("BENCH_WORKER_SECRET")))
	if err != nil {
		return err
	}
	raiseNoFile()
	if path := os.Getenv("BENCH_WORKER_PROFILE"); path != "" {
		// --profile: the worker's CPU over its whole life (the load
		// generator's own cost, to keep it small).
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	w := &worker{idx: idx, signer: signer, clients: map[string]*client.Client{}, rawBy: map[string]*rawConn{}, fresh: map[string]int{}, stats: map[string]*tagStats{}, retries: map[string]int64{}}
	if s := os.Getenv("BENCH_WORKER_SOURCE"); s != "" {
		w.src = net.ParseIP(s)
	}
	w.dialer = sourceDialer(w.src)
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.out = json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 256<<20)
	var wg sync.WaitGroup
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			return fmt.Errorf("worker %d: bad request: %w", idx, err)
		}
		if req.Op == "close" {
			w.closeAll()
			w.reply(req.ID, struct{}{}, nil)
			return nil
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.handle(req) }()
	}
	// The coordinator is gone.
	w.closeAll()
	return nil
}

// sourceDialer dials from src (nil: the system's choice). Each worker has
// its own loopback source address, so that the bench's connections to an
// edge are not bounded by the ephemeral ports of one address.
func sourceDialer(src net.IP) *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	return d
}

// raiseNoFile lifts the soft open-file limit to the hard one.
func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func (w *worker) reply(id int64, data any, err error) {
	r := reply{ID: id}
	if err != nil {
		r.Error = err.Error()
	} else {
		r.Data, _ = json.Marshal(data)
	}
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.out.Encode(r)
}

func (w *worker) handle(req request) {
	var (
		data any
		err  error
	)
	switch req.Op {
	case "connect":
		var a connectArgs
		if err = json.Unmarshal(req.Args, &a); err == nil {
			data = w.connect(a)
		}
	case "send":
		var a sendArgs
		if err = json.Unmarshal(req.Args, &a); err == nil {
			data = w.send(a)
		}
	case "drop":
		var a dropArgs
		if err = json.Unmarshal(req.Args, &a); err == nil {
			w.drop(a)
			data = struct{}{}
		}
	case "stats":
		var a struct {
			Tag string `json:"tag"`
		}
		if err = json.Unmarshal(req.Args, &a); err == nil {
			data = w.statsOf(a.Tag)
		}
	case "progress":
		data = progressReply{
			RawUp: w.rawUp.Load(), RawMsgs: w.rawMsgs.Load(), Clients: w.nClients.Load(),
			Sent: w.sent.Load(), Acked: w.acked.Load(), Delivered: w.delivered.Load(),
			Errors: w.errs.Load(), Reconnects: w.reconnects.Load(),
		}
	case "raw_report":
		data = w.rawReport()
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	w.reply(req.ID, data, err)
}

func (w *worker) tag(t string) *tagStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats[t]
	if s == nil {
		s = &tagStats{errs: map[string]int64{}}
		w.stats[t] = s
	}
	return s
}

func (w *worker) connect(a connectArgs) connectReply {
	rep := connectReply{Errors: map[string]int64{}, StartNs: time.Now().UnixNano()}
	var mu sync.Mutex
	conc := max(1, a.Concurrency)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for _, u := range a.Users {
		if w.ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var err error
			if a.Raw {
				r := newRawConn(w, u, a)
				ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
				err = r.dial(ctx)
				cancel()
				if err == nil {
					w.mu.Lock()
					w.raws = append(w.raws, r)
					w.rawBy[r.name] = r
					w.mu.Unlock()
				}
			} else {
				err = w.dialClient(u, a.Receipts, a.PerMessage)
			}
			mu.Lock()
			if err != nil {
				rep.Failed++
				rep.Errors[shortErr(err)]++
			} else {
				rep.Connected++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	rep.DoneNs = time.Now().UnixNano()
	return rep
}

// dialClient connects one user with the Go client package. With perMsg, its
// own copies count too and every arrival is kept by message (group).
func (w *worker) dialClient(u userSpec, receipts receiptMode, perMsg bool) error {
	name := u.Name
	cfg := client.Config{
		URLs:          []string{u.URL},
		Token:         func() (string, error) { return w.signer.Token(name, 24*time.Hour) },
		Dialer:        w.dialer,
		AutoDelivered: receipts == receiptsEach || receipts == receiptsThrottled,
		OnEvent: func(ev client.Event) {
			now := time.Now().UnixNano()
			switch ev.Type {
			case "msg":
				if ev.From == name && !perMsg {
					return // the sender's own copy
				}
				tag, sched, ok := parseText(ev.Text)
				if !ok {
					return
				}
				st := w.tag(tag)
				w.countDelivery(st, now, sched)
				if perMsg {
					st.arrived(ev.Conv, ev.Seq, sched, now)
				}
			case "receipt":
				// Receipts of the peer: counted per worker, not per tag.
			}
		},
		Logf: func(format string, args ...any) {
			switch {
			case strings.HasPrefix(format, "client: send %s answered %s") && len(args) >= 2:
				w.mu.Lock()
				w.retries[fmt.Sprint(args[1])]++
				w.mu.Unlock()
			case strings.HasPrefix(format, "client: disconnected"):
				w.disconnects.Add(1)
			}
		},
	}
	if receipts == receiptsEach {
		cfg.DeliveredInterval = time.Nanosecond // no throttling
	}
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.clients[name] = c
	w.mu.Unlock()
	w.nClients.Add(1)
	return nil
}

// countDelivery counts one copy of a bench message, due at due, received at now.
func (w *worker) countDelivery(st *tagStats, now, due int64) {
	st.delivered.Add(1)
	st.e2e.Record(time.Duration(now - due))
	for {
		last := st.lastDelivery.Load()
		if now <= last || st.lastDelivery.CompareAndSwap(last, now) {
			break
		}
	}
	w.delivered.Add(1)
}

// send runs an open-loop schedule. A route whose sender is a raw user gets
// a pre-encoded frame written by this loop (its ack is counted when it
// arrives, by the id); a Go client sender sends on a goroutine of its own.
// It returns once every send is acked or failed, or a.Timeout after the last
// one (the rest count as timeouts).
func (w *worker) send(a sendArgs) sendReply {
	st := w.tag(a.Tag)
	if len(a.Routes) == 0 || a.Rate <= 0 {
		return sendReply{}
	}
	w.mu.Lock()
	clients := make([]*client.Client, len(a.Routes))
	raws := make([]*rawConn, len(a.Routes))
	made := make([]int, len(a.Routes)) // fresh: sends made by the route's user so far
	for i, r := range a.Routes {
		clients[i], raws[i], made[i] = w.clients[r[0]], w.rawBy[r[0]], w.fresh[r[0]]
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		for i, r := range a.Routes {
			w.fresh[r[0]] = made[i]
		}
		w.mu.Unlock()
	}()
	timeout := time.Duration(a.Timeout)
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	var wg sync.WaitGroup
	var id, text, frame []byte // reused by every raw send
	start := a.T0 + a.Offset
	// Each worker starts its round of routes at another point (golden-ratio
	// phases), so that the two users of a pair, who are in different
	// workers, do not send at the same instant.
	phase := int(math.Mod(float64(w.idx)*0.6180339887, 1) * float64(len(a.Routes)))
	for k := 0; k < a.Count; {
		if w.ctx.Err() != nil {
			break
		}
		now := time.Now().UnixNano()
		for ; k < a.Count; k++ {
			due := start + int64(float64(k)*1e9/a.Rate)
			if due > now {
				break
			}
			ri := (k + phase) % len(a.Routes)
			to := a.Routes[ri][1]
			st.sent.Add(1)
			w.sent.Add(1)
			if a.FreshUsers > 0 {
				var ok bool
				if to, ok = freshRecipient(a, a.Routes[ri][0], &made[ri]); !ok {
					w.fail(st, "fresh_pairs_exhausted")
					continue
				}
			}
			id = appendSendID(id[:0], a.Tag, w.idx, k, due)
			text = appendText(text[:0], a.Tag, due, a.TextSize)
			if r := raws[ri]; r != nil {
				frame = appendSend(frame[:0], id, to, a.ToConv, text)
				if err := r.write(frame); err != nil {
					w.fail(st, "closed")
				}
				continue
			}
			c, id, text := clients[ri], string(id), string(text)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c == nil {
					w.fail(st, "no_client")
					return
				}
				ctx, cancel := context.WithTimeout(w.ctx, timeout)
				var ack client.Ack
				var err error
				if a.ToConv {
					ack, err = c.SendID(ctx, id, "", to, text)
				} else {
					ack, err = c.SendID(ctx, id, to, "", text)
				}
				cancel()
				if err != nil {
					w.fail(st, errCode(err))
					return
				}
				at := time.Now().UnixNano()
				st.acked.Add(1)
				w.acked.Add(1)
				st.ack.Record(time.Duration(at - due))
				if a.LogAcks {
					w.mu.Lock()
					w.acks = append(w.acks, ackLog{To: to, Seq: ack.Seq, At: at})
					w.mu.Unlock()
				}
			}()
		}
		if k >= a.Count {
			break
		}
		due := start + int64(float64(k)*1e9/a.Rate)
		if d := due - time.Now().UnixNano(); d > 0 {
			time.Sleep(time.Duration(d))
		}
	}
	wg.Wait()
	// Raw sends: wait for their acks.
	deadline := time.Now().Add(timeout)
	for st.acked.Load()+st.failed.Load() < st.sent.Load() && time.Now().Before(deadline) && w.ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if n := st.sent.Load() - st.acked.Load() - st.failed.Load(); n > 0 {
		st.mu.Lock()
		st.errs["timeout"] += n
		st.mu.Unlock()
		st.failed.Add(n)
		w.errs.Add(n)
	}
	return sendReply{Sent: st.sent.Load(), Acked: st.acked.Load()}
}

// freshRecipient is the next user that from (a.FreshPrefix + its index)
// never wrote to and that never wrote to it: see sendArgs.FreshUsers.
func freshRecipient(a sendArgs, from string, made *int) (string, bool) {
	i, ok := atoi(strings.TrimPrefix(from, a.FreshPrefix))
	n := int64(a.FreshUsers)
	j := int64(*made) + 1
	if !ok || j > (n-1)/2 {
		return "", false
	}
	*made++
	return a.FreshPrefix + strconv.FormatInt((i+j)%n, 10), true
}

func (w *worker) fail(st *tagStats, code string) {
	st.mu.Lock()
	st.errs[code]++
	st.mu.Unlock()
	st.failed.Add(1)
	w.errs.Add(1)
}

func errCode(err error) string {
	var ce *client.Error
	switch {
	case errors.As(err, &ce):
		return ce.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, client.ErrClosed), errors.Is(err, context.Canceled):
		return "closed"
	}
	return "other"
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

func (w *worker) statsOf(tag string) statsReply {
	st := w.tag(tag)
	st.mu.Lock()
	errs := map[string]int64{}
	for k, v := range st.errs {
		errs[k] = v
	}
	var perMsg map[string][3]int64
	if len(st.msgs) > 0 {
		perMsg = make(map[string][3]int64, len(st.msgs))
		for k, m := range st.msgs {
			perMsg[k] = [3]int64{m.due, m.n, m.latest}
		}
	}
	st.mu.Unlock()
	w.mu.Lock()
	retries := map[string]int64{}
	for k, v := range w.retries {
		retries[k] = v
	}
	w.mu.Unlock()
	return statsReply{
		Sent: st.sent.Load(), Acked: st.acked.Load(), Delivered: st.delivered.Load(),
		Receipts: st.receipts.Load(), Gaps: st.gaps.Load(), Dups: st.dups.Load(), LastDelivery: st.lastDelivery.Load(),
		Errors: errs, Retries: retries, Disconnects: w.disconnects.Load(),
		Ack: st.ack.Snapshot(), E2E: st.e2e.Snapshot(), PerMsg: perMsg,
	}
}

// drop closes every raw connection at a.At, then reconnects each with its
// cursor after a random wait in [0, a.Spread), retrying until a.Deadline.
func (w *worker) drop(a dropArgs) {
	w.mu.Lock()
	raws := append([]*rawConn(nil), w.raws...)
	w.mu.Unlock()
	go func() {
		if d := a.At - time.Now().UnixNano(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		var wg sync.WaitGroup
		for _, r := range raws {
			wg.Add(1)
			go func() { defer wg.Done(); r.drop() }()
		}
		wg.Wait()
		for _, r := range raws {
			wait := time.Duration(0)
			if a.Spread > 0 {
				wait = time.Duration(rand.Int64N(a.Spread))
			}
			time.AfterFunc(wait, func() {
				backoff := 100 * time.Millisecond
				for w.ctx.Err() == nil && time.Now().UnixNano() < a.Deadline {
					ctx, cancel := context.WithTimeout(w.ctx, 15*time.Second)
					err := r.dial(ctx)
					cancel()
					if err == nil {
						w.reconnects.Add(1)
						return
					}
					r.mu.Lock()
					r.reconnErr++
					r.mu.Unlock()
					time.Sleep(backoff/2 + rand.N(backoff/2+1))
					backoff = min(2*backoff, 2*time.Second)
				}
			})
		}
	}()
}

func (w *worker) rawReport() rawReportReply {
	w.mu.Lock()
	raws := append([]*rawConn(nil), w.raws...)
	acks := append([]ackLog(nil), w.acks...)
	w.mu.Unlock()
	rep := rawReportReply{Acks: acks}
	for _, r := range raws {
		rep.Users = append(rep.Users, r.report())
	}
	return rep
}

func (w *worker) closeAll() {
	w.cancel()
	w.mu.Lock()
	clients := make([]*client.Client, 0, len(w.clients))
	for _, c := range w.clients {
		clients = append(clients, c)
	}
	raws := append([]*rawConn(nil), w.raws...)
	w.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
	for _, r := range raws {
		r.close()
	}
}

// --- coordinator side ---

// workerProc is the coordinator's handle on a worker process.
type workerProc struct {
	idx   int
	src   string
	p     *proc
	in    io.WriteCloser
	inMu  sync.Mutex
	mu    sync.Mutex
	next  int64
	wait  map[int64]chan reply
	dead  chan struct{}
	lastE error
}

// startWorkers starts n workers; worker i dials its users from 127.0.0.(2+i).
func (b *bench) startWorkers(n int) ([]*workerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var ws []*workerProc
	for i := 0; i < n; i++ {
		src := fmt.Sprintf("127.0.0.%d", 2+i)
		env := append(os.Environ(),
			"BENCH_WORKER_INDEX="+strconv.Itoa(i),
			"BENCH_WORKER_SOURCE="+src,
			"BENCH_WORKER_SECRET="+b.secret,
		)
		if b.opt.Profile != "" {
			env = append(env, "BENCH_WORKER_PROFILE="+filepath.Join(b.opt.Profile, fmt.Sprintf("%s-worker-%d-cpu.pprof", b.runID, i)))
		}
		name := fmt.Sprintf("worker-%d", i)
		cmd := exec.Command(self, "worker")
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		logf, err := os.Create(b.logDir + "/" + name + ".log")
		if err != nil {
			return ws, err
		}
		cmd.Stderr = logf
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return ws, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return ws, err
		}
		if err := cmd.Start(); err != nil {
			return ws, fmt.Errorf("start %s: %w", name, err)
		}
		p := &proc{name: name, cmd: cmd, log: logf.Name(), done: make(chan struct{})}
		track(p)
		wp := &workerProc{idx: i, src: src, p: p, in: stdin, wait: map[int64]chan reply{}, dead: make(chan struct{})}
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 512<<20)
			for sc.Scan() {
				var r reply
				if json.Unmarshal(sc.Bytes(), &r) != nil {
					continue
				}
				wp.mu.Lock()
				ch := wp.wait[r.ID]
				delete(wp.wait, r.ID)
				wp.mu.Unlock()
				if ch != nil {
					ch <- r
				}
			}
			close(wp.dead)
		}()
		go func() {
			p.err = cmd.Wait()
			logf.Close()
			close(p.done)
		}()
		ws = append(ws, wp)
	}
	return ws, nil
}

// call sends a request and decodes the reply's data into out (may be nil).
func (wp *workerProc) call(ctx context.Context, op string, args, out any) error {
	wp.mu.Lock()
	wp.next++
	id := wp.next
	ch := make(chan reply, 1)
	wp.wait[id] = ch
	wp.mu.Unlock()
	req := request{ID: id, Op: op}
	if args != nil {
		req.Args, _ = json.Marshal(args)
	}
	line, _ := json.Marshal(req)
	wp.inMu.Lock()
	_, err := wp.in.Write(append(line, '\n'))
	wp.inMu.Unlock()
	if err != nil {
		return fmt.Errorf("worker %d: %w", wp.idx, err)
	}
	select {
	case r := <-ch:
		if r.Error != "" {
			return fmt.Errorf("worker %d: %s", wp.idx, r.Error)
		}
		if out != nil {
			return json.Unmarshal(r.Data, out)
		}
		return nil
	case <-wp.dead:
		return fmt.Errorf("worker %d died:\n%s", wp.idx, wp.p.tail(20))
	case <-ctx.Done():
		wp.mu.Lock()
		delete(wp.wait, id)
		wp.mu.Unlock()
		return ctx.Err()
	}
}

// stopWorkers asks each worker to close its connections, then ends it.
func stopWorkers(ws []*workerProc) {
	var wg sync.WaitGroup
	for _, wp := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = wp.call(ctx, "close", nil, nil)
			cancel()
			_ = wp.in.Close()
			select {
			case <-wp.p.done:
			case <-time.After(5 * time.Second):
				_ = wp.p.cmd.Process.Kill()
				<-wp.p.done
			}
			untrack(wp.p)
		}()
	}
	wg.Wait()
}

// all runs the same call on every worker at once; outs[i] receives worker i's reply.
func callAll[T any](ctx context.Context, ws []*workerProc, op string, args func(i int) any) ([]T, error) {
	outs := make([]T, len(ws))
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, wp := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var a any
			if args != nil {
				a = args(i)
			}
			errs[i] = wp.call(ctx, op, a, &outs[i])
		}()
	}
	wg.Wait()
	return outs, errors.Join(errs...)
}

func workersWatched(ws []*workerProc) []watched {
	var out []watched
	for _, wp := range ws {
		out = append(out, watched{Name: wp.p.name, Pid: wp.p.pid()})
	}
	return out
}
