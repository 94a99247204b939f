package edge

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"go.uber.org/zap"

	"messenger/client/proto"
	"messenger/edge/auth"
	"messenger/services/event"
)

// sessionSlot is a one-entry gws session storage: smaller than gws's map.
type sessionSlot struct{ s *session }

func (x *sessionSlot) Len() int { return 1 }
func (x *sessionSlot) Load(string) (any, bool) {
	return x.s, x.s != nil
}
func (x *sessionSlot) Delete(string)         { x.s = nil }
func (x *sessionSlot) Store(_ string, v any) { x.s, _ = v.(*session) }
func (x *sessionSlot) Range(f func(string, any) bool) {
	if x.s != nil {
		f("s", x.s)
	}
}

// wsSink is one WebSocket connection: the session's sink, writing frames
// through gws's ordered async queue.
//
// gws reads each connection on a goroutine of its own, parked in a read for
// as long as the connection is idle, and a goroutine keeps the largest stack
// it ever needed. So nothing deeper than that read runs on it: frames are
// handled on a goroutine of their own (OnMessage), and a control frame only
// notes the time (alive). The read deadline, IdleTimeout after the client's
// last frame, is moved by the frame's handler, and for control frames by
// keepAlive every PingInterval/2 (or at once, off the read goroutine, if it
// would pass before then). The read goroutine parks with about 1 KiB in use
// and keeps a 2 KiB stack, if it starts with 2 KiB: cmd/messenger turns off
// the runtime's larger initial stacks (measured: BenchmarkIdleConnection).
//
// Frames for one connection that are ready together (a catch-up's batch, an
// ack and the messages held back behind it) go out in one write: write
// queues them and schedules one flush on the connection's task queue (gws
// runs a connection's tasks one at a time, pings and pongs included).
type wsSink struct {
	c        *gws.Conn
	s        *session
	idle     time.Duration
	armMu    sync.Mutex
	deadline atomic.Int64 // unix nanos of the read deadline
	closeMu  sync.Once

	pendMu   sync.Mutex
	pending  []pendingFrame
	flushing bool // a flush is scheduled and has not taken pending yet
	// rawMu orders the close frame after a raw write of several frames
	// (gws's own lock covers only its writes).
	rawMu sync.Mutex
}

type pendingFrame struct {
	b    []byte
	done func()
}

func (w *wsSink) write(frame []byte, done func()) {
	w.pendMu.Lock()
	w.pending = append(w.pending, pendingFrame{frame, done})
	schedule := !w.flushing
	w.flushing = true
	w.pendMu.Unlock()
	if schedule {
		w.c.Async(w.flush)
	}
}

// flush writes every frame queued so far: one alone through gws, several
// encoded into one buffer and written with one system call (server frames
// are unmasked and, without permessage-deflate, uncompressed).
func (w *wsSink) flush() {
	w.pendMu.Lock()
	batch := w.pending
	w.pending, w.flushing = nil, false
	w.pendMu.Unlock()
	if len(batch) == 1 {
		_ = w.c.WriteMessage(gws.OpcodeText, batch[0].b)
	} else if len(batch) > 1 {
		n := 0
		for _, f := range batch {
			n += len(f.b) + 10
		}
		buf := make([]byte, 0, n)
		for _, f := range batch {
			buf = appendTextFrame(buf, f.b)
		}
		w.rawMu.Lock()
		_, _ = w.c.NetConn().Write(buf)
		w.rawMu.Unlock()
	}
	if len(batch) > 0 {
		w.s.e.m.socketWrites.Inc()
	}
	for _, f := range batch {
		f.done()
	}
}

