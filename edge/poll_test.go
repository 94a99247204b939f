package edge_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"messenger/infra/platformtest"
)

type pollAnswer struct {
	Events []json.RawMessage `json:"events"`
	Cursor string            `json:"cursor"`
}

func poll(t *testing.T, p *platformtest.Platform, user, query string) (int, pollAnswer) {
	t.Helper()
	var a pollAnswer
	code := api(t, "GET", p.HTTP(0)+"/v1/poll?"+query, p.Token(user), nil, &a)
	return code, a
}

// Long polling gives the same guarantees as the WebSocket: in order,
// nothing twice, nothing lost, resuming from the cursor.
func TestLongPolling(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: fastSends})
	// Without a cursor: at once, no events, the newest cursor. "At once" is
	// well under the 10 s hold, with room for a loaded machine.
	start := time.Now()
	code, a := poll(t, p, "pia", "timeout=10")
	if code != 200 || len(a.Events) != 0 || a.Cursor == "" || time.Since(start) > 5*time.Second {
		t.Fatalf("first poll: %d %+v after %v", code, a, time.Since(start))
	}
	cursor := a.Cursor
	// Held until an event exists.
	got := make(chan pollAnswer, 1)
	go func() {
		_, a := poll(t, p, "pia", "timeout=20&cursor="+cursor)
		got <- a
	}()
	time.Sleep(300 * time.Millisecond)
	quin, _ := dial(t, p, "quin", []int{0}, dialOpts{})
	send(t, quin, "pia", "", "wake up")
	select {
	case a = <-got:
	case <-time.After(platformtest.Patience):
		t.Fatal("the held poll was not answered by the new message")
	}
	if len(a.Events) != 1 {
		t.Fatalf("held poll: %+v", a)
	}
	var ev struct {
		Type, Text, Cursor string
		Seq                int64
	}
	_ = json.Unmarshal(a.Events[0], &ev)
	if ev.Type != "msg" || ev.Text != "wake up" || ev.Cursor != a.Cursor {
		t.Fatalf("event %s, cursor %s", a.Events[0], a.Cursor)
	}
	// Many messages while nobody polls: all of them, in order, once, across polls.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 150; i++ {
			send(t, quin, "pia", "", fmt.Sprintf("n%d", i))
		}
	}()
	wg.Wait()
	cursor = a.Cursor
	var texts []string
	for len(texts) < 150 {
		code, a := poll(t, p, "pia", "timeout=5&cursor="+cursor)
		if code != 200 || len(a.Events) == 0 {
			t.Fatalf("poll: %d %+v with %d of 150", code, a, len(texts))
		}
		for _, raw := range a.Events {
			_ = json.Unmarshal(raw, &ev)
			texts = append(texts, ev.Text)
		}
		cursor = a.Cursor
	}
	for i, txt := range texts {
		if txt != fmt.Sprintf("n%d", i) {
			t.Fatalf("position %d: %q", i, txt)
		}
	}
	// Nothing more: timeout=0 answers at once with the same cursor.
	if code, a := poll(t, p, "pia", "timeout=0&cursor="+cursor); code != 200 || len(a.Events) != 0 || a.Cursor != cursor {
		t.Fatalf("empty poll: %d %+v", code, a)
	}
	// An unknown cursor is 410 cursor_expired; a bad timeout 400.
	var e apiError
	if code := api(t, "GET", p.HTTP(0)+"/v1/poll?cursor=99999999", p.Token("pia"), nil, &e); code != http.StatusGone || e.Error.Code != "cursor_expired" {
		t.Fatalf("unknown cursor: %d %+v", code, e)
	}
	if code := api(t, "GET", p.HTTP(0)+"/v1/poll?timeout=x", p.Token("pia"), nil, &e); code != 400 {
		t.Fatalf("bad timeout: %d", code)
	}
}
