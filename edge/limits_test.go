package edge_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"messenger/edge"
	"messenger/infra/platformtest"
)

// dialSilent opens a WebSocket that reads nothing until its ReadLoop is
// started, with a small receive buffer: the edge's writes back up after a
// few kilobytes rather than after the megabytes a loopback socket absorbs.
func dialSilent(t *testing.T, url string, header http.Header) (*raw, *gws.Conn) {
	t.Helper()
	r := &raw{closed: make(chan struct{})}
	c, resp, err := gws.NewClient(r, &gws.ClientOption{
		Addr: url, RequestHeader: header,
		NewDialer: func() (gws.Dialer, error) {
			return &net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
				})
				if err != nil {
					return err
				}
				return serr
			}}, nil
		},
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %d %v", url, status, err)
	}
	r.conn = c
	t.Cleanup(func() { _ = c.NetConn().Close() })
	return r, c
}

// Attack: a connection that never reads and sends pings without end grew
// the edge's heap without bound (each pong queued outside the connection's
// limits). Now a pong goes through the bounded queue: the pinger is closed
// with 4008 like any slow reader.
func TestPingFloodIsClosedAsASlowReader(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) { c.QueueFrames = 64 })})
	r, c := dialSilent(t, p.WS(0)+"/v1/ws", bearer(p.Token("pinger")))
	payload := []byte(strings.Repeat("p", 125)) // the largest control frame
	const most = 400_000                        // 50 MB of pongs: beyond any socket buffer
	n := 0
	for ; n < most; n++ {
		if err := c.WritePing(payload); err != nil {
			break // the edge closed the connection
		}
		if n%500 == 0 && p.Edges[0].Counter("messenger_edge_slow_reader_closes_total") > 0 {
			break
		}
	}
	go c.ReadLoop()
	if n == most {
		t.Fatalf("%d pings from a connection that never reads, and the edge never closed it", most)
	}
	// Closed as a slow reader (4008). The close frame itself may not reach
	// the client: the edge closes the socket with pings still unread in its
	// receive buffer, which the kernel answers with a reset.
	platformtest.Eventually(t, platformtest.Patience, func() error {
		if p.Edges[0].Counter("messenger_edge_slow_reader_closes_total") == 0 {
			return fmt.Errorf("not closed as a slow reader")
		}
		return nil
	})
	r.waitClose(t)
}

// Attack: a replay kept one of the edge's replay slots while it waited for
// its client to read, so connections that never read (of one user) held
// every slot and each new connection of anyone waited for ever. Now a
// replay waiting for its reader holds no slot.
func TestNeverReadingReplaysDoNotBlockOthers(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.SendRate, c.SendBurst = 10000, 10000
		// Small batches under a queue of room for two: a replay waits for
		// its reader rather than overflowing the queue (closed with 4008).
		c.MaxReplays, c.ReplayBatch, c.QueueFrames, c.QueueBytes = 2, 4, 64, 256<<10
		c.MaxText, c.MaxFrame = 28000, 32<<10
	})})
	hog, _ := dial(t, p, "hog", []int{0}, dialOpts{})
	start := hog.Hello().Cursor
	_ = hog.Close()
	feeder, _ := dial(t, p, "feeder", []int{0}, dialOpts{})
	// 7 MB: more than the kernel's socket buffers absorb (the edge's send
	// buffer grows to 4 MB) and than the edge's 256 KiB queue.
	text := strings.Repeat("h", 28000)
	const backlog = 250
	for i := 0; i < backlog; i++ {
		send(t, feeder, "hog", "", text)
	}
	// Twice as many replays that never read as there are slots.
	for i := 0; i < 4; i++ {
		dialSilent(t, p.WS(0)+"/v1/ws?cursor="+start, bearer(p.Token("hog")))
	}
	// Another user's connection starts (each start is a replay) and gets
	// its messages.
	_, vrec := dial(t, p, "vicky", []int{0}, dialOpts{})
	send(t, feeder, "vicky", "", "still served")
	vrec.waitMsgs(t, 1)
}

