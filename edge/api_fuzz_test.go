package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lxzan/gws"

	"messenger/infra/platformtest"
	"messenger/services/event"
)

// The client API fuzzed against a running platform (a real embedded NATS,
// the fan-out and one edge): the body of every POST and PATCH route, the
// query parameters of every GET, and frames on a live WebSocket. Each fuzz
// worker starts its own platform. Seeds: testdata/fuzz/<FuzzName>.

var fzID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// fzStatus is the status of each code (PROTOCOL.md section 5).
var fzStatus = map[string]int{
	"bad_request": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404,
	"conflict": 409, "too_large": 413, "rate_limited": 429, "cursor_expired": 410,
	"unavailable": 503,
}

// fzAPI is a platform with alice in a group (alice admin, bob member).
type fzAPI struct {
	p      *platformtest.Platform
	token  string
	group  string
	client *http.Client
}

func startFuzzAPI(f *testing.F) *fzAPI {
	p := platformtest.Start(f, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst = 1e6, 1e6, 1e6, 1e6
	})})
	a := &fzAPI{p: p, token: p.Token("alice"), client: &http.Client{Timeout: 10 * time.Second}}
	var g struct {
		Conv string `json:"conv"`
	}
	if code := apiB(f, "POST", p.HTTP(0)+"/v1/conversations", a.token, map[string]any{"id": "fz", "title": "fuzz", "members": []string{"bob"}}, &g); code != 201 {
		f.Fatalf("create the group: %d", code)
	}
	a.group = g.Conv
	return a
}

// do sends a request as alice; a nil answer is a request that did not end
// within hold (a poll that holds).
func (a *fzAPI) do(t *testing.T, method, path string, body []byte, hold time.Duration) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hold)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, a.p.HTTP(0)+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return 0, nil
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil
		}
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	a.checkAnswer(t, method+" "+path, resp.StatusCode, raw)
	return resp.StatusCode, raw
}

// checkAnswer: every answer is JSON; an error is {"error":{code,message}}
// with the status of its code; the server never fails (5xx) on input, and
// alice's token is always good.
func (a *fzAPI) checkAnswer(t *testing.T, what string, status int, raw []byte) {
	t.Helper()
	if !json.Valid(raw) {
		t.Fatalf("%s: %d answered with a body that is not JSON: %q", what, status, raw)
	}
	if status >= 500 || status == 401 {
		t.Fatalf("%s: %d %s", what, status, raw)
	}
	if status >= 400 {
		var e apiError
		if json.Unmarshal(raw, &e) != nil || fzStatus[e.Error.Code] != status || e.Error.Message == "" {
			t.Fatalf("%s: %d with error %s", what, status, raw)
		}
	}
}

// lastSeq is the group's newest seq, as its history tells it.
func (a *fzAPI) lastSeq(t *testing.T) uint64 {
	t.Helper()
	var page struct {
		Messages []struct {
			Seq uint64 `json:"seq"`
		} `json:"messages"`
	}
	code, raw := a.do(t, "GET", "/v1/conversations/"+a.group+"/messages?limit=1", nil, 10*time.Second)
	if code != 200 || json.Unmarshal(raw, &page) != nil || len(page.Messages) != 1 {
		t.Fatalf("group history: %d %s", code, raw)
	}
	return page.Messages[0].Seq
}

// clean reports a body that JSON decoding would not repair: valid UTF-8
// without a lone surrogate escape (decoded, a U+FFFD it does not spell).
func clean(body []byte) bool {
	if !utf8.Valid(body) {
		return false
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return true // refused as bad JSON anyway
	}
	return !fzRepaired(body, v)
}

