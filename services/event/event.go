package event

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// Version is the schema version written in field v of every stored event.
const Version = 1

// Event types as they appear in the `type` field.
const (
	TypeMsg     = "msg"
	TypeReceipt = "receipt"
)

// Kinds of msg events.
const (
	KindText          = "text"
	KindGroupCreated  = "group_created"
	KindMemberAdded   = "member_added"
	KindMemberRemoved = "member_removed"
	KindTitleChanged  = "title_changed"
)

// Receipt statuses.
const (
	StatusDelivered = "delivered"
	StatusRead      = "read"
)

// Conversation kinds.
const (
	ConvDirect = "direct"
	ConvGroup  = "group"
)

// Msg is a stored conversation event: the msg frame of PROTOCOL.md without
// its cursor, plus the schema version. To is set on direct text messages so
// that the conversation's membership can be rebuilt from the stream alone.
type Msg struct {
	V       int      `json:"v"`
	Type    string   `json:"type"`
	Conv    string   `json:"conv"`
	Seq     uint64   `json:"seq"`
	TS      int64    `json:"ts"`
	From    string   `json:"from"`
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`
	Text    string   `json:"text,omitempty"`
	To      string   `json:"to,omitempty"`
	Title   string   `json:"title,omitempty"`
	Members []string `json:"members,omitempty"`
	User    string   `json:"user,omitempty"`
}

// Receipt is a stored receipt: user has everything up to Seq of Conv in the
// given status. Receipts carry no conversation seq of their own. Peer, in a
// direct conversation, is its other member: whom to tell, without a lookup.
type Receipt struct {
	V      int    `json:"v"`
	Type   string `json:"type"`
	Conv   string `json:"conv"`
	Seq    uint64 `json:"seq"`
	User   string `json:"user"`
	Status string `json:"status"`
	TS     int64  `json:"ts"`
	Peer   string `json:"peer,omitempty"`
}

// Head is the part of any stored event needed to route it.
type Head struct {
	Type string `json:"type"`
	Conv string `json:"conv"`
	Seq  uint64 `json:"seq"`
	TS   int64  `json:"ts"`
	// From and To name a direct conversation's two members (To is empty
	// on group events).
	From string `json:"from"`
	To   string `json:"to"`
	// Kind and User (msg events): what an edge needs to notice that a
	// watcher's presence visibility may have changed.
	Kind string `json:"kind"`
	User string `json:"user"`
}

// DirectConv returns the conversation id of the direct conversation between
// a and b: the same for both orders, so that first sends from both sides at
// once land in one conversation without any coordination.
func DirectConv(a, b string) string {
	if b < a {
		a, b = b, a
	}
	h := sha256.Sum256([]byte(a + "\x00" + b))
	return "d" + base64.RawURLEncoding.EncodeToString(h[:24])
}

// IsDirectConv tells whether conv is a direct conversation's id (made by
// DirectConv; a group's id starts with "g").
func IsDirectConv(conv string) bool { return len(conv) > 0 && conv[0] == 'd' }

// DirectMeta is the metadata of the direct conversation of a and b: it
// never changes, so it is never stored (a direct message names both).
func DirectMeta(a, b string) *Meta {
	if b < a {
		a, b = b, a
	}
	return &Meta{Kind: ConvDirect, Members: []string{a, b}}
}

// WithCursor returns the client frame of a stored event: its JSON with the
// cursor field added. doc must be a JSON object.
func WithCursor(doc []byte, cursor uint64) []byte {
	if len(doc) < 2 || doc[len(doc)-1] != '}' {
		return doc
	}
	out := make([]byte, 0, len(doc)+32)
	out = append(out, doc[:len(doc)-1]...)
	out = append(out, `,"cursor":"`...)
	out = strconv.AppendUint(out, cursor, 10)
	out = append(out, `"}`...)
	return out
}

// Cursor formats a queue position as the opaque cursor string of PROTOCOL.md.
func Cursor(seq uint64) string { return strconv.FormatUint(seq, 10) }

// ParseCursor reads a cursor made by Cursor.
func ParseCursor(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("event: bad cursor %q", s)
	}
	return n, nil
}

// DecodeHead reads the routing fields of a stored event.
func DecodeHead(doc []byte) (Head, error) {
	var h Head
	if err := json.Unmarshal(doc, &h); err != nil {
		return h, fmt.Errorf("event: decode: %w", err)
	}
	return h, nil
}

// Watermark is what the watermarks bucket holds for one member of a
// conversation. Src is the conversation-stream sequence of the receipt
// that last raised it, so that a replayed receipt is recognised as the one
// that did and its queue entries are (idempotently) written again.
type Watermark struct {
	Delivered uint64 `json:"d"`
	Read      uint64 `json:"r"`
	Src       uint64 `json:"src"`
}

// Presence is a user's presence as watchers are told it: the presence frame
// of PROTOCOL.md section 3 (last_seen only when offline).
type Presence struct {
	// V is the schema version: set by the presence service on pres.chg
	// and in KV presence (absent in copies written before 2026-12-05 and
	// in the edge's own frames).
	V        int    `json:"v,omitempty"`
	Type     string `json:"type"`
	User     string `json:"user"`
	Status   string `json:"status"`
	LastSeen int64  `json:"last_seen,omitempty"`
}

// Presence statuses.
const (
	StatusOnline  = "online"
	StatusOffline = "offline"
)

// PresenceReport is what an edge tells the presence service: one user
// connected (On) or gone (!On) on that edge, or, in a sync, all its users.
type PresenceReport struct {
	V     int      `json:"v"` // schema version (0 from edges older than 2026-12-05)
	Edge  string   `json:"edge"`
	User  string   `json:"user,omitempty"`
	On    bool     `json:"on,omitempty"`
	Users []string `json:"users,omitempty"` // sync: every user the edge holds
	Round uint64   `json:"round,omitempty"` // sync: which full report this chunk belongs to
	Last  bool     `json:"last,omitempty"`  // sync: the round's final chunk
}
