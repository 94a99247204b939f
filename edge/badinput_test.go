package edge_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"messenger/infra/platformtest"
)

// raw is a bare WebSocket connection for sending frames no client would.
type raw struct {
	gws.BuiltinEventHandler
	mu        sync.Mutex
	frames    []map[string]any
	closeCode uint16
	closed    chan struct{}
	conn      *gws.Conn
	paused    chan struct{}
}

// pause stops reading frames (the socket's buffers then fill) until resume.
func (r *raw) pause() {
	r.mu.Lock()
	r.paused = make(chan struct{})
	r.mu.Unlock()
}

func (r *raw) resume() {
	r.mu.Lock()
	close(r.paused)
	r.paused = nil
	r.mu.Unlock()
}

func (r *raw) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	r.mu.Lock()
	gate := r.paused
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	var f map[string]any
	_ = json.Unmarshal(m.Bytes(), &f)
	r.mu.Lock()
	r.frames = append(r.frames, f)
	r.mu.Unlock()
}

func (r *raw) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		r.mu.Lock()
		r.closeCode = ce.Code
		r.mu.Unlock()
	}
	close(r.closed)
}

func dialRaw(t *testing.T, url string, header http.Header) (*raw, *http.Response, error) {
	t.Helper()
	r := &raw{closed: make(chan struct{})}
	c, resp, err := gws.NewClient(r, &gws.ClientOption{Addr: url, RequestHeader: header})
	if err != nil {
		return nil, resp, err
	}
	r.conn = c
	go c.ReadLoop()
	t.Cleanup(func() { _ = c.NetConn().Close() })
	return r, resp, nil
}

func bearer(tok string) http.Header { return http.Header{"Authorization": []string{"Bearer " + tok}} }

// waitFrame waits for a frame of the given type after the first `skip`.
func (r *raw) waitFrame(t *testing.T, typ string, skip int) map[string]any {
	t.Helper()
	var found map[string]any
	platformtest.Eventually(t, platformtest.Patience, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for i := skip; i < len(r.frames); i++ {
			if r.frames[i]["type"] == typ {
				found = r.frames[i]
				return nil
			}
		}
		return errors.New("no " + typ + " frame")
	})
	return found
}

func (r *raw) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

