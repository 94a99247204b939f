package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"messenger/client"
)

// recorder collects what OnEvent receives.
type recorder struct {
	mu     sync.Mutex
	events []client.Event
}

func (r *recorder) on(ev client.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) ofType(typ string) []client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []client.Event
	for _, ev := range r.events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// patience bounds a wait for something that takes milliseconds alone: far
// more, since the suite runs on two busy cores where -race and the other
// packages' tests (a browser, whole processes) slow everything down.
const patience = 30 * time.Second

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dial(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.Token == nil {
		cfg.Token = func() (string, error) { return "good-u1", nil }
	}
	cfg.ReconnectMin, cfg.ReconnectMax = 10*time.Millisecond, 50*time.Millisecond
	// The client may log from its goroutines after the test has ended.
	var mu sync.Mutex
	ended := false
	t.Cleanup(func() { mu.Lock(); ended = true; mu.Unlock() })
	cfg.Logf = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !ended {
			t.Logf(format, args...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func sendCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDialUnauthorized(t *testing.T) {
	s := newFakeServer(t)
	_, err := client.Dial(context.Background(), client.Config{
		URLs:  []string{s.listen()},
		Token: func() (string, error) { return "expired", nil },
	})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Dial error = %v, want one containing 401", err)
	}
	var e *client.Error
	if !errors.As(err, &e) || e.Code != client.CodeUnauthorized {
		t.Fatalf("error %v is not an *Error unauthorized", err)
	}
}

func TestDialTriesNextURL(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, client.Config{URLs: []string{"ws://127.0.0.1:1", s.listen()}})
	if c.User() != "u1" || c.Hello().Cursor != "u1:0" || c.Cursor() != "u1:0" {
		t.Fatalf("User %q, Hello %+v, Cursor %q", c.User(), c.Hello(), c.Cursor())
	}
}

func TestSendAckAndEcho(t *testing.T) {
	s := newFakeServer(t)
	var rec recorder
	var states []client.State
	var smu sync.Mutex
	c := dial(t, client.Config{URLs: []string{s.listen()}, Device: "d1", OnEvent: rec.on,
		OnState: func(st client.State) { smu.Lock(); states = append(states, st); smu.Unlock() }})

	ack, err := c.SendID(sendCtx(t), "id-1", "u2", "", "hi")
	if err != nil {
		t.Fatal(err)
	}
	if ack.ID != "id-1" || ack.Conv != "d_u1_u2" || ack.Seq != 1 || ack.TS == 0 || ack.Online {
		t.Fatalf("ack = %+v", ack)
	}
	waitFor(t, patience, func() error {
		if msgs := rec.ofType("msg"); len(msgs) != 1 || msgs[0].ID != "id-1" || msgs[0].Text != "hi" {
			return fmt.Errorf("msgs = %+v", msgs)
		}
		if c.Cursor() != "u1:1" {
			return fmt.Errorf("cursor = %q", c.Cursor())
		}
		return nil
	})
	connects, _, _ := s.snapshot()
	if connects[0].Get("device") != "d1" || connects[0].Has("cursor") {
		t.Errorf("query = %v", connects[0])
	}
	if _, err := c.Send(sendCtx(t), "u2", "d_u1_u2", "x"); err == nil {
		t.Error("Send with both to and conv succeeded")
	}
	_ = c.Close()
	waitFor(t, patience, func() error {
		smu.Lock()
		defer smu.Unlock()
		want := []client.State{client.Connecting, client.Connected, client.Disconnected}
		if fmt.Sprint(states) != fmt.Sprint(want) {
			return fmt.Errorf("states = %v, want %v", states, want)
		}
		return nil
	})
	if _, err := c.Send(sendCtx(t), "u2", "", "late"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
}

// TestReconnectResumes: the edge drains (1001); the client reconnects to the
// next URL with its cursor, gets what was stored meanwhile, nothing twice.
func TestReconnectResumes(t *testing.T) {
	s := newFakeServer(t)
	urlA, urlB := s.listen(), s.listen()
	var rec recorder
	dial(t, client.Config{URLs: []string{urlA, urlB}, OnEvent: rec.on})
	for i := range 3 {
		s.inject("u2", "u1", fmt.Sprint("m", i))
	}
	waitFor(t, patience, func() error {
		if n := len(rec.ofType("msg")); n != 3 {
			return fmt.Errorf("%d msgs", n)
		}
		return nil
	})
	s.closeAll(1001)
	for i := 3; i < 5; i++ {
		s.inject("u2", "u1", fmt.Sprint("m", i))
	}
	waitFor(t, patience, func() error {
		msgs := rec.ofType("msg")
		if len(msgs) != 5 {
			return fmt.Errorf("%d msgs", len(msgs))
		}
		for i, m := range msgs {
			if m.Seq != int64(i+1) || m.Text != fmt.Sprint("m", i) {
				return fmt.Errorf("msg %d = %+v", i, m)
			}
		}
		return nil
	})
	connects, hosts, _ := s.snapshot()
	if len(connects) != 2 || connects[1].Get("cursor") != "u1:3" {
		t.Fatalf("connects = %v", connects)
	}
	if "ws://"+hosts[1] != urlB {
		t.Errorf("reconnected to %s, want %s", hosts[1], urlB)
	}
}

// TestPendingResent: the connection drops before the ack; the send is resent
// with the same id and text after the reconnect and Send returns its ack.
func TestPendingResent(t *testing.T) {
	s := newFakeServer(t)
	s.onFrame = func(s *fakeServer, socket *gws.Conn, _ string, f map[string]any) bool {
		if f["type"] == "send" && len(s.framesOfTypeLocked("send")) == 1 {
			_ = socket.WriteClose(4008, nil)
			return true
		}
		return false
	}
	c := dial(t, client.Config{URLs: []string{s.listen()}})
	ack, err := c.SendID(sendCtx(t), "same", "u2", "", "once")
	if err != nil || ack.Seq != 1 {
		t.Fatalf("ack %+v, err %v", ack, err)
	}
	sends := s.framesOfType("send")
	if len(sends) != 2 || sends[1]["id"] != "same" || sends[1]["text"] != "once" || sends[1]["to"] != "u2" {
		t.Fatalf("sends = %v", sends)
	}
}

// framesOfTypeLocked is framesOfType for callers holding mu.
func (s *fakeServer) framesOfTypeLocked(typ string) []map[string]any {
	var out []map[string]any
	for _, f := range s.frames {
		if f["type"] == typ {
			out = append(out, f)
		}
	}
	return out
}

func TestRetryableErrors(t *testing.T) {
	s := newFakeServer(t)
	s.onFrame = func(s *fakeServer, socket *gws.Conn, _ string, f map[string]any) bool {
		if f["type"] != "send" {
			return false
		}
		switch len(s.framesOfTypeLocked("send")) {
		case 1:
			s.write(socket, map[string]any{"type": "error", "id": f["id"], "code": "unavailable", "message": "draining"})
			return true
		case 2:
			s.write(socket, map[string]any{"type": "error", "id": f["id"], "code": "rate_limited", "message": "slow", "retry_after_ms": 20})
			return true
		}
		return false
	}
	c := dial(t, client.Config{URLs: []string{s.listen()}})
	if _, err := c.Send(sendCtx(t), "u2", "", "x"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.framesOfType("send")); n != 3 {
		t.Errorf("%d send frames, want 3", n)
	}
}

func TestSendErrorFails(t *testing.T) {
	s := newFakeServer(t)
	s.onFrame = func(s *fakeServer, socket *gws.Conn, _ string, f map[string]any) bool {
		if f["type"] == "send" {
			s.write(socket, map[string]any{"type": "error", "id": f["id"], "code": "forbidden", "message": "not a member"})
			return true
		}
		return false
	}
	var rec recorder
	c := dial(t, client.Config{URLs: []string{s.listen()}, OnEvent: rec.on})
	_, err := c.Send(sendCtx(t), "", "g1", "x")
	var e *client.Error
	if !errors.As(err, &e) || e.Code != client.CodeForbidden || e.Message != "not a member" {
		t.Fatalf("err = %v", err)
	}
	if errs := rec.ofType("error"); len(errs) != 0 {
		t.Errorf("error with id reached OnEvent: %+v", errs)
	}
}

func TestSendContextAndClose(t *testing.T) {
	s := newFakeServer(t)
	s.onFrame = func(*fakeServer, *gws.Conn, string, map[string]any) bool { return true } // swallow everything
	c := dial(t, client.Config{URLs: []string{s.listen()}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, "u2", "", "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send = %v, want DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Send(context.Background(), "u2", "", "y"); done <- err }()
	time.Sleep(20 * time.Millisecond)
	_ = c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("Send = %v, want ErrClosed", err)
		}
	case <-time.After(patience):
		t.Fatal("Send did not return after Close")
	}
}

func TestCursorExpired(t *testing.T) {
	s := newFakeServer(t)
	var rec recorder
	c := dial(t, client.Config{URLs: []string{s.listen()}, Cursor: "u1:99", OnEvent: rec.on})
	waitFor(t, patience, func() error {
		if errs := rec.ofType("error"); len(errs) != 1 || errs[0].Code != client.CodeCursorExpired {
			return fmt.Errorf("errors = %+v", errs)
		}
		if c.Cursor() != "u1:0" {
			return fmt.Errorf("cursor = %q", c.Cursor())
		}
		return nil
	})
	s.inject("u2", "u1", "after")
	s.closeAll(1001)
	waitFor(t, patience, func() error {
		if msgs := rec.ofType("msg"); len(msgs) != 1 {
			return fmt.Errorf("msgs = %+v", msgs)
		}
		if connects, _, _ := s.snapshot(); len(connects) != 2 || connects[1].Get("cursor") != "u1:1" {
			return fmt.Errorf("connects = %v", connects)
		}
		return nil
	})
}

func TestDuplicateMsgDropped(t *testing.T) {
	s := newFakeServer(t)
	var rec recorder
	dial(t, client.Config{URLs: []string{s.listen()}, OnEvent: rec.on})
	s.inject("u2", "u1", "a")
	s.mu.Lock()
	dup := maps(s.queues["u1"][0])
	dup["cursor"] = "u1:1"
	for socket := range s.conns {
		s.write(socket, dup)
	}
	s.mu.Unlock()
	s.inject("u2", "u1", "b")
	waitFor(t, patience, func() error {
		msgs := rec.ofType("msg")
		if len(msgs) != 2 || msgs[0].Text != "a" || msgs[1].Text != "b" {
			return fmt.Errorf("msgs = %+v", msgs)
		}
		return nil
	})
}

func TestSyncWatchTypingReceipt(t *testing.T) {
	s := newFakeServer(t)
	var rec recorder
	c := dial(t, client.Config{URLs: []string{s.listen()}, OnEvent: rec.on})
	s.inject("u2", "u1", "a")
	waitFor(t, patience, func() error {
		if len(rec.ofType("msg")) != 1 {
			return errors.New("no msg")
		}
		return nil
	})
	if err := c.Sync("u1:0"); err != nil {
		t.Fatal(err)
	}
	if err := c.Watch([]string{"u2", "u3"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Typing("d_u1_u2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Receipt("d_u1_u2", 1, "read"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, func() error {
		if n := len(rec.ofType("msg")); n != 2 { // the sync replays it on purpose
			return fmt.Errorf("%d msgs", n)
		}
		if n := len(rec.ofType("synced")); n != 1 {
			return fmt.Errorf("%d synced", n)
		}
		if n := len(rec.ofType("presence")); n != 2 {
			return fmt.Errorf("%d presence", n)
		}
		if n := len(s.framesOfType("receipt")) + len(s.framesOfType("typing")); n != 2 {
			return fmt.Errorf("%d receipt+typing frames", n)
		}
		return nil
	})
	s.closeAll(4001)
	waitFor(t, patience, func() error { // the watch list is sent again
		if n := len(s.framesOfType("watch")); n != 2 {
			return fmt.Errorf("%d watch frames", n)
		}
		return nil
	})
}

func TestAutoDelivered(t *testing.T) {
	s := newFakeServer(t)
	var rec recorder
	c := dial(t, client.Config{URLs: []string{s.listen()}, OnEvent: rec.on, AutoDelivered: true})
	if _, err := c.Send(sendCtx(t), "u2", "", "own"); err != nil { // own messages get no receipt
		t.Fatal(err)
	}
	for i := range 30 {
		s.inject("u2", "u1", fmt.Sprint(i))
	}
	waitFor(t, patience, func() error { // the last after DeliveredInterval (1 s)
		rs := s.framesOfType("receipt")
		if len(rs) == 0 || rs[len(rs)-1]["seq"] != float64(31) {
			return fmt.Errorf("receipts = %v", rs)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	rs := s.framesOfType("receipt")
	if len(rs) > 4 {
		t.Errorf("%d receipts for a burst of 30, want them coalesced", len(rs))
	}
	for _, r := range rs {
		if r["status"] != "delivered" || r["conv"] != "d_u1_u2" || r["seq"] == float64(1) {
			t.Errorf("receipt %v", r)
		}
	}
}
