package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The history scenario loads messages by publishing stored events straight
// into the conversation streams (PROTOCOL.md section 11: plain NATS, no
// project code), so that the real projector writes them into ClickHouse,
// then reads pages at random conversations and depths through the HTTP API.
// It runs the roles as separate processes without the fan-out, which would
// otherwise copy every loaded event into user queues for nothing.

// historyMarker is kept in the data directory: a complete one lets a later
// run reuse the load.
type historyMarker struct {
	Complete    bool    `json:"complete"`
	Requested   int     `json:"requested"`
	Messages    int     `json:"messages"`
	Convs       int     `json:"convs"`
	Depth       int     `json:"depth"`
	DB          string  `json:"db"`
	Partitions  int     `json:"partitions"`
	TextSize    int     `json:"text_size"`
	LoadedAt    string  `json:"loaded_at"`
	PublishSecs float64 `json:"publish_seconds"`
	ProjectSecs float64 `json:"project_seconds"`
	TimedOut    bool    `json:"load_timed_out"`
}

const markerName = "bench-history.json"

func readMarker(dir string) (*historyMarker, error) {
	raw, err := os.ReadFile(filepath.Join(dir, markerName))
	if err != nil {
		return nil, err
	}
	var m historyMarker
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func writeMarker(dir string, m *historyMarker) error {
	raw, _ := json.MarshalIndent(m, "", "  ")
	return os.WriteFile(filepath.Join(dir, markerName), raw, 0o644)
}

// directConv is the platform's direct conversation id (event.DirectConv):
// "d" + base64url(sha256(min + "\x00" + max)[:24]).
func directConv(a, b string) string {
	if b < a {
		a, b = b, a
	}
	h := sha256.Sum256([]byte(a + "\x00" + b))
	return "d" + base64.RawURLEncoding.EncodeToString(h[:24])
}

// partition is fnv32a(id) mod n, the platform's partition function.
func partition(id string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

func histUsers(c int) (string, string) {
	return "h" + strconv.Itoa(c) + "-a", "h" + strconv.Itoa(c) + "-b"
}

func (b *bench) history(ctx context.Context, res *result) error {
	o := b.opt
	data := b.dataDir("history")
	db := o.ClickHouseDB + "_history"
	reuse := false
	var mk *historyMarker
	if o.Start != "none" {
		if m, err := readMarker(data); err == nil {
			switch {
			case m.Complete && m.Requested == o.Messages && m.Convs == o.Convs && m.Partitions == o.Partitions:
				reuse, mk, db = true, m, m.DB
				b.logf("history: reusing the load in %s (%s messages, %s)", data, fmtNum(float64(m.Messages)), m.LoadedAt)
			default:
				b.logf("history: %s holds another or an unfinished load: wiping it", data)
				if err := os.RemoveAll(data); err != nil {
					return err
				}
			}
		} else if entries, _ := os.ReadDir(data); len(entries) > 0 {
			return fmt.Errorf("--data %s is not empty and holds no %s: give an empty or a bench history directory", data, markerName)
		}
	}
	mode := "split"
	if o.Start == "none" {
		mode = "none"
		if o.NATS == "" {
			return errors.New("history with --start none needs --nats (to load) and --urls")
		}
	}
	spec := platformSpec{mode: mode, edges: max(1, min(o.Edges, 2)), fanout: false, data: data, chDB: db, keepDB: reuse}
	saved := b.opt.Workers
	b.opt.Workers = 0 // pages are read from here; no worker needed
	e, cleanup, err := b.setup(ctx, "history", spec)
	b.opt.Workers = saved
	defer func() {
		cleanup()
		if o.Data == "" && !o.Keep && mode != "none" {
			// A load nobody can reuse: give the shared ClickHouse its disk back.
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = b.dropDatabase(dctx, db)
			cancel()
			b.logf("history: the load was removed; give --data DIR to keep it for later runs")
		}
	}()
	if err != nil {
		return err
	}
	if mode != "none" {
		res.Start = "split, without the fan-out"
	}
	// Loading writes conversation events and reads them back: the admin
	// NATS identity, whose seed the platform made under its data (or given).
	seed := b.opt.NATSNkey
	if seed == "" && mode != "none" {
		seed = filepath.Join(data, "nats", "admin.nk")
	}
	opts := []nats.Option{nats.Name("bench-history")}
	if seed != "" {
		nk, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			return fmt.Errorf("nats seed: %w", err)
		}
		opts = append(opts, nk)
	}
	nc, err := nats.Connect(e.pl.natsURL, opts...)
	if err != nil {
		return fmt.Errorf("nats %s: %w", e.pl.natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return err
	}
	if !reuse {
		mk = &historyMarker{Requested: o.Messages, Convs: o.Convs, DB: db, Partitions: o.Partitions, TextSize: o.TextSize}
		if mode != "none" {
			if err := writeMarker(data, mk); err != nil {
				return err
			}
		}
		if err := b.loadHistory(ctx, js, mk); err != nil {
			return err
		}
		if mode != "none" {
			if err := writeMarker(data, mk); err != nil {
				return err
			}
		}
	}
	// Wait until the projector has everything (its consumers' lag is 0).
	pstart := time.Now()
	if err := b.waitProjected(ctx, js, mk.Messages); err != nil {
		return err
	}
	if !reuse {
		mk.ProjectSecs = time.Since(pstart).Seconds() // after the last publish
		mk.Complete = true
		mk.LoadedAt = time.Now().UTC().Format(time.RFC3339)
		if mode != "none" {
			if err := writeMarker(data, mk); err != nil {
				return err
			}
		}
	}
	var chRows, chParts uint64
	if conn, err := b.clickhouseConn(ctx); err == nil {
		_ = conn.QueryRow(ctx, "SELECT count() FROM "+db+".messages").Scan(&chRows)
		_ = conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = 'messages' AND active", db).Scan(&chParts)
		conn.Close()
	}

	psBefore := snapshot(e.procs, false)
	lat, errs, wrong, err := b.readPages(ctx, e.pl.edgeHTTP, mk)
	if err != nil {
		return err
	}
	psAfter := snapshot(e.procs, false)
	res.Processes = procFigures(e.procs, psBefore, psAfter)
	res.add("other_cpu", "CPU of other processes on the box while pages were read (noise, % of one core)", 100*otherCPU(psBefore, psAfter, res.Processes), "pct")
	d := lat.Snapshot()
	// The same pages asked of ClickHouse alone, with the platform's query:
	// what the store takes, and so what the edge adds.
	chLat, err := b.clickhousePages(ctx, db, mk, min(o.Pages, 1000))
	if err != nil {
		return err
	}
	cd := chLat.Snapshot()
	jsDisk := duBytes(data)
	chDisk := int64(0)
	if o.ClickHouseDir != "" {
		for _, dir := range []string{filepath.Join(o.ClickHouseDir, "data", "data", db), filepath.Join(o.ClickHouseDir, "data", db)} {
			if _, err := os.Stat(dir); err == nil {
				chDisk = duBytes(dir)
				break
			}
		}
	}
	res.add("messages", "messages loaded", float64(mk.Messages), "count")
	res.add("clickhouse_rows", "rows in ClickHouse messages", float64(chRows), "count")
	res.add("convs", "conversations", float64(mk.Convs), "count")
	res.add("depth", "messages per conversation", float64(mk.Depth), "count")
	res.addText("reused", "load reused from --data", yesNo(reuse))
	if mk.PublishSecs > 0 {
		res.add("publish_seconds", "publishing took", mk.PublishSecs, "s")
		res.add("publish_rate", "publish rate", float64(mk.Messages)/mk.PublishSecs, "per_s")
		res.add("project_tail_seconds", "projection finished after the last publish", mk.ProjectSecs, "s")
		res.add("load_rate", "load rate, publish to projected", float64(mk.Messages)/(mk.PublishSecs+mk.ProjectSecs), "per_s")
	}
	if mk.TimedOut {
		res.note("--load-timeout %v reached: %s of the %s messages asked were loaded", o.LoadTimeout, fmtNum(float64(mk.Messages)), fmtNum(float64(mk.Requested)))
	}
	res.add("disk_jetstream", "disk, JetStream data directory", float64(jsDisk), "bytes")
	res.add("disk_clickhouse", "disk, ClickHouse database", float64(chDisk), "bytes")
	res.add("pages", "pages read", float64(d.N), "count")
	res.add("page_errors", "failed requests", float64(errs), "count")
	res.add("wrong_pages", "pages with wrong content", float64(wrong), "count")
	res.add("page_p50", "page latency p50", d.Quantile(0.5), "ms")
	res.add("page_p99", "page latency p99", d.Quantile(0.99), "ms")
	res.add("page_p999", "page latency p99.9", d.Quantile(0.999), "ms")
	res.add("page_max", "page latency max", d.MaxMs(), "ms")
	res.add("ch_parts", "active parts of the ClickHouse messages table", float64(chParts), "count")
	res.add("ch_p50", "the same query on ClickHouse alone, p50", cd.Quantile(0.5), "ms")
	res.add("ch_p99", "the same query on ClickHouse alone, p99", cd.Quantile(0.99), "ms")
	res.target(fmt.Sprintf("history p99 per page at %s messages", fmtNum(float64(mk.Messages))), "≤ 20 ms", fmtMs(d.Quantile(0.99)), d.Quantile(0.99) <= 20 && errs == 0 && wrong == 0)
	res.note("GET /v1/conversations/{conv}/messages?before=N&limit=50 as a member, N uniform in [2, depth+1], %d in flight, over %d edge(s); each page checked (seqs N-50..N-1)", o.PageConcurrency, len(e.pl.edgeHTTP))
	res.Extra = map[string]any{"data": data, "db": db}
	return nil
}

// loadHistory creates the conversations in KV convs and publishes
// mk.Requested events round by round (seq 1 of every conversation, then
// seq 2, ...), so that a load stopped by --load-timeout leaves every
// conversation equally deep.
func (b *bench) loadHistory(ctx context.Context, js jetstream.JetStream, mk *historyMarker) error {
	o := b.opt
	C := mk.Convs
	depth := mk.Requested / C
	if depth < 1 {
		return fmt.Errorf("--messages %d over --convs %d: less than one per conversation", mk.Requested, C)
	}
	kv, err := js.KeyValue(ctx, "convs")
	if err != nil {
		return fmt.Errorf("KV convs: %w", err)
	}
	convs := make([]string, C)
	subjects := make([]string, C)
	var created atomic.Int64
	b.prog.set("history: conversations", 0, func() string {
		return fmt.Sprintf("KV convs %s/%s", fmtNum(float64(created.Load())), fmtNum(float64(C)))
	})
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := g; c < C; c += 16 {
				a, bb := histUsers(c)
				conv := directConv(a, bb)
				convs[c] = conv
				subjects[c] = "conv." + strconv.Itoa(partition(conv, mk.Partitions)) + "." + conv
				meta, _ := json.Marshal(map[string]any{"kind": "direct", "members": []string{min(a, bb), max(a, bb)}})
				if _, err := kv.Create(ctx, conv, meta); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
					errc <- fmt.Errorf("KV convs %s: %w", conv, err)
					return
				}
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}

	var published, failed atomic.Int64
	var firstErr atomic.Value
	// Publish failures are counted by the ack futures below.
	start := time.Now()
	deadline := start.Add(o.LoadTimeout)
	var meter rateMeter
	b.prog.set("history: publishing", o.LoadTimeout, func() string {
		p := published.Load()
		return fmt.Sprintf("published %s/%s  %s msg/s", fmtNum(float64(p)), fmtNum(float64(depth*C)), fmtNum(meter.rate(p)))
	})
	base := time.Now().UnixMilli() - int64(depth)*10
	text := func(c, seq int) string {
		s := "history " + strconv.Itoa(c) + " #" + strconv.Itoa(seq) + " "
		for len(s) < mk.TextSize {
			s += "x"
		}
		return s
	}
	buf := make([]byte, 0, 512)
	rounds := 0
	futures := make(chan jetstream.PubAckFuture, 16384)
	var fwg sync.WaitGroup
	fwg.Add(1)
	go func() {
		defer fwg.Done()
		for f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}
	}()
	stall := jetstream.WithStallWait(10 * time.Second)
publish:
	for seq := 1; seq <= depth; seq++ {
		if time.Now().After(deadline) {
			mk.TimedOut = true
			break
		}
		ts := base + int64(seq)*10
		for c := 0; c < C; c++ {
			if ctx.Err() != nil || failed.Load() > 0 {
				break publish
			}
			a, bb := histUsers(c)
			from, to := a, bb
			if seq%2 == 0 {
				from, to = bb, a
			}
			buf = buf[:0]
			buf = append(buf, `{"v":1,"type":"msg","conv":"`...)
			buf = append(buf, convs[c]...)
			buf = append(buf, `","seq":`...)
			buf = strconv.AppendInt(buf, int64(seq), 10)
			buf = append(buf, `,"ts":`...)
			buf = strconv.AppendInt(buf, ts, 10)
			buf = append(buf, `,"from":"`...)
			buf = append(buf, from...)
			buf = append(buf, `","id":"h`...)
			buf = strconv.AppendInt(buf, int64(c), 10)
			buf = append(buf, '-')
			buf = strconv.AppendInt(buf, int64(seq), 10)
			buf = append(buf, `","kind":"text","text":`...)
			buf = strconv.AppendQuote(buf, text(c, seq))
			buf = append(buf, `,"to":"`...)
			buf = append(buf, to...)
			buf = append(buf, `"}`...)
			msg := append([]byte(nil), buf...)
			for {
				f, err := js.PublishAsync(subjects[c], msg, stall)
				if err == nil {
					futures <- f
					break
				}
				if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					continue
				}
				close(futures)
				return fmt.Errorf("publish: %w", err)
			}
			published.Add(1)
		}
		rounds = seq
	}
	close(futures)
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return errors.New("publish acks still pending after 2 minutes")
	case <-ctx.Done():
		return ctx.Err()
	}
	fwg.Wait()
	if failed.Load() > 0 {
		return fmt.Errorf("%d publishes failed (first: %v)", failed.Load(), firstErr.Load())
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if rounds < depth {
		mk.TimedOut = true
	}
	// A round cut short leaves some conversations one deeper; pages use
	// the depth every conversation has.
	mk.Messages = int(published.Load())
	mk.Depth = rounds
	mk.PublishSecs = time.Since(start).Seconds()
	return nil
}