func fzRepaired(body []byte, v any) bool {
	switch x := v.(type) {
	case string:
		return strings.ContainsRune(x, utf8.RuneError) && !bytes.Contains(body, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
	case []any:
		for _, e := range x {
			if fzRepaired(body, e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range x {
			if fzRepaired(body, k) || fzRepaired(body, e) {
				return true
			}
		}
	}
	return false
}

var fzBodyRoutes = []struct{ method, path string }{
	{"POST", "/v1/messages"},
	{"POST", "/v1/receipts"},
	{"POST", "/v1/typing"},
	{"POST", "/v1/conversations"},
	{"POST", "/v1/conversations/$G/members"},
	{"PATCH", "/v1/conversations/$G"},
	{"POST", "/v1/push/tokens"},
	{"PUT", "/v1/conversations/$G/mute"},
}

// FuzzAPIBody: any body on any write route (route picks one; "$G" in the
// body stands for alice's group) is answered in the contract's format, never
// with a server error. A body that is not UTF-8 or holds a lone surrogate
// is bad_request; a refused write leaves the group as it was (bad input
// changes nothing); what is accepted obeys the contract: a message's id and
// addressee are ids and its text 1-4096 bytes of UTF-8, a group's members
// ids and its title at most 256 bytes, a push registration's platform known
// and a webpush endpoint https, a mute's until 0 or a later time.
func FuzzAPIBody(f *testing.F) {
	f.Add(byte(0), []byte(`{"id":"m1","conv":"$G","text":"hi"}`))
	a := startFuzzAPI(f)
	f.Fuzz(func(t *testing.T, route byte, body []byte) {
		r := fzBodyRoutes[int(route)%len(fzBodyRoutes)]
		path := strings.ReplaceAll(r.path, "$G", a.group)
		body = bytes.ReplaceAll(body, []byte("$G"), []byte(a.group))
		touchesGroup := strings.Contains(path, a.group) || bytes.Contains(body, []byte(a.group))
		var before uint64
		if touchesGroup {
			before = a.lastSeq(t)
		}
		status, raw := a.do(t, r.method, path, body, 10*time.Second)
		if raw == nil {
			t.Fatalf("%s %s %q: no answer in 10 s", r.method, path, body)
		}
		if !clean(body) && status != 400 && status != 429 {
			t.Fatalf("%s %s %q: %d, want 400 for what decoding would repair", r.method, path, body, status)
		}
		if status >= 400 {
			if touchesGroup {
				if after := a.lastSeq(t); after != before {
					t.Fatalf("%s %s %q: refused with %d but the group went from seq %d to %d", r.method, path, body, status, before, after)
				}
			}
			return
		}
		var in struct {
			ID, To, Conv, Title, User, Platform string
			Text                                *string
			Members                             []string
			Subscription                        *struct{ Endpoint string }
			Until                               *float64
		}
		_ = json.Unmarshal(body, &in)
		switch r.path {
		case "/v1/messages":
			if !fzID.MatchString(in.ID) || (in.To == "") == (in.Conv == "") || in.Text == nil ||
				len(*in.Text) < 1 || len(*in.Text) > 4096 || !utf8.ValidString(*in.Text) {
				t.Fatalf("message %q accepted: %s", body, raw)
			}
			var ack struct {
				Conv string `json:"conv"`
				Seq  uint64 `json:"seq"`
			}
			if json.Unmarshal(raw, &ack) != nil || !fzID.MatchString(ack.Conv) || ack.Seq < 1 {
				t.Fatalf("message %q: ack %s", body, raw)
			}
		case "/v1/conversations":
			if len(in.Title) > 256 || (in.ID != "" && !fzID.MatchString(in.ID)) {
				t.Fatalf("group %q accepted: %s", body, raw)
			}
			for _, m := range in.Members {
				if !fzID.MatchString(m) {
					t.Fatalf("group %q accepted with member %q: %s", body, m, raw)
				}
			}
		case "/v1/conversations/$G/members":
			if !fzID.MatchString(in.User) {
				t.Fatalf("member %q accepted: %s", body, raw)
			}
		case "/v1/conversations/$G":
			if len(in.Title) > 256 {
				t.Fatalf("title %q accepted: %s", body, raw)
			}
		case "/v1/conversations/$G/mute":
			if in.Until == nil || *in.Until < 0 || (*in.Until > 0 && *in.Until < float64(time.Now().UnixMilli()-60_000)) {
				t.Fatalf("mute %q accepted: %s", body, raw)
			}
		case "/v1/push/tokens":
			switch in.Platform {
			case "fcm", "apns":
			case "webpush":
				if in.Subscription == nil || !strings.HasPrefix(in.Subscription.Endpoint, "https://") {
					t.Fatalf("push %q accepted: %s", body, raw)
				}
			default:
				t.Fatalf("push %q accepted: %s", body, raw)
			}
		}
	})
}

// fzUint is a query bound as the contract reads one.
func fzUint(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// FuzzAPIQuery: the query parameters of the GET routes (route picks one; x,
// y, z fill its parameters, an empty one left out) are answered in the
// contract's format, never with a server error. A poll holds only for a
// valid cursor and a timeout that is a finite, non-negative number of
// seconds, and answers at once otherwise; a history page is refused exactly
// when a bound or the limit is not a number it allows, and holds only seqs
// strictly between the bounds, ascending, at most min(limit, 100); the
// conversation list and presence answer 200 only for a positive limit and
// at most 500 valid ids.
func FuzzAPIQuery(f *testing.F) {
	f.Add(byte(1), "3", "", "2")
	a := startFuzzAPI(f)
	f.Fuzz(func(t *testing.T, route byte, x, y, z string) {
		q := url.Values{}
		set := func(k, v string) {
			if v != "" {
				q.Set(k, v)
			}
		}
		var path string
		switch route % 4 {
		case 0:
			set("cursor", x)
			set("timeout", y)
			path = "/v1/poll"
		case 1:
			set("before", x)
			set("after", y)
			set("limit", z)
			path = "/v1/conversations/" + a.group + "/messages"
		case 2:
			set("limit", x)
			path = "/v1/conversations"
		case 3:
			set("users", x)
			path = "/v1/presence"
		}
		full := path + "?" + q.Encode()
		const hold = 500 * time.Millisecond
		start := time.Now()
		status, raw := a.do(t, "GET", full, nil, hold)
		switch route % 4 {
		case 0:
			secs, err := strconv.ParseFloat(y, 64)
			validTimeout := y == "" || (err == nil && secs >= 0 && !math.IsInf(secs, 0))
			_, cerr := event.ParseCursor(x)
			if raw == nil && (x == "" || cerr != nil || !validTimeout || secs == 0) {
				t.Fatalf("GET %s held for %v", full, time.Since(start))
			}
			if status == 200 && !validTimeout {
				t.Fatalf("GET %s: 200 for timeout %q", full, y)
			}
		case 1:
			before, okB := fzUint(x)
			after, okA := fzUint(y)
			limit, err := strconv.Atoi(z)
			valid := (x == "" || okB) && (y == "" || okA) && (z == "" || (err == nil && limit >= 1))
			if valid != (status != 400) {
				t.Fatalf("GET %s: %d %s", full, status, raw)
			}
			if status != 200 {
				return
			}
			if z == "" || limit > 100 {
				limit = 100
			}
			var page struct {
				Messages []struct {
					Seq uint64 `json:"seq"`
				} `json:"messages"`
			}
			if json.Unmarshal(raw, &page) != nil || len(page.Messages) > limit {
				t.Fatalf("GET %s: %s", full, raw)
			}
			for i, m := range page.Messages {
				if (x != "" && m.Seq >= before) || (y != "" && m.Seq <= after) || (i > 0 && m.Seq <= page.Messages[i-1].Seq) {
					t.Fatalf("GET %s: seq %d in %s", full, m.Seq, raw)
				}
			}
		case 2:
			n, err := strconv.Atoi(x)
			if status == 200 && x != "" && (err != nil || n < 1) {
				t.Fatalf("GET %s: 200 for limit %q", full, x)
			}
		case 3:
			if status == 200 && x != "" {
				users := strings.Split(x, ",")
				if len(users) > 500 {
					t.Fatalf("GET %s: 200 for %d users", full, len(users))
				}
				for _, u := range users {
					if !fzID.MatchString(u) {
						t.Fatalf("GET %s: 200 with user %q", full, u)
					}
				}
			}
		}
	})
}

// FuzzWSFrame: any text frame of valid UTF-8 within the frame limit (the
// others close the connection: 1007, 1009) sent on a live WebSocket is
// answered only with JSON frames that have a type; an error frame carries a
// contract code and echoes only a valid id; the connection stays open and
// keeps answering in order ("$G" in the frame stands for alice's group).
// Seeds: testdata/fuzz/FuzzWSFrame.
func FuzzWSFrame(f *testing.F) {
	f.Add([]byte(`{"type":"send","id":"w1","conv":"$G","text":"hi"}`))
	a := startFuzzAPI(f)
	r := &raw{closed: make(chan struct{})}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+a.token)
	c, _, err := gws.NewClient(r, &gws.ClientOption{Addr: a.p.WS(0) + "/v1/ws", RequestHeader: h})
	if err != nil {
		f.Fatal(err)
	}
	go c.ReadLoop()
	f.Cleanup(func() { _ = c.NetConn().Close() })
	barrier := 0
	f.Fuzz(func(t *testing.T, frame []byte) {
		frame = bytes.ReplaceAll(frame, []byte("$G"), []byte(a.group))
		if !utf8.Valid(frame) || len(frame) > 32<<10 {
			return // closed with 1007 or 1009, tested in badinput_test.go
		}
		// The frames are handled in order: the answer to an unknown type
		// sent after this one comes after this one's answers.
		barrier++
		mark := "barrier" + strconv.Itoa(barrier)
		if err := c.WriteMessage(gws.OpcodeText, frame); err != nil {
			t.Fatalf("write %q: %v", frame, err)
		}
		_ = c.WriteString(`{"type":"` + mark + `"}`)
		deadline := time.Now().Add(10 * time.Second)
		for {
			r.mu.Lock()
			frames := append([]map[string]any(nil), r.frames...)
			r.mu.Unlock()
			select {
			case <-r.closed:
				t.Fatalf("after %q the connection closed with %d", frame, r.closeCode)
			default:
			}
			done := false
			for _, fr := range frames {
				typ, _ := fr["type"].(string)
				if fr == nil || typ == "" {
					t.Fatalf("after %q: a frame that is not a JSON object with a type", frame)
				}
				if typ == "error" {
					code, _ := fr["code"].(string)
					if _, ok := fzStatus[code]; !ok || code == "unauthorized" {
						t.Fatalf("after %q: error frame %v", frame, fr)
					}
					if id, has := fr["id"]; has {
						if s, _ := id.(string); !fzID.MatchString(s) {
							t.Fatalf("after %q: error frame %v echoes an id that is not one", frame, fr)
						}
					}
					if msg, _ := fr["message"].(string); strings.Contains(msg, `"`+mark+`"`) {
						done = true
					}
				}
			}
			if done {
				r.mu.Lock()
				r.frames = r.frames[len(frames):]
				r.mu.Unlock()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %q: no answer to the barrier in 10 s", frame)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
}
