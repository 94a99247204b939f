package event_test

import (
	"encoding/json"
	"testing"

	"messenger/client/proto"
	"messenger/services/event"
)

func TestDirectConvIsSymmetricAndAValidID(t *testing.T) {
	a, b := event.DirectConv("alice", "bob"), event.DirectConv("bob", "alice")
	if a != b {
		t.Fatalf("%s != %s", a, b)
	}
	if a == event.DirectConv("alice", "bobby") || a == event.DirectConv("alic", "ebob") {
		t.Fatal("different pairs share a conversation")
	}
	if !proto.ValidID(a) {
		t.Fatalf("id %q is not a valid conversation id", a)
	}
}

func TestWithCursorAndParse(t *testing.T) {
	frame := event.WithCursor([]byte(`{"type":"msg","seq":3}`), 42)
	var m map[string]any
	if err := json.Unmarshal(frame, &m); err != nil || m["cursor"] != "42" || m["seq"].(float64) != 3 {
		t.Fatalf("frame %s: %v", frame, err)
	}
	for _, good := range []string{"0", "7", "18446744073709551615"} {
		if _, err := event.ParseCursor(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	for _, bad := range []string{"", "-1", "x", "01", "1.5", "18446744073709551616"} {
		if _, err := event.ParseCursor(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestLiveAndSources(t *testing.T) {
	l, err := event.DecodeLive(event.EncodeLive(event.Live{Seq: 9, Prev: 4, Src: 77, Doc: []byte("{}")}))
	if err != nil || l.Seq != 9 || l.Prev != 4 || l.Src != 77 || string(l.Doc) != "{}" {
		t.Fatalf("%+v %v", l, err)
	}
	if _, err := event.DecodeLive([]byte("short")); err == nil {
		t.Fatal("short announcement decoded")
	}
	v := event.DecodeSources(event.EncodeSources([]uint64{1, 0, 77}), 4)
	if v[0] != 1 || v[1] != 0 || v[2] != 77 || v[3] != 0 {
		t.Fatalf("sources %v", v)
	}
}

func TestSummaryMergeKeepsBothCopies(t *testing.T) {
	msg := func(seq uint64, from string) *event.Msg {
		return &event.Msg{Conv: "d1", Seq: seq, TS: int64(seq), From: from, To: "x", Kind: event.KindText}
	}
	// a: events 1-3 (2 and 3 from the peer); b: 1-5 with a read up to 2.
	var a, b event.Summary
	for _, m := range []*event.Msg{msg(1, "me"), msg(2, "p"), msg(3, "p")} {
		a.ApplyMsg("me", m, []byte(`{}`), 0, nil)
	}
	for _, m := range []*event.Msg{msg(1, "me"), msg(2, "p"), msg(3, "p"), msg(4, "me"), msg(5, "p")} {
		b.ApplyMsg("me", m, []byte(`{}`), 0, nil)
	}
	b.ApplyReceipt(2, event.StatusRead)
	a.Merge(&b)
	if a.LastSeq != 5 || a.ReadSeq != 2 || a.DeliveredSeq != 2 {
		t.Fatalf("merged last %d read %d delivered %d, want 5 2 2", a.LastSeq, a.ReadSeq, a.DeliveredSeq)
	}
	if a.Unread != 2 || len(a.Others) != 2 || a.Others[0] != [2]uint64{3, 3} || a.Others[1] != [2]uint64{5, 5} {
		t.Fatalf("merged unread %d others %v, want 2 [[3 3] [5 5]]", a.Unread, a.Others)
	}
	// Merging the older copy into the newer one gives the same.
	var c event.Summary
	for _, m := range []*event.Msg{msg(1, "me"), msg(2, "p"), msg(3, "p")} {
		c.ApplyMsg("me", m, []byte(`{}`), 0, nil)
	}
	b.Merge(&c)
	if b.LastSeq != 5 || b.Unread != 2 {
		t.Fatalf("reverse merge: last %d unread %d", b.LastSeq, b.Unread)
	}
}
