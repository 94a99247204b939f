package edge

import (
	"encoding/json"
	"testing"

	"messenger/services/event"
)

// The allocations and CPU of the send and delivery paths, without I/O:
//
//	go test -run '^$' -bench 'Frame|Offer|Live' -benchmem ./edge/

type discardSink struct{}

func (discardSink) write(_ []byte, done func()) { done() }
func (discardSink) close(uint16, string)        {}

func BenchmarkDecodeSendFrame(b *testing.B) {
	raw := []byte(`{"type":"send","id":"k2V8mQ0cTt6PiAlS9oWjvA","to":"bob","text":"a message of some forty bytes, typical.."}`)
	e := &Edge{cfg: Config{}.withDefaults()}
	b.ReportAllocs()
	for b.Loop() {
		var f inFrame
		if err := json.Unmarshal(raw, &f); err != nil || hasLoneSurrogate(raw) {
			b.Fatal(err)
		}
		if e.validateSend("alice", &SendRequest{ID: f.ID, To: f.To, Conv: f.Conv, Text: f.Text}) != nil {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkEncodeStoredEvent(b *testing.B) {
	text := "a message of some forty bytes, typical.."
	b.ReportAllocs()
	for b.Loop() {
		ev := event.Msg{V: 1, Type: "msg", Conv: "dFBpM0kK2foLt9KeLtBjUCmo4cNIVvD3K", Seq: 42, TS: 1795778851883,
			From: "alice", ID: "k2V8mQ0cTt6PiAlS9oWjvA", Kind: "text", Text: text, To: "bob"}
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOfferLive is the delivery of one live announcement to one
// connection: decode the announcement, add the cursor, queue the frame.
func BenchmarkOfferLive(b *testing.B) {
	e := &Edge{cfg: Config{}.withDefaults(), m: newMetrics(nil)}
	s := &session{e: e, user: "bob", out: discardSink{}}
	doc := []byte(`{"v":1,"type":"msg","conv":"dFBpM0kK2foLt9KeLtBjUCmo4cNIVvD3K","seq":42,"ts":1795778851883,"from":"alice","id":"k2V8mQ0cTt6PiAlS9oWjvA","kind":"text","text":"a message of some forty bytes, typical..","to":"bob"}`)
	var seq uint64
	b.ReportAllocs()
	for b.Loop() {
		seq++
		data := event.EncodeLive(event.Live{Seq: seq, Prev: seq - 1, Doc: doc})
		l, err := event.DecodeLive(data)
		if err != nil {
			b.Fatal(err)
		}
		s.offer(l.Seq, l.Prev, l.Doc)
	}
	if s.last != seq {
		b.Fatalf("delivered up to %d of %d", s.last, seq)
	}
}
