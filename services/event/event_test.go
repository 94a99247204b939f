package event_test

import (
	"encoding/json"
	"testing"

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
	if len(a) > 64 {
		t.Fatalf("id %q over 64 characters", a)
	}
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			t.Fatalf("id %q has %q", a, c)
		}
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