// waitProjected polls the projector's consumers until none has pending or
// unacknowledged events and the streams hold at least want events.
func (b *bench) waitProjected(ctx context.Context, js jetstream.JetStream, want int) error {
	parts := b.opt.Partitions
	var projected atomic.Int64
	var meter rateMeter
	b.prog.set("history: projecting", 0, func() string {
		p := projected.Load()
		return fmt.Sprintf("projected %s/%s  %s msg/s", fmtNum(float64(p)), fmtNum(float64(want)), fmtNum(meter.rate(p)))
	})
	for {
		var total, pending uint64
		ok := true
		for p := 0; p < parts; p++ {
			stream := "CONV_" + strconv.Itoa(p)
			c, err := js.Consumer(ctx, stream, "projector")
			if err != nil {
				ok = false
				break
			}
			info, err := c.Info(ctx)
			if err != nil {
				ok = false
				break
			}
			s, err := js.Stream(ctx, stream)
			if err != nil {
				ok = false
				break
			}
			si, err := s.Info(ctx)
			if err != nil {
				ok = false
				break
			}
			total += si.State.Msgs
			pending += info.NumPending + uint64(info.NumAckPending)
		}
		if ok {
			projected.Store(int64(total - min(total, pending)))
			if pending == 0 && total >= uint64(want) {
				return nil
			}
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return fmt.Errorf("waiting for the projection: %w", err)
		}
	}
}