// waitClose waits until the connection is closed and returns the close
// code. Frames still buffered are read first: the wait goes on while they
// come (platformtest.WaitProgress).
func (r *raw) waitClose(t *testing.T) uint16 {
	t.Helper()
	platformtest.WaitProgress(t, func() (int, error) {
		select {
		case <-r.closed:
			return 0, nil
		default:
			n := r.count()
			return n, fmt.Errorf("connection not closed (%d frames read)", n)
		}
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closeCode
}

// Every bad input of PROTOCOL.md gets its error and changes nothing.
func TestBadInputGetsItsErrorAndChangesNothing(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	ws := p.WS(0) + "/v1/ws"

	t.Run("tokens", func(t *testing.T) {
		none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5IiwiZXhwIjo0MTAyNDQ0ODAwfQ."
		for name, h := range map[string]http.Header{
			"missing":        nil,
			"garbage":        bearer("not-a-jwt"),
			"alg none":       bearer(none),
			"query alg none": nil,
		} {
			url := ws
			if name == "query alg none" {
				url += "?access_token=" + none
			}
			_, resp, err := dialRaw(t, url, h)
			if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: want HTTP 401, got %v %v", name, resp, err)
			}
		}
		var e apiError
		if code := api(t, "POST", p.HTTP(0)+"/v1/messages", "bad", `{"id":"x","to":"bob","text":"hi"}`, &e); code != 401 || e.Error.Code != "unauthorized" {
			t.Errorf("HTTP bad token: %d %+v", code, e)
		}
	})

	t.Run("origin", func(t *testing.T) {
		h := bearer(p.Token("mallory"))
		h.Set("Origin", "https://evil.example")
		_, resp, err := dialRaw(t, ws, h)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("foreign origin: want 403, got %v %v", resp, err)
		}
	})

	r, _, err := dialRaw(t, ws, bearer(p.Token("mallory")))
	if err != nil {
		t.Fatal(err)
	}
	r.waitFrame(t, "hello", 0)
	big := strings.Repeat("x", 4097)
	cases := []struct {
		name, frame, code string
	}{
		{"bad JSON", `{"type":"send",`, "bad_request"},
		{"not an object", `[1,2]`, "bad_request"},
		{"no type", `{"id":"a1"}`, "bad_request"},
		{"unknown type", `{"type":"dance","id":"a2"}`, "bad_request"},
		{"ill-typed field", `{"type":"send","id":"a3","to":"bob","text":5}`, "bad_request"},
		{"missing text", `{"type":"send","id":"a4","to":"bob"}`, "bad_request"},
		{"empty text", `{"type":"send","id":"a5","to":"bob","text":""}`, "bad_request"},
		{"text over 4096 bytes", `{"type":"send","id":"a6","to":"bob","text":"` + big + `"}`, "too_large"},
		{"lone surrogate", `{"type":"send","id":"a7","to":"bob","text":"\ud800x"}`, "bad_request"},
		{"bad user id", `{"type":"send","id":"a8","to":"bob smith","text":"hi"}`, "bad_request"},
		{"to and conv", `{"type":"send","id":"a9","to":"bob","conv":"dX","text":"hi"}`, "bad_request"},
		{"to oneself", `{"type":"send","id":"a10","to":"mallory","text":"hi"}`, "bad_request"},
		{"bad client id", `{"type":"send","id":"no spaces","to":"bob","text":"hi"}`, "bad_request"},
		{"not a member", `{"type":"send","id":"a11","conv":"dSomeoneElses","text":"hi"}`, "forbidden"},
		{"receipt bad status", `{"type":"receipt","conv":"dX","seq":1,"status":"seen"}`, "bad_request"},
		{"receipt negative seq", `{"type":"receipt","conv":"dX","seq":-1,"status":"read"}`, "bad_request"},
	}
	for _, tc := range cases {
		n := r.count()
		if err := r.conn.WriteString(tc.frame); err != nil {
			t.Fatalf("%s: write: %v", tc.name, err)
		}
		f := r.waitFrame(t, "error", n)
		if f["code"] != tc.code {
			t.Errorf("%s: code %v (%v), want %s", tc.name, f["code"], f["message"], tc.code)
		}
	}
	// The surrogate pair is fine.
	n := r.count()
	_ = r.conn.WriteString(`{"type":"send","id":"ok1","to":"bob","text":"\ud83d\ude00"}`)
	if f := r.waitFrame(t, "ack", n); f["seq"].(float64) != 1 {
		t.Fatalf("first good send must be seq 1 (nothing stored before): %v", f)
	}
	// A binary frame is bad_request and the connection stays open.
	n = r.count()
	_ = r.conn.WriteMessage(gws.OpcodeBinary, []byte(`{"type":"ping"}`))
	r.waitFrame(t, "error", n)
	n = r.count()
	_ = r.conn.WriteString(`{"type":"ping"}`)
	r.waitFrame(t, "pong", n)

	// HTTP bad bodies.
	tok := p.Token("mallory")
	for name, body := range map[string]string{
		"bad JSON":     `{"id":`,
		"bad user":     `{"id":"h1","to":"../etc","text":"hi"}`,
		"invalid UTF8": "{\"id\":\"h2\",\"to\":\"bob\",\"text\":\"\xff\xfe\"}",
		"surrogate":    `{"id":"h3","to":"bob","text":"\udc00"}`,
	} {
		var e apiError
		if code := api(t, "POST", p.HTTP(0)+"/v1/messages", tok, body, &e); code != 400 || e.Error.Code != "bad_request" {
			t.Errorf("HTTP %s: %d %+v", name, code, e)
		}
	}
	var e apiError
	if code := api(t, "GET", p.HTTP(0)+"/v1/conversations/dDoesNotExist", tok, nil, &e); code != 403 || e.Error.Code != "forbidden" {
		t.Errorf("GET unknown conversation: %d %+v", code, e)
	}

	// Invalid UTF-8 in a text frame closes with 1007; an oversized frame with 1009.
	r2, _, _ := dialRaw(t, ws, bearer(tok))
	r2.waitFrame(t, "hello", 0)
	_ = r2.conn.WriteMessage(gws.OpcodeText, []byte("{\"type\":\"send\",\"text\":\"\xff\"}"))
	if code := r2.waitClose(t); code != 1007 {
		t.Errorf("invalid UTF-8: close %d, want 1007", code)
	}
	r3, _, _ := dialRaw(t, ws, bearer(tok))
	r3.waitFrame(t, "hello", 0)
	_ = r3.conn.WriteString(`{"type":"send","id":"z","to":"bob","text":"` + strings.Repeat("y", 40<<10) + `"}`)
	if code := r3.waitClose(t); code != 1009 {
		t.Errorf("oversized frame: close %d, want 1009", code)
	}

	// Nothing of all that was stored: bob's only message is the good one.
	_, brec := dial(t, p, "bob", []int{0}, dialOpts{cursor: "0"})
	ms := brec.waitMsgs(t, 1)
	time.Sleep(100 * time.Millisecond)
	if ms = brec.msgs(); len(ms) != 1 || ms[0].ID != "ok1" {
		t.Fatalf("bob's queue: %+v", ms)
	}
}
