package client

import (
	"encoding/json"
)

// Event is one server frame of PROTOCOL.md section 3, flattened: only the
// fields its Type carries are set. Raw holds the frame as received, for fields
// this struct does not know.
type Event struct {
	Type         string          `json:"type"`
	Conv         string          `json:"conv,omitempty"`
	From         string          `json:"from,omitempty"`
	ID           string          `json:"id,omitempty"`
	Kind         string          `json:"kind,omitempty"`
	Text         string          `json:"text,omitempty"`
	Title        string          `json:"title,omitempty"`
	User         string          `json:"user,omitempty"`
	Status       string          `json:"status,omitempty"`
	Cursor       string          `json:"cursor,omitempty"`
	Code         string          `json:"code,omitempty"`
	Message      string          `json:"message,omitempty"`
	Seq          int64           `json:"seq,omitempty"`
	TS           int64           `json:"ts,omitempty"`
	LastSeen     int64           `json:"last_seen,omitempty"`
	Members      []string        `json:"members,omitempty"`
	Online       *bool           `json:"online,omitempty"`
	RetryAfterMs int64           `json:"retry_after_ms,omitempty"`
	Proto        int             `json:"proto,omitempty"`
	Raw          json.RawMessage `json:"-"`
}

// Stored reports whether e is a stored event: one that carries a cursor and
// is replayed on reconnect.
func (e Event) Stored() bool {
	return e.Cursor != "" && (e.Type == "msg" || e.Type == "receipt")
}

// wireEvent is Event as it is decoded: members stays raw because the HTTP API
// lists members as objects where the WebSocket lists user ids.
type wireEvent struct {
	Type         string          `json:"type"`
	Conv         string          `json:"conv"`
	From         string          `json:"from"`
	ID           string          `json:"id"`
	Kind         string          `json:"kind"`
	Text         string          `json:"text"`
	Title        string          `json:"title"`
	User         string          `json:"user"`
	Status       string          `json:"status"`
	Cursor       string          `json:"cursor"`
	Code         string          `json:"code"`
	Message      string          `json:"message"`
	Seq          int64           `json:"seq"`
	TS           int64           `json:"ts"`
	LastSeen     int64           `json:"last_seen"`
	Members      json.RawMessage `json:"members"`
	Online       *bool           `json:"online"`
	RetryAfterMs int64           `json:"retry_after_ms"`
	Proto        int             `json:"proto"`
}

// UnmarshalJSON decodes a frame (or an event object of the poll and history
// APIs) and keeps a copy of it in Raw. Unknown fields are ignored; members
// given as objects ({"user": ...}) are reduced to their user ids.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = Event{
		Type: w.Type, Conv: w.Conv, From: w.From, ID: w.ID, Kind: w.Kind,
		Text: w.Text, Title: w.Title, User: w.User, Status: w.Status,
		Cursor: w.Cursor, Code: w.Code, Message: w.Message, Seq: w.Seq,
		TS: w.TS, LastSeen: w.LastSeen, Online: w.Online,
		RetryAfterMs: w.RetryAfterMs, Proto: w.Proto,
		Members: decodeMembers(w.Members),
		Raw:     append(json.RawMessage(nil), b...),
	}
	return nil
}

func decodeMembers(raw json.RawMessage) []string {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var ids []string
	if json.Unmarshal(raw, &ids) == nil {
		return ids
	}
	var objs []struct {
		User string `json:"user"`
	}
	if json.Unmarshal(raw, &objs) == nil {
		ids = make([]string, 0, len(objs))
		for _, o := range objs {
			ids = append(ids, o.User)
		}
		return ids
	}
	return nil
}

// Client frames (PROTOCOL.md section 3, "Client to server").
type (
	sendFrame struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		To   string `json:"to,omitempty"`
		Conv string `json:"conv,omitempty"`
		Text string `json:"text"`
	}
	receiptFrame struct {
		Type   string `json:"type"`
		Conv   string `json:"conv"`
		Seq    int64  `json:"seq"`
		Status string `json:"status"`
	}
	syncFrame struct {
		Type   string `json:"type"`
		Cursor string `json:"cursor"`
	}
	watchFrame struct {
		Type  string   `json:"type"`
		Users []string `json:"users"`
	}
	typingFrame struct {
		Type string `json:"type"`
		Conv string `json:"conv"`
	}
)

var pingFrame = []byte(`{"type":"ping"}`)

// maxTrackedConvs bounds seenSeqs; past it, arbitrary conversations are
// forgotten (the tracker is a safety net behind the cursor, not the guarantee).
const maxTrackedConvs = 1 << 16