// clickhousePages runs n of the platform's page queries (services/history:
// SELECT ... FROM messages WHERE conv = ? AND seq BETWEEN, ORDER BY seq,
// stream_seq DESC LIMIT 1 BY seq)
// straight on ClickHouse, sequentially.
func (b *bench) clickhousePages(ctx context.Context, db string, mk *historyMarker, n int) (*hist, error) {
	conn, err := b.clickhouseConn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	lat := &hist{}
	b.prog.set("history: ClickHouse alone", 0, func() string {
		d := lat.Snapshot()
		return fmt.Sprintf("queries %s/%s  p50 %s  p99 %s", fmtNum(float64(d.N)), fmtNum(float64(n)), fmtMs(d.Quantile(0.5)), fmtMs(d.Quantile(0.99)))
	})
	q := "SELECT seq, ts, sender, id, kind, text, title, user, members, recipient, stream_seq FROM " + db +
		".messages WHERE conv = ? AND seq >= ? AND seq <= ? ORDER BY seq, stream_seq DESC LIMIT 1 BY seq"
	for i := 0; i < n && ctx.Err() == nil; i++ {
		c := rand.IntN(mk.Convs)
		a, bb := histUsers(c)
		before := 2 + rand.IntN(mk.Depth)
		lo, hi := max(1, before-50), before-1
		t := time.Now()
		rows, err := conn.Query(ctx, q, directConv(a, bb), uint64(lo-1), uint64(hi))
		if err != nil {
			return nil, fmt.Errorf("clickhouse page: %w", err)
		}
		for rows.Next() {
		}
		rows.Close()
		lat.Record(time.Since(t))
	}
	return lat, ctx.Err()
}

