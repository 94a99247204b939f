package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"messenger/client"
	"messenger/infra/platformtest"
)

// recorder collects a client's events.
type recorder struct {
	mu     sync.Mutex
	events []client.Event
}

func (r *recorder) on(e client.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// msgs returns the msg events received, in order.
func (r *recorder) msgs() []client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []client.Event
	for _, e := range r.events {
		if e.Type == "msg" {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) ofType(t string) []client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []client.Event
	for _, e := range r.events {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

// waitMsgs waits until n msg events arrived and returns them: as long as
// they keep coming (platformtest.WaitCount), however long n takes.
func (r *recorder) waitMsgs(t *testing.T, n int) []client.Event {
	t.Helper()
	platformtest.WaitCount(t, "messages", n, func() int { return len(r.msgs()) })
	return r.msgs()
}

type dialOpts struct {
	device string
	cursor string
	auto   bool
}

// dial connects user to the given edges (the first, then the others on reconnect).
func dial(t *testing.T, p *platformtest.Platform, user string, edges []int, o dialOpts) (*client.Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	var urls []string
	for _, i := range edges {
		urls = append(urls, p.WS(i))
	}
	tok := p.Token(user)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{
		URLs: urls, Token: func() (string, error) { return tok, nil },
		Device: o.device, Cursor: o.cursor, OnEvent: rec.on, AutoDelivered: o.auto,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, rec
}

func send(t *testing.T, c *client.Client, to, conv, text string) client.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Send(ctx, to, conv, text)
	if err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
	return ack
}

// api calls the HTTP API and decodes the answer into out (if not nil).
func api(t *testing.T, method, url, token string, body any, out any) int {
	t.Helper()
	return apiB(t, method, url, token, body, out)
}

// apiB is api for benchmarks too.
func apiB(t testing.TB, method, url, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type convView struct {
	Conv      string `json:"conv"`
	Kind      string `json:"kind"`
	JoinedSeq int64  `json:"joined_seq"`
	Members   []struct {
		User         string `json:"user"`
		Role         string `json:"role"`
		DeliveredSeq int64  `json:"delivered_seq"`
		ReadSeq      int64  `json:"read_seq"`
	} `json:"members"`
}

// fastSends lifts the per-user send rate for tests that send in bulk.
var fastSends = edgeConfig(func(c *edgeCfg) { c.SendRate, c.SendBurst = 10000, 10000 })
