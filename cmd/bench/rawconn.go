package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/lxzan/gws"
)

// rawConn is a bare WebSocket user speaking PROTOCOL.md directly through
// gws: lighter than the client package (no queue, no dispatcher goroutine,
// a 4 KiB read buffer), for scenarios with tens of thousands of users, and
// it records what arrives exactly as it arrives (gaps and duplicates
// included). It keeps the cursor of the last stored event, answers pings,
// and reconnects with the cursor when told.
// Used by the idle and reconnect scenarios.
type rawConn struct {
	w    *worker
	name string
	url  string // ws://host:port
	rec  bool   // record every msg (seq, receive time)

	mu        sync.Mutex
	sess      *rawSession // current connection, nil when down
	cursor    string
	hellos    []int64 // unix ns of each hello
	dropAt    int64
	recv      [][2]int64 // seq, unix ns
	count     int64
	maxSeq    int64
	gaps      int64
	dups      int64
	errCodes  map[string]int64
	reconnErr int64
}

// rawSession is one connection of a rawConn.
type rawSession struct {
	r      *rawConn
	ws     *gws.Conn
	hello  chan struct{}
	once   sync.Once
	closed chan struct{}
}

// rawFrame is the part of a server frame a raw user reads.
type rawFrame struct {
	Type   string `json:"type"`
	Conv   string `json:"conv"`
	From   string `json:"from"`
	Seq    int64  `json:"seq"`
	Cursor string `json:"cursor"`
	Code   string `json:"code"`
}

func (s *rawSession) OnOpen(*gws.Conn) {}

func (s *rawSession) OnClose(*gws.Conn, error) {
	r := s.r
	r.mu.Lock()
	if r.sess == s {
		r.sess = nil
		r.w.rawUp.Add(-1)
	}
	r.mu.Unlock()
	close(s.closed)
}

func (s *rawSession) OnPing(c *gws.Conn, p []byte) {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_ = c.WritePong(p)
}

func (s *rawSession) OnPong(*gws.Conn, []byte) {}

func (s *rawSession) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	now := time.Now().UnixNano()
	var f rawFrame
	if json.Unmarshal(m.Bytes(), &f) != nil {
		return
	}
	r := s.r
	switch f.Type {
	case "hello":
		r.mu.Lock()
		r.hellos = append(r.hellos, now)
		if r.cursor == "" {
			r.cursor = f.Cursor
		}
		r.mu.Unlock()
		s.once.Do(func() { close(s.hello) })
	case "msg":
		r.mu.Lock()
		if f.Cursor != "" {
			r.cursor = f.Cursor
		}
		if f.From != r.name {
			switch {
			case f.Seq <= r.maxSeq:
				r.dups++
			case f.Seq > r.maxSeq+1:
				r.gaps += f.Seq - r.maxSeq - 1
			}
			r.count++
			if f.Seq > r.maxSeq {
				r.maxSeq = f.Seq
			}
			if r.rec {
				r.recv = append(r.recv, [2]int64{f.Seq, now})
			}
		}
		r.mu.Unlock()
		r.w.rawMsgs.Add(1)
	case "receipt":
		if f.Cursor != "" {
			r.mu.Lock()
			r.cursor = f.Cursor
			r.mu.Unlock()
		}
	case "error":
		r.mu.Lock()
		if r.errCodes == nil {
			r.errCodes = map[string]int64{}
		}
		r.errCodes[f.Code]++
		r.mu.Unlock()
	}
}

// dial connects (with the saved cursor, if any) and waits for hello.
func (r *rawConn) dial(ctx context.Context) error {
	tok, err := r.w.signer.Token(r.name, 24*time.Hour)
	if err != nil {
		return err
	}
	r.mu.Lock()
	cursor := r.cursor
	r.mu.Unlock()
	u := r.url + "/v1/ws"
	if cursor != "" {
		u += "?cursor=" + url.QueryEscape(cursor)
	}
	s := &rawSession{r: r, hello: make(chan struct{}), closed: make(chan struct{})}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	dialer := r.w.dialer
	ws, resp, err := gws.NewClient(s, &gws.ClientOption{
		Addr:             u,
		RequestHeader:    h,
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4096,
		NewDialer:        func() (gws.Dialer, error) { return dialer, nil },
	})
	if err != nil {
		if resp != nil {
			resp.Body.Close()
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return err
	}
	s.ws = ws
	go ws.ReadLoop()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-s.hello:
	case <-s.closed:
		return errors.New("closed before hello")
	case <-t.C:
		_ = ws.NetConn().Close()
		return errors.New("no hello in 10 s")
	case <-ctx.Done():
		_ = ws.NetConn().Close()
		return ctx.Err()
	}
	r.mu.Lock()
	old := r.sess
	r.sess = s
	if old == nil {
		r.w.rawUp.Add(1)
	}
	r.mu.Unlock()
	select {
	case <-s.closed: // gone already: OnClose saw another session
		r.mu.Lock()
		if r.sess == s {
			r.sess = nil
			r.w.rawUp.Add(-1)
		}
		r.mu.Unlock()
		return errors.New("closed right after hello")
	default:
	}
	return nil
}

// drop closes the socket abruptly (no close frame), as a lost network would.
func (r *rawConn) drop() {
	r.mu.Lock()
	s := r.sess
	r.dropAt = time.Now().UnixNano()
	r.mu.Unlock()
	if s != nil {
		_ = s.ws.NetConn().Close()
		<-s.closed
	}
}

// close ends the connection politely.
func (r *rawConn) close() {
	r.mu.Lock()
	s := r.sess
	r.mu.Unlock()
	if s != nil {
		_ = s.ws.SetWriteDeadline(time.Now().Add(time.Second))
		_ = s.ws.WriteClose(1000, nil)
		_ = s.ws.NetConn().Close()
	}
}

// rawReport is what a raw user saw.
type rawReport struct {
	Name      string           `json:"name"`
	Hellos    []int64          `json:"hellos"`
	DropAt    int64            `json:"drop_at"`
	Recv      [][2]int64       `json:"recv,omitempty"`
	Count     int64            `json:"count"`
	MaxSeq    int64            `json:"max_seq"`
	Gaps      int64            `json:"gaps"`
	Dups      int64            `json:"dups"`
	Errors    map[string]int64 `json:"errors,omitempty"`
	ReconnErr int64            `json:"reconnect_errors"`
	Up        bool             `json:"up"`
}

func (r *rawConn) report() rawReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return rawReport{
		Name: r.name, Hellos: append([]int64(nil), r.hellos...), DropAt: r.dropAt,
		Recv: append([][2]int64(nil), r.recv...), Count: r.count, MaxSeq: r.maxSeq,
		Gaps: r.gaps, Dups: r.dups, Errors: r.errCodes, ReconnErr: r.reconnErr, Up: r.sess != nil,
	}
}
