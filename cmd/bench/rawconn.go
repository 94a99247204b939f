package main

import (
	"context"
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
// no goroutine per send, a 4 KiB read buffer, frames built and read without
// encoding/json, see frames.go), and it records what arrives exactly as it
// arrives (gaps and duplicates included, per conversation). It keeps the
// cursor of the last stored event, answers pings, reconnects with the cursor
// when told, sends pre-encoded frames for the load scenarios (the worker's
// send loop writes them; acks and errors are matched by the id, which
// carries the tag and the due time) and answers messages with delivered
// receipts per --receipts. Used by every scenario but the reconnect senders
// and --driver client.
type rawConn struct {
	w        *worker
	name     string
	url      string // ws://host:port
	rec      bool   // record every msg (seq, receive time)
	perMsg   bool   // own copies count as deliveries, arrivals kept by message (group)
	receipts receiptMode
	thr      receiptThrottle

	mu        sync.Mutex
	sess      *rawSession // current connection, nil when down
	cursor    string
	hellos    []int64 // unix ns of each hello
	dropAt    int64
	recv      [][2]int64 // seq, unix ns
	count     int64
	seqs      map[string]*int64 // highest seq seen per conversation, own messages included
	gaps      int64
	dups      int64
	errCodes  map[string]int64
	reconnErr int64
	lastTag   string // the tag of the last ack or message, and its stats
	lastSt    *tagStats
}

func newRawConn(w *worker, u userSpec, a connectArgs) *rawConn {
	r := &rawConn{w: w, name: u.Name, url: u.URL, rec: a.Record, perMsg: a.PerMessage, receipts: a.Receipts}
	r.thr.write = func(conv string, seq int64) { _ = r.write(appendReceipt(nil, conv, seq)) }
	return r
}

// rawSession is one connection of a rawConn.
type rawSession struct {
	r      *rawConn
	ws     *gws.Conn
	hello  chan struct{}
	once   sync.Once
	closed chan struct{}
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
	_ = c.SetWriteDeadline(time.Time{}) // the users' sends and receipts write too
}

func (s *rawSession) OnPong(*gws.Conn, []byte) {}

func (s *rawSession) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	now := time.Now().UnixNano()
	b := m.Bytes()
	r := s.r
	switch string(field(b, keyType)) {
	case "msg":
		r.onMsg(b, now)
	case "ack":
		if tag, due, ok := parseSendID(field(b, keyID)); ok {
			st := r.stats(tag)
			st.acked.Add(1)
			r.w.acked.Add(1)
			st.ack.Record(time.Duration(now - due))
		}
	case "receipt":
		if c := field(b, keyCursor); len(c) > 0 {
			r.mu.Lock()
			r.cursor = string(c)
			r.mu.Unlock()
		}
	case "hello":
		r.mu.Lock()
		r.hellos = append(r.hellos, now)
		if r.cursor == "" {
			r.cursor = string(field(b, keyCursor))
		}
		r.mu.Unlock()
		s.once.Do(func() { close(s.hello) })
	case "error":
		code := string(field(b, keyCode))
		if tag, _, ok := parseSendID(field(b, keyID)); ok {
			r.w.fail(r.stats(tag), code)
			return
		}
		r.mu.Lock()
		if r.errCodes == nil {
			r.errCodes = map[string]int64{}
		}
		r.errCodes[code]++
		r.mu.Unlock()
	}
}

// onMsg accounts for one msg event: cursor, per-conversation seq order,
// delivery and latency of the bench's texts, and the receipt.
func (r *rawConn) onMsg(b []byte, now int64) {
	conv := field(b, keyConv)
	seq, _ := atoi(field(b, keySeq))
	own := string(field(b, keyFrom)) == r.name
	tag, due, isText := parseText(field(b, keyText))
	var st *tagStats
	r.mu.Lock()
	if c := field(b, keyCursor); len(c) > 0 {
		r.cursor = string(c)
	}
	if isText {
		st = r.statsLocked(tag)
	}
	last := r.seqs[string(conv)]
	if last == nil {
		if r.seqs == nil {
			r.seqs = map[string]*int64{}
		}
		last = new(int64)
		r.seqs[string(conv)] = last
	}
	gap, dup := seq-*last-1, seq <= *last
	*last = max(*last, seq)
	if dup {
		r.dups++
	} else if gap > 0 {
		r.gaps += gap
	}
	if !own {
		r.count++
		if r.rec {
			r.recv = append(r.recv, [2]int64{seq, now})
		}
	}
	r.mu.Unlock()
	if !own {
		r.w.rawMsgs.Add(1)
	}
	if st != nil {
		if dup {
			st.dups.Add(1)
		} else if gap > 0 {
			st.gaps.Add(gap)
		}
		if !own || r.perMsg {
			r.w.countDelivery(st, now, due)
			if r.perMsg {
				st.arrived(string(conv), seq, due, now)
			}
		}
	}
	if own || seq <= 0 {
		return
	}
	switch r.receipts {
	case receiptsEach:
		_ = r.write(appendReceipt(nil, conv, seq))
	case receiptsThrottled:
		r.thr.note(conv, seq)
	}
}

// stats is the worker's stats of tag, cached for the next frame.
func (r *rawConn) stats(tag []byte) *tagStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.statsLocked(tag)
}

func (r *rawConn) statsLocked(tag []byte) *tagStats {
	if r.lastSt == nil || string(tag) != r.lastTag {
		r.lastTag = string(tag)
		r.lastSt = r.w.tag(r.lastTag)
	}
	return r.lastSt
}

// write sends one text frame (masked, as a client must) on the current connection.
func (r *rawConn) write(frame []byte) error {
	r.mu.Lock()
	s := r.sess
	r.mu.Unlock()
	if s == nil {
		return errors.New("not connected")
	}
	return s.ws.WriteMessage(gws.OpcodeText, frame)
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
		Recv: append([][2]int64(nil), r.recv...), Count: r.count,
		Gaps: r.gaps, Dups: r.dups, Errors: r.errCodes, ReconnErr: r.reconnErr, Up: r.sess != nil,
	}
}