// Attack: 300 connections of one user were all accepted. Now a user holds
// at most MaxConnsPerUser connections per edge; one more is refused with
// 429 rate_limited and Retry-After, and others are not affected.
func TestConnectionsPerUserAreCapped(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) { c.MaxConnsPerUser = 3 })})
	var conns []*raw
	for i := 0; i < 3; i++ {
		r, _, err := dialRaw(t, p.WS(0)+"/v1/ws", bearer(p.Token("many")))
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		r.waitFrame(t, "hello", 0)
		conns = append(conns, r)
	}
	_, resp, err := dialRaw(t, p.WS(0)+"/v1/ws", bearer(p.Token("many")))
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth connection: %v %+v, want 429 with Retry-After", err, resp)
	}
	// A held long poll counts too.
	var e apiError
	if code := api(t, "GET", p.HTTP(0)+"/v1/poll?timeout=1&cursor=x", p.Token("many"), nil, &e); code != 429 || e.Error.Code != "rate_limited" {
		t.Fatalf("poll over the cap: %d %+v", code, e)
	}
	if _, _, err := dialRaw(t, p.WS(0)+"/v1/ws", bearer(p.Token("other"))); err != nil {
		t.Fatalf("another user: %v", err)
	}
	// A connection that closes makes room.
	_ = conns[0].conn.NetConn().Close()
	platformtest.Eventually(t, platformtest.Patience, func() error {
		r, _, err := dialRaw(t, p.WS(0)+"/v1/ws", bearer(p.Token("many")))
		if err != nil {
			return err
		}
		_ = r.conn.NetConn().Close()
		return nil
	})
}