// readPages reads --pages pages at random conversations and depths, as a
// member, and checks each.
func (b *bench) readPages(ctx context.Context, edges []string, mk *historyMarker) (*hist, int64, int64, error) {
	o := b.opt
	lat := &hist{}
	var errs, wrong, done atomic.Int64
	tr := &http.Transport{MaxIdleConnsPerHost: max(2, o.PageConcurrency), MaxIdleConns: 64}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	b.prog.set("history: pages", 0, func() string {
		d := lat.Snapshot()
		return fmt.Sprintf("pages %s/%s  p50 %s  p99 %s", fmtNum(float64(done.Load())), fmtNum(float64(o.Pages)), fmtMs(d.Quantile(0.5)), fmtMs(d.Quantile(0.99)))
	})
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstBad string
	for g := 0; g < max(1, o.PageConcurrency); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				k := next.Add(1)
				if k > int64(o.Pages) {
					return
				}
				c := rand.IntN(mk.Convs)
				a, bb := histUsers(c)
				user := a
				if rand.IntN(2) == 1 {
					user = bb
				}
				before := 2 + rand.IntN(mk.Depth)
				tok, err := b.signer.Token(user, time.Hour)
				if err != nil {
					errs.Add(1)
					continue
				}
				url := edges[int(k)%len(edges)] + "/v1/conversations/" + directConv(a, bb) + "/messages?before=" + strconv.Itoa(before) + "&limit=50"
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				t := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				el := time.Since(t)
				if err != nil || resp.StatusCode != 200 {
					errs.Add(1)
					mu.Lock()
					if firstBad == "" {
						firstBad = fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, body)
					}
					mu.Unlock()
					continue
				}
				lat.Record(el)
				done.Add(1)
				var page struct {
					Messages []struct {
						Seq int `json:"seq"`
					} `json:"messages"`
				}
				if json.Unmarshal(body, &page) != nil {
					wrong.Add(1)
					continue
				}
				want := min(50, before-1)
				okPage := len(page.Messages) == want
				for i, m := range page.Messages {
					okPage = okPage && m.Seq == before-want+i
				}
				if !okPage {
					wrong.Add(1)
					mu.Lock()
					if firstBad == "" {
						firstBad = fmt.Sprintf("before=%d: %d messages, want %d", before, len(page.Messages), want)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if firstBad != "" {
		b.logf("history: first bad page: %s", firstBad)
	}
	return lat, errs.Load(), wrong.Load(), ctx.Err()
}
