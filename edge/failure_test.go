package edge_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"messenger/client"
	"messenger/infra/platformtest"
)

// An edge dies mid-conversation: its clients reconnect to another edge with
// their cursor, and every message arrives once, in order.
func TestEdgeKilledMidConversationLosesNothing(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2, Edge: fastSends})
	kate, _ := dial(t, p, "kate", []int{0}, dialOpts{})
	_, lrec := dial(t, p, "leo", []int{1, 0}, dialOpts{})
	const total = 200
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < total; i++ {
			send(t, kate, "leo", "", fmt.Sprintf("n%03d", i))
			if i == total/3 {
				p.KillEdge(1)
			}
		}
	}()
	<-done
	ms := lrec.waitMsgs(t, total)
	time.Sleep(200 * time.Millisecond)
	ms = lrec.msgs()
	if len(ms) != total {
		t.Fatalf("leo got %d messages, want %d", len(ms), total)
	}
	for i, m := range ms {
		if m.Seq != int64(i+1) || m.Text != fmt.Sprintf("n%03d", i) {
			t.Fatalf("message %d = seq %d %q", i, m.Seq, m.Text)
		}
	}
}

// The fan-out crashes and restarts: sends are still acked meanwhile, and
// every message is delivered once when it is back.
func TestFanoutRestartDeliversEverythingOnce(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: fastSends})
	mia, _ := dial(t, p, "mia", []int{0}, dialOpts{})
	_, nrec := dial(t, p, "noah", []int{0}, dialOpts{})
	for i := 0; i < 50; i++ {
		send(t, mia, "noah", "", fmt.Sprintf("a%d", i))
		if i == 20 {
			p.StopFanout()
		}
	}
	p.StartFanout()
	for i := 50; i < 80; i++ {
		send(t, mia, "noah", "", fmt.Sprintf("a%d", i))
	}
	nrec.waitMsgs(t, 80)
	time.Sleep(300 * time.Millisecond)
	ms := nrec.msgs()
	if len(ms) != 80 {
		t.Fatalf("noah got %d, want 80", len(ms))
	}
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("position %d has seq %d", i, m.Seq)
		}
	}
}