// Attack: group operations, watch, sync, typing, receipts and push
// registrations had no rate limit (100 group creates in 0.3 s). Each is now
// limited per user: over its burst it answers rate_limited, 429 with
// Retry-After over HTTP, an error frame with retry_after_ms on the
// WebSocket, and the connection stays open.
func TestEveryWriteIsRateLimited(t *testing.T) {
	tight := edge.Rate{PerSecond: 0.01, Burst: 2}
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.Rates = edge.Rates{Receipt: tight, Group: tight, Watch: tight, Sync: tight, Typing: tight, Push: tight}
	})})
	h := p.HTTP(0)
	// HTTP writes: the first two pass (whatever their answer), the third is
	// limited.
	httpCases := []struct {
		name, user, method, path string
		body                     func(i int) any
	}{
		{"receipt", "rc", "POST", "/v1/receipts", func(int) any { return map[string]any{"conv": "nope", "seq": 1, "status": "read"} }},
		{"group create", "gc", "POST", "/v1/conversations", func(i int) any { return map[string]any{"id": fmt.Sprint("g", i), "members": []string{"x"}} }},
		{"group add", "ga", "POST", "/v1/conversations/nope/members", func(int) any { return map[string]any{"user": "x"} }},
		{"group remove", "gr", "DELETE", "/v1/conversations/nope/members/x", func(int) any { return nil }},
		{"group rename", "gn", "PATCH", "/v1/conversations/nope", func(int) any { return map[string]any{"title": "t"} }},
		// typing in a different conversation each time: coalescing per
		// conversation does not help a flood across conversations
		{"typing", "ty", "POST", "/v1/typing", func(i int) any { return map[string]any{"conv": fmt.Sprint("c", i)} }},
		{"push registration", "pu", "POST", "/v1/push/tokens", func(i int) any { return map[string]any{"platform": "fcm", "token": fmt.Sprint("t", i)} }},
		{"push unregistration", "pd", "DELETE", "/v1/push/tokens/nope", func(int) any { return nil }},
	}
	for _, c := range httpCases {
		t.Run(c.name, func(t *testing.T) {
			for i := 0; i < 2; i++ {
				if code := api(t, c.method, h+c.path, p.Token(c.user), c.body(i), nil); code == 429 {
					t.Fatalf("request %d within the burst: 429", i+1)
				}
			}
			req, _ := http.NewRequest(c.method, h+c.path, jsonBody(c.body(2)))
			req.Header.Set("Authorization", "Bearer "+p.Token(c.user))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("third request: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		})
	}
	// WebSocket writes.
	wsCases := []struct{ name, frame string }{
		{"watch", `{"type":"watch","id":"w","users":["a","b"]}`},
		{"sync", `{"type":"sync","id":"w","cursor":"%s"}`},
		{"receipt", `{"type":"receipt","id":"w","conv":"nope","seq":1,"status":"delivered"}`},
	}
	for _, c := range wsCases {
		t.Run("ws "+c.name, func(t *testing.T) {
			r, _, err := dialRaw(t, p.WS(0)+"/v1/ws", bearer(p.Token("ws"+strings.ReplaceAll(c.name, " ", ""))))
			if err != nil {
				t.Fatal(err)
			}
			hello := r.waitFrame(t, "hello", 0)
			frame := c.frame
			if strings.Contains(frame, "%s") {
				frame = fmt.Sprintf(frame, hello["cursor"])
			}
			for i := 0; i < 3; i++ {
				_ = r.conn.WriteString(frame)
			}
			platformtest.Eventually(t, platformtest.Patience, func() error {
				r.mu.Lock()
				defer r.mu.Unlock()
				for _, f := range r.frames {
					if f["type"] == "error" && f["code"] == "rate_limited" {
						if ms, _ := f["retry_after_ms"].(float64); ms <= 0 {
							return fmt.Errorf("rate_limited without retry_after_ms: %v", f)
						}
						return nil
					}
				}
				return fmt.Errorf("no rate_limited error in %v", r.frames)
			})
			// The connection stays open.
			n := r.count()
			_ = r.conn.WriteString(`{"type":"ping"}`)
			r.waitFrame(t, "pong", n)
		})
	}
}

func jsonBody(v any) *strings.Reader {
	if v == nil {
		return strings.NewReader("")
	}
	b, _ := json.Marshal(v)
	return strings.NewReader(string(b))
}

// Attack: poll?timeout=NaN answered 503 (the NaN became a negative
// duration). Every timeout that is not a finite non-negative number is
// bad_request.
func TestPollTimeoutMustBeAFiniteNumber(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	for _, v := range []string{"NaN", "nan", "Inf", "+Inf", "-Inf", "infinity", "-1", "1e400", "abc", "0x1p-2x"} {
		var e apiError
		if code := api(t, "GET", p.HTTP(0)+"/v1/poll?cursor=x&timeout="+v, p.Token("tim"), nil, &e); code != 400 || e.Error.Code != "bad_request" {
			t.Errorf("timeout=%s: %d %+v, want 400 bad_request", v, code, e)
		}
	}
	// Huge but finite: capped, not refused (answered at once: no cursor).
	if code := api(t, "GET", p.HTTP(0)+"/v1/poll?timeout=1e300", p.Token("tim"), nil, nil); code != 200 {
		t.Errorf("timeout=1e300: %d, want 200", code)
	}
}

// A long poll is held past the server's read and write timeouts (up to
// 60 s, far longer than the rest of the API needs): it sets its own.
func TestPollOutlivesServerTimeouts(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	mux := http.NewServeMux()
	p.Edges[0].Edge.Routes(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()
	var a pollAnswer
	if code := api(t, "GET", base+"/v1/poll", p.Token("lp"), nil, &a); code != 200 {
		t.Fatalf("first poll: %d", code)
	}
	began := time.Now()
	var b pollAnswer
	if code := api(t, "GET", base+"/v1/poll?timeout=2&cursor="+a.Cursor, p.Token("lp"), nil, &b); code != 200 || b.Cursor != a.Cursor {
		t.Fatalf("held poll: %d %+v", code, b)
	}
	if d := time.Since(began); d < 2*time.Second {
		t.Fatalf("held poll answered after %v, before its timeout", d)
	}
}

// Attack: a Web Push endpoint on 169.254.169.254 (cloud metadata) was
// accepted: the platform would send requests into its own network. Only
// https to public hosts is.
func TestPushEndpointMustBePublicHTTPS(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.Rates.Push = edge.Rate{PerSecond: 1000, Burst: 1000}
	})})
	sub := func(endpoint string) map[string]any {
		return map[string]any{"platform": "webpush", "subscription": map[string]any{
			"endpoint": endpoint, "keys": map[string]string{"p256dh": "k", "auth": "a"}}}
	}
	for _, bad := range []string{
		"https://169.254.169.254/latest/meta-data/", "http://push.example.com/x", "https://127.0.0.1/x",
		"https://localhost/x", "https://foo.localhost/x", "https://[::1]/x", "https://[::ffff:127.0.0.1]/x",
		"https://10.0.0.8/x", "https://192.168.1.1/x", "https://172.16.0.1/x", "https://0.0.0.0/x",
		"https://[fe80::1]/x", "https://[fd00::1]/x", "https://224.0.0.1/x", "https://100.64.0.1/x",
		"https://metadata.google.internal/x", "https://metadata/x", "https://127.1/x", "https://2130706433/x",
		"https://0x7f.0x1/x", "https://user:pw@push.example.com/x", "ftp://push.example.com/x", "https:///x",
	} {
		var e apiError
		if code := api(t, "POST", p.HTTP(0)+"/v1/push/tokens", p.Token("pe"), sub(bad), &e); code != 400 || e.Error.Code != "bad_request" {
			t.Errorf("%s: %d %+v, want 400 bad_request", bad, code, e)
		}
	}
	for _, good := range []string{"https://fcm.googleapis.com/fcm/send/abc", "https://updates.push.services.mozilla.com/wpush/v2/x", "https://8.8.8.8/x", "https://push.example.com:8443/x"} {
		if code := api(t, "POST", p.HTTP(0)+"/v1/push/tokens", p.Token("pe"), sub(good), nil); code != 200 {
			t.Errorf("%s: %d, want 200", good, code)
		}
	}
}

