package client_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"
)

// fakeServer is an in-process stand-in for the edges, just enough of
// PROTOCOL.md section 3 to exercise reconnects, resends and cursors. Tokens
// are "good-<user>". The cursor of a user's n-th stored event is "<user>:<n>";
// "<user>:0" is the beginning. Several httptest servers may share one.
type fakeServer struct {
	t  *testing.T
	up *gws.Upgrader

	mu       sync.Mutex
	queues   map[string][]map[string]any // user -> stored events
	seqs     map[string]int64            // conv -> last seq
	acks     map[string]map[string]any   // sender/id -> ack
	conns    map[*gws.Conn]string        // socket -> user
	connects []url.Values                // query of each accepted connection, in order
	hosts    []string                    // server host of each accepted connection
	remotes  []string                    // client address of each accepted connection
	frames   []map[string]any            // every client frame, in order
	// onFrame, if set, sees each client frame first; it returns true when it
	// has handled the frame. It runs under mu.
	onFrame func(s *fakeServer, socket *gws.Conn, user string, f map[string]any) bool
}

func newFakeServer(t *testing.T) *fakeServer {
	s := &fakeServer{
		t:      t,
		queues: make(map[string][]map[string]any),
		seqs:   make(map[string]int64),
		acks:   make(map[string]map[string]any),
		conns:  make(map[*gws.Conn]string),
	}
	s.up = gws.NewUpgrader(&fakeHandler{s: s}, &gws.ServerOption{})
	return s
}

// listen starts one more edge on s and returns its ws:// URL.
func (s *fakeServer) listen() string {
	srv := httptest.NewServer(http.HandlerFunc(s.serveWS))
	s.t.Cleanup(func() {
		s.closeAll(1001)
		srv.Close()
	})
	return "ws://" + srv.Listener.Addr().String()
}

func (s *fakeServer) serveWS(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/ws" {
		http.NotFound(w, r)
		return
	}
	user, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer good-")
	if !ok || user == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"bad token"}}`))
		return
	}
	socket, err := s.up.Upgrade(w, r)
	if err != nil {
		return
	}
	s.mu.Lock()
	q := s.queues[user]
	s.connects = append(s.connects, r.URL.Query())
	s.hosts = append(s.hosts, r.Host)
	s.remotes = append(s.remotes, r.RemoteAddr)
	s.write(socket, map[string]any{"type": "hello", "proto": 1, "user": user, "cursor": fmt.Sprintf("%s:%d", user, len(q))})
	if c := r.URL.Query().Get("cursor"); c != "" {
		if n, ok := s.parseCursor(user, c); ok {
			for _, ev := range q[n:] {
				s.write(socket, ev)
			}
		} else {
			s.write(socket, map[string]any{"type": "error", "code": "cursor_expired", "message": "unknown cursor"})
		}
	}
	s.conns[socket] = user
	s.mu.Unlock()
	go socket.ReadLoop()
}

func (s *fakeServer) parseCursor(user, c string) (int, bool) {
	u, n, ok := strings.Cut(c, ":")
	i, err := strconv.Atoi(n)
	if !ok || u != user || err != nil || i < 0 || i > len(s.queues[user]) {
		return 0, false
	}
	return i, true
}

// write sends a frame; the caller holds mu, which keeps frames in order.
func (s *fakeServer) write(socket *gws.Conn, v any) {
	b, _ := json.Marshal(v)
	_ = socket.WriteMessage(gws.OpcodeText, b)
}

// store appends a stored event to user's queue and pushes it to user's connections.
func (s *fakeServer) store(user string, ev map[string]any) {
	q := s.queues[user]
	ev = maps(ev)
	ev["cursor"] = fmt.Sprintf("%s:%d", user, len(q)+1)
	s.queues[user] = append(q, ev)
	for socket, u := range s.conns {
		if u == user {
			s.write(socket, ev)
		}
	}
}

func maps(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// accept stores a text message from -> to (direct) and returns its ack.
// The caller holds mu.
func (s *fakeServer) accept(from, id, to, text string) map[string]any {
	if ack, ok := s.acks[from+"/"+id]; ok {
		return ack
	}
	pair := []string{from, to}
	slices.Sort(pair)
	conv := "d_" + pair[0] + "_" + pair[1]
	s.seqs[conv]++
	seq := s.seqs[conv]
	ts := time.Now().UnixMilli()
	msg := map[string]any{"type": "msg", "conv": conv, "seq": seq, "ts": ts, "from": from, "id": id, "kind": "text", "text": text}
	ack := map[string]any{"type": "ack", "id": id, "conv": conv, "seq": seq, "ts": ts, "online": s.online(to)}
	s.acks[from+"/"+id] = ack
	s.store(from, msg)
	s.store(to, msg)
	return ack
}

func (s *fakeServer) online(user string) bool {
	for _, u := range s.conns {
		if u == user {
			return true
		}
	}
	return false
}

// inject stores a message from -> to as if another client had sent it.
func (s *fakeServer) inject(from, to, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accept(from, fmt.Sprintf("inj%d", len(s.acks)), to, text)
}

// closeAll closes every connection with code.
func (s *fakeServer) closeAll(code uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for socket := range s.conns {
		_ = socket.WriteClose(code, nil)
		delete(s.conns, socket)
	}
}

func (s *fakeServer) snapshot() (connects []url.Values, hosts []string, frames []map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.connects), slices.Clone(s.hosts), slices.Clone(s.frames)
}

func (s *fakeServer) framesOfType(typ string) []map[string]any {
	_, _, frames := s.snapshot()
	var out []map[string]any
	for _, f := range frames {
		if f["type"] == typ {
			out = append(out, f)
		}
	}
	return out
}

type fakeHandler struct {
	gws.BuiltinEventHandler
	s *fakeServer
}

func (h *fakeHandler) OnClose(socket *gws.Conn, _ error) {
	h.s.mu.Lock()
	delete(h.s.conns, socket)
	h.s.mu.Unlock()
}

func (h *fakeHandler) OnMessage(socket *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	var f map[string]any
	if err := json.Unmarshal(msg.Bytes(), &f); err != nil {
		return
	}
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	user, ok := s.conns[socket]
	if !ok {
		return
	}
	s.frames = append(s.frames, f)
	if s.onFrame != nil && s.onFrame(s, socket, user, f) {
		return
	}
	str := func(k string) string { v, _ := f[k].(string); return v }
	switch str("type") {
	case "ping":
		s.write(socket, map[string]any{"type": "pong"})
	case "send":
		s.write(socket, s.accept(user, str("id"), str("to"), str("text")))
	case "sync":
		n, ok := s.parseCursor(user, str("cursor"))
		if !ok {
			s.write(socket, map[string]any{"type": "error", "code": "cursor_expired", "message": "unknown cursor"})
			return
		}
		q := s.queues[user]
		for _, ev := range q[n:] {
			s.write(socket, ev)
		}
		s.write(socket, map[string]any{"type": "synced", "cursor": fmt.Sprintf("%s:%d", user, len(q))})
	case "watch":
		users, _ := f["users"].([]any)
		for _, u := range users {
			s.write(socket, map[string]any{"type": "presence", "user": u, "status": "offline"})
		}
	}
}