// appendTextFrame appends payload as one final, unmasked text frame
// (RFC 6455 section 5.2).
func appendTextFrame(b, payload []byte) []byte {
	b = append(b, 0x81)
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func (w *wsSink) ping() { w.c.WriteAsync(gws.OpcodePing, nil, nil) }

func (w *wsSink) close(code uint16, reason string) {
	w.closeMu.Do(func() {
		// A reader that stalls must not hold this goroutine for ever.
		_ = w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		w.rawMu.Lock() // not inside a raw write (which the deadline ends)
		defer w.rawMu.Unlock()
		_ = w.c.WriteClose(code, []byte(reason))
		_ = w.c.NetConn().Close()
	})
}

// armDeadline moves the read deadline to IdleTimeout after the client's
// last frame, never back.
func (w *wsSink) armDeadline() {
	w.armMu.Lock()
	defer w.armMu.Unlock()
	d := time.Unix(0, w.s.lastRead.Load()).Add(w.idle)
	if d.UnixNano() > w.deadline.Load() {
		w.deadline.Store(d.UnixNano())
		_ = w.c.NetConn().SetReadDeadline(d)
	}
}

// ServeWS is GET /v1/ws: authenticate, check the origin, upgrade.
func (e *Edge) ServeWS(w http.ResponseWriter, r *http.Request) {
	if e.draining.Load() {
		writeError(w, errf(proto.CodeUnavailable, "server is draining: connect to another edge"))
		return
	}
	user, exp, err := e.verifier.Verify(auth.FromRequest(r))
	if err != nil {
		writeError(w, errf(proto.CodeUnauthorized, "%v", err))
		return
	}
	if !e.originAllowed(r) {
		writeError(w, errf(proto.CodeForbidden, "origin not allowed"))
		return
	}
	q := r.URL.Query()
	device := q.Get("device")
	if device != "" && !validID(device) {
		writeError(w, errf(proto.CodeBadRequest, "device must be 1-64 characters of [A-Za-z0-9_-]"))
		return
	}
	cursor, hasCursor := q.Get("cursor"), q.Has("cursor")
	// Released when the connection closes (OnClose), or here if it never opens.
	if cerr := e.conns.acquire(user); cerr != nil {
		writeError(w, cerr)
		return
	}
	socket, err := e.upgrader.Upgrade(w, r)
	if err != nil {
		e.conns.release(user)
		return // gws answered the client
	}
	ws := &wsSink{c: socket, idle: e.cfg.IdleTimeout}
	s := &session{e: e, user: user, device: device, exp: exp, out: ws, replaying: true}
	ws.s = s
	s.lastRead.Store(time.Now().UnixNano())
	ws.armDeadline()
	socket.Session().Store("s", s)
	if err := e.hub.add(s); err != nil {
		e.conns.release(user) // no read loop: no OnClose
		e.log.Warn("subscribe live", zap.Error(err))
		s.out.close(closeGoingAway, "cannot subscribe now: reconnect")
		return
	}
	e.m.connections.Inc()
	e.m.connects.Inc()
	go socket.ReadLoop()
	e.start(s, cursor, hasCursor)
}

// start sends hello and begins delivery: a replay from the cursor, or from
// the newest stored event.
func (e *Edge) start(s *session, cursor string, hasCursor bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	head, first, err := e.queueHead(ctx, s.user, false)
	if err != nil {
		e.log.Warn("queue head", zap.Error(err))
		s.close(closeGoingAway, "cannot read your queue now: reconnect")
		return
	}
	from := head
	var expired bool
	if hasCursor {
		var c uint64
		if c, expired = e.checkCursor(ctx, s.user, cursor, head, first); !expired {
			from = c
		}
	}
	hello := []byte(`{"type":"hello","proto":1,"user":` + strconv.Quote(s.user) + `,"cursor":"` + event.Cursor(head) + `"}`)
	s.mu.Lock()
	s.last = from
	s.queueLocked(hello)
	if expired {
		s.queueLocked((&Error{Code: proto.CodeCursorExpired, Message: "cursor unknown or expired: reload conversations, then continue from the hello cursor"}).frame(""))
	}
	s.replaying = false
	s.startCatchUpLocked(false)
	s.mu.Unlock()
}

// wsHandler adapts gws events to sessions.
type wsHandler struct{ e *Edge }

func sessionOf(c *gws.Conn) *session {
	v, _ := c.Session().Load("s")
	s, _ := v.(*session)
	return s
}

func (h *wsHandler) OnOpen(*gws.Conn) {} // the read deadline is set in ServeWS

func (h *wsHandler) OnClose(c *gws.Conn, _ error) {
	if s := sessionOf(c); s != nil {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		h.e.hub.remove(s)
		h.e.conns.release(s.user)
		h.e.m.connections.Dec()
	}
}

// alive notes a frame from the client. It runs on the read goroutine
// (control frames): the read deadline is moved by keepAlive, unless it
// would pass before keepAlive's next round.
func (h *wsHandler) alive(c *gws.Conn) {
	s := sessionOf(c)
	if s == nil {
		return
	}
	now := time.Now().UnixNano()
	s.lastRead.Store(now)
	if ws, ok := s.out.(*wsSink); ok && ws.deadline.Load()-now < int64(h.e.cfg.PingInterval) {
		go ws.armDeadline()
	}
}

// OnPing answers through the connection's bounded queue: a client that
// pings and never reads falls behind like any slow reader and is closed
// with 4008, rather than piling pongs up in the edge's memory.
func (h *wsHandler) OnPing(c *gws.Conn, payload []byte) {
	h.alive(c)
	if s := sessionOf(c); s != nil {
		s.pong(c, payload)
	}
}

func (h *wsHandler) OnPong(c *gws.Conn, _ []byte) { h.alive(c) }

// inFrame is any client frame; fields a type does not use are ignored.
type inFrame struct {
	Type   string   `json:"type"`
	ID     string   `json:"id"`
	To     string   `json:"to"`
	Conv   string   `json:"conv"`
	Text   *string  `json:"text"`
	Seq    *int64   `json:"seq"`
	Status string   `json:"status"`
	Cursor *string  `json:"cursor"`
	Users  []string `json:"users"`
}

// OnMessage hands the frame to a frame worker and waits for it: frames are
// still handled one at a time, in order, but the kilobytes of stack the
// handling needs (JSON, a send awaiting its store) are neither kept by the
// read goroutine for the connection's whole life nor grown anew per frame.
func (h *wsHandler) OnMessage(c *gws.Conn, msg *gws.Message) {
	done := make(chan struct{})
	h.e.frames.run(func() {
		defer close(done)
		h.handle(c, msg)
	})
	<-done
}

// frameWorkers is how many long-lived goroutines handle frames; beyond
// them (all busy, e.g. sends awaiting a slow store), a frame gets a
// goroutine of its own.
const frameWorkers = 64

// framePool runs functions on idle workers, or on a goroutine of their own.
type framePool struct {
	jobs chan func()
}

func (p *framePool) start(n int, stop <-chan struct{}) {
	p.jobs = make(chan func())
	for i := 0; i < n; i++ {
		go func() {
			for {
				select {
				case f := <-p.jobs:
					f()
				case <-stop:
					return
				}
			}
		}()
	}
}

func (p *framePool) run(f func()) {
	select {
	case p.jobs <- f: // an idle worker took it
	default:
		go f()
	}
}

func (h *wsHandler) handle(c *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	s := sessionOf(c)
	if s == nil {
		return
	}
	s.lastRead.Store(time.Now().UnixNano())
	if ws, ok := s.out.(*wsSink); ok {
		ws.armDeadline() // before the next read: exactly IdleTimeout after this frame
	}
	if msg.Opcode != gws.OpcodeText {
		s.send(errf(proto.CodeBadRequest, "binary frames are not accepted").frame(""))
		return
	}
	raw := msg.Bytes()
	f, cerr := decodeFrame(raw)
	if cerr != nil {
		s.send(cerr.frame(idOf(raw)))
		return
	}
	h.e.frame(s, f)
}

// idOf digs the id out of a frame that did not decode as a whole.
func idOf(raw []byte) string {
	var x struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &x)
	if validID(x.ID) {
		return x.ID
	}
	return ""
}