// Attack: push registrations per user were unlimited. A user keeps at most
// MaxPushRegs: a new one beyond replaces the oldest; the same device again
// answers its registration's id and adds nothing.
func TestPushRegistrationsPerUserAreCapped(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.MaxPushRegs = 3
		c.Rates.Push = edge.Rate{PerSecond: 1000, Burst: 1000}
	})})
	tok := p.Token("pc")
	var ids []string
	for i := 0; i < 5; i++ {
		var a struct{ ID string }
		if code := api(t, "POST", p.HTTP(0)+"/v1/push/tokens", tok, map[string]any{"platform": "apns", "token": fmt.Sprint("device", i)}, &a); code != 200 || a.ID == "" {
			t.Fatalf("registration %d: %d %+v", i, code, a)
		}
		ids = append(ids, a.ID)
	}
	var again struct{ ID string }
	api(t, "POST", p.HTTP(0)+"/v1/push/tokens", tok, map[string]any{"platform": "apns", "token": "device4"}, &again)
	if again.ID != ids[4] {
		t.Fatalf("the same device again: id %q, want %q", again.ID, ids[4])
	}
	for i, id := range ids {
		want := 200
		if i < 2 {
			want = 404 // the oldest two made room
		}
		if code := api(t, "DELETE", p.HTTP(0)+"/v1/push/tokens/"+id, tok, nil, nil); code != want {
			t.Errorf("registration %d: delete answered %d, want %d", i, code, want)
		}
	}
}