// seenSeqs remembers, per conversation, the highest seq passed on, so that a
// msg replayed twice is dropped. Not safe for concurrent use.
type seenSeqs struct {
	m   map[string]int64
	max int
}

func newSeenSeqs(max int) *seenSeqs {
	return &seenSeqs{m: make(map[string]int64), max: max}
}

// observe records (conv, seq) and reports whether it is new.
func (s *seenSeqs) observe(conv string, seq int64) bool {
	if seq <= 0 {
		return true
	}
	if last, ok := s.m[conv]; ok {
		if seq <= last {
			return false
		}
		s.m[conv] = seq
		return true
	}
	if len(s.m) >= s.max {
		drop := s.max / 8
		for k := range s.m {
			if drop <= 0 {
				break
			}
			delete(s.m, k)
			drop--
		}
	}
	s.m[conv] = seq
	return true
}

// item is one entry of the delivery queue: an event for OnEvent and/or the
// cursor that becomes Cursor() once the event has been handed over.
type item struct {
	ev     *Event
	cursor string
}

// dispatch is the single goroutine that calls OnEvent, in arrival order.
func (c *Client) dispatch() {
	for {
		select {
		case it := <-c.queue:
			c.deliver(it)
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *Client) deliver(it item) {
	if it.ev != nil && c.cfg.OnEvent != nil {
		c.cfg.OnEvent(*it.ev)
	}
	if it.cursor != "" {
		c.mu.Lock()
		c.cursor = it.cursor
		c.mu.Unlock()
	}
	if it.ev != nil && c.delivered != nil && it.ev.Type == "msg" && it.ev.Conv != "" && it.ev.From != c.User() {
		c.delivered.note(it.ev.Conv, it.ev.Seq)
	}
}

// enqueue hands an item to the dispatcher; it blocks while the queue is full,
// which slows the reader down as the server expects of a slow client.
func (c *Client) enqueue(it item) {
	select {
	case c.queue <- it:
	case <-c.ctx.Done():
	}
}

// handle routes one decoded frame. It runs on the reader goroutine.
func (cn *conn) handle(ev *Event) {
	c := cn.c
	switch ev.Type {
	case "hello":
		c.mu.Lock()
		c.hello = *ev
		adopt := c.resume == "" || cn.expired
		if adopt {
			c.resume = ev.Cursor
		}
		c.mu.Unlock()
		cn.gotHello, cn.expired = true, false
		if adopt {
			c.enqueue(item{cursor: ev.Cursor})
		}
		cn.helloOnce.Do(func() { close(cn.hello) })
	case "ack":
		c.handleAck(ev)
	case "pong":
	case "error":
		if ev.ID != "" {
			c.handleSendError(ev)
			return
		}
		if ev.Code == CodeCursorExpired {
			c.expireCursor(cn, ev.Message)
			return
		}
		c.enqueue(item{ev: ev})
	case "msg":
		c.mu.Lock()
		fresh := c.seen.observe(ev.Conv, ev.Seq) || c.syncs > 0
		if ev.Cursor != "" {
			c.resume = ev.Cursor
		}
		c.mu.Unlock()
		if !fresh {
			c.logf("client: dropping duplicate msg %s/%d", ev.Conv, ev.Seq)
			c.enqueue(item{cursor: ev.Cursor})
			return
		}
		c.enqueue(item{ev: ev, cursor: ev.Cursor})
	case "receipt":
		if ev.Cursor != "" {
			c.mu.Lock()
			c.resume = ev.Cursor
			c.mu.Unlock()
		}
		c.enqueue(item{ev: ev, cursor: ev.Cursor})
	case "synced":
		c.mu.Lock()
		c.syncs = max(0, c.syncs-1)
		c.mu.Unlock()
		c.enqueue(item{ev: ev})
	case "presence", "typing":
		c.enqueue(item{ev: ev})
	default:
		// Unknown types are ignored (PROTOCOL.md section 3).
	}
}

// expireCursor handles cursor_expired: it reports the error through OnEvent
// and continues from the hello cursor (of cn if its hello has arrived, else
// of the next hello).
func (c *Client) expireCursor(cn *conn, message string) {
	ev := &Event{Type: "error", Code: CodeCursorExpired, Message: message}
	ev.Raw, _ = json.Marshal(ev)
	it := item{ev: ev}
	c.mu.Lock()
	if cn != nil && cn.gotHello {
		c.resume = c.hello.Cursor
		it.cursor = c.resume
	} else {
		if cn != nil {
			cn.expired = true
		}
		c.resume = ""
	}
	c.mu.Unlock()
	c.logf("client: cursor expired, continuing from the hello cursor")
	c.enqueue(it)
}