func TestRateLimit(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	tok := p.Token("olga")
	var limited int
	var e apiError
	for i := 0; i < 60; i++ {
		code := api(t, "POST", p.HTTP(0)+"/v1/messages", tok, map[string]any{"id": fmt.Sprintf("r%d", i), "to": "pete", "text": "x"}, &e)
		if code == http.StatusTooManyRequests {
			limited++
			if e.Error.Code != "rate_limited" {
				t.Fatalf("429 with code %q", e.Error.Code)
			}
		}
	}
	if limited == 0 {
		t.Fatal("60 sends at once with a burst of 50: some must be rate_limited")
	}
	r, _, err := dialRaw(t, p.WS(0)+"/v1/ws", bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	r.waitFrame(t, "hello", 0)
	for i := 0; i < 100; i++ {
		_ = r.conn.WriteString(fmt.Sprintf(`{"type":"send","id":"ws%d","to":"pete","text":"x"}`, i))
	}
	f := r.waitFrame(t, "error", 0)
	if f["code"] != "rate_limited" || !strings.HasPrefix(f["id"].(string), "ws") || f["retry_after_ms"].(float64) <= 0 {
		t.Fatalf("ws rate limit frame: %v", f)
	}
}

func TestUnknownCursorIsExpired(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	var mu sync.Mutex
	var codes []string
	hello := make(chan client.Event, 1)
	tok := p.Token("quinn")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{
		URLs: []string{p.WS(0)}, Token: func() (string, error) { return tok, nil }, Cursor: "999999",
		OnEvent: func(e client.Event) {
			mu.Lock()
			codes = append(codes, e.Code)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hello <- c.Hello()
	platformtest.Eventually(t, platformtest.Patience, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range codes {
			if c == "cursor_expired" {
				return nil
			}
		}
		return errors.New("no cursor_expired")
	})
	if h := <-hello; h.Cursor == "" || h.Cursor == "999999" {
		t.Fatalf("hello cursor %q", h.Cursor)
	}
}

// A sync frame replays what came after the cursor, then says synced.
func TestSyncReplaysThenSynced(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	rita, rrec := dial(t, p, "rita", []int{0}, dialOpts{})
	start := rita.Hello().Cursor
	sam, _ := dial(t, p, "sam", []int{0}, dialOpts{})
	for i := 0; i < 3; i++ {
		send(t, sam, "rita", "", fmt.Sprint(i))
	}
	// All three in rita's queue before the next connection starts from now
	// (an ack comes before the queue write: one written later would reach
	// that connection live as well as through the sync).
	rrec.waitMsgs(t, 3)
	r, _, _ := dialRaw(t, p.WS(0)+"/v1/ws", bearer(p.Token("rita")))
	r.waitFrame(t, "hello", 0)
	n := r.count()
	_ = r.conn.WriteString(`{"type":"sync","cursor":"` + start + `"}`)
	s := r.waitFrame(t, "synced", n)
	var msgs int
	r.mu.Lock()
	for _, f := range r.frames[n:] {
		if f["type"] == "msg" {
			msgs++
		}
	}
	r.mu.Unlock()
	if msgs != 3 || s["cursor"] == "" {
		t.Fatalf("sync gave %d messages, synced %v", msgs, s)
	}
}

// A reader that stops reading is closed with 4008, never silently skipped;
// it resumes from its cursor and gets everything.
func TestSlowReaderIsClosedAndResumes(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.SendRate, c.SendBurst, c.QueueFrames, c.QueueBytes = 10000, 10000, 16, 256<<10
	})})
	r, _, err := dialRaw(t, p.WS(0)+"/v1/ws", bearer(p.Token("tess")))
	if err != nil {
		t.Fatal(err)
	}
	hello := r.waitFrame(t, "hello", 0)
	// Stop reading: the TCP buffers fill, then the edge's queue.
	uma, _ := dial(t, p, "uma", []int{0}, dialOpts{})
	text := strings.Repeat("z", 4000)
	r.pause()
	// Send until the edge gives up on tess: how much the kernel's socket
	// buffers absorb first depends on the machine (several MB on loopback).
	// Then read again at once, not after more sends: the edge tries to
	// write its close frame for 5 s (edge/ws.go), then drops the connection
	// without one. A few more sends follow, for the resume to fetch.
	const most = 8000 // 32 MB: beyond any loopback buffer
	total := 0
	for ; total < most && p.Edges[0].Counter("messenger_edge_slow_reader_closes_total") == 0; total++ {
		send(t, uma, "tess", "", text)
	}
	r.resume()
	if total == most {
		t.Fatalf("%d messages of %d bytes to a reader that stopped reading, and the edge never closed it", most, len(text))
	}
	for i := 0; i < 10; i++ {
		send(t, uma, "tess", "", text)
		total++
	}
	if code := r.waitClose(t); code != 4008 {
		t.Fatalf("slow reader closed with %d, want 4008", code)
	}
	_, rec := dial(t, p, "tess", []int{0}, dialOpts{cursor: hello["cursor"].(string)})
	ms := rec.waitMsgs(t, total)
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("position %d: seq %d", i, m.Seq)
		}
	}
}

// Two fan-outs at once over the same streams (a failover overlap, or a
// mistake): every message still reaches the queue exactly once, in order.
func TestTwoFanoutsWriteEachEntryOnce(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: fastSends})
	p.StartFanout()
	vic, _ := dial(t, p, "vic", []int{0}, dialOpts{})
	wes, _ := dial(t, p, "wes", []int{0}, dialOpts{})
	start := wes.Hello().Cursor
	const n = 150
	for i := 0; i < n; i++ {
		send(t, vic, "wes", "", fmt.Sprint(i))
	}
	_, rec := dial(t, p, "wes", []int{0}, dialOpts{cursor: start})
	rec.waitMsgs(t, n)
	time.Sleep(300 * time.Millisecond)
	ms := rec.msgs()
	if len(ms) != n {
		t.Fatalf("wes's queue holds %d messages, want %d", len(ms), n)
	}
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("position %d: seq %d", i, m.Seq)
		}
	}
}

// A connection whose token expires is closed with 4001.
func TestExpiredTokenClosesWith4001(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.PingInterval, c.IdleTimeout = 200*time.Millisecond, 10*time.Second
	})})
	tok, err := p.Signer.Token("xena", 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := dialRaw(t, p.WS(0)+"/v1/ws?access_token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.waitFrame(t, "hello", 0)
	if code := r.waitClose(t); code != 4001 {
		t.Fatalf("closed with %d, want 4001", code)
	}
}