// frame runs one decoded client frame.
func (e *Edge) frame(s *session, f *inFrame) {
	switch f.Type {
	case "send":
		// The ack must reach this connection before the message's own msg
		// event: announcements are held back while the send is in flight.
		s.mu.Lock()
		s.sending++
		s.mu.Unlock()
		req := &SendRequest{ID: f.ID, To: f.To, Conv: f.Conv, Text: f.Text}
		ack, cerr := e.Send(context.Background(), s.user, req)
		var out []byte
		if cerr != nil {
			out = cerr.frame(f.ID)
		} else {
			out, _ = json.Marshal(ack)
		}
		s.mu.Lock()
		s.queueLocked(out)
		s.sending--
		if s.sending == 0 {
			s.releaseHeldLocked()
		}
		s.mu.Unlock()
	case "receipt":
		if cerr := e.Receipt(context.Background(), s.user, &ReceiptRequest{Conv: f.Conv, Seq: f.Seq, Status: f.Status}); cerr != nil {
			s.send(cerr.frame(f.ID))
		}
	case "sync":
		if f.Cursor == nil {
			s.send(errf(proto.CodeBadRequest, "sync needs a cursor").frame(f.ID))
			return
		}
		if cerr := e.writes.sync.check(s.user, "syncs"); cerr != nil {
			s.send(cerr.frame(f.ID))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		head, first, herr := e.queueHead(ctx, s.user, false)
		var c uint64
		var expired bool
		if herr == nil {
			c, expired = e.checkCursor(ctx, s.user, *f.Cursor, head, first)
		}
		cancel()
		if herr != nil {
			s.send(errUnavailable("sync", herr).frame(f.ID))
			return
		}
		if expired {
			s.send((&Error{Code: proto.CodeCursorExpired, Message: "cursor unknown or expired"}).frame(f.ID))
			return
		}
		s.mu.Lock()
		s.last = c
		s.startCatchUpLocked(true)
		s.mu.Unlock()
	case "ping":
		s.send([]byte(`{"type":"pong"}`))
	case "watch":
		if f.Users == nil {
			s.send(errf(proto.CodeBadRequest, "watch needs users").frame(f.ID))
			return
		}
		if cerr := e.writes.watch.check(s.user, "watch lists"); cerr != nil {
			s.send(cerr.frame(f.ID))
			return
		}
		if cerr := e.watch(s, f.Users); cerr != nil {
			s.send(cerr.frame(f.ID))
		}
	case "typing":
		if cerr := e.Typing(context.Background(), s.user, f.Conv); cerr != nil {
			s.send(cerr.frame(f.ID))
		}
	case "":
		s.send(errf(proto.CodeBadRequest, "frame has no type").frame(f.ID))
	default:
		s.send(errf(proto.CodeBadRequest, "unknown frame type %q", f.Type).frame(f.ID))
	}
}
