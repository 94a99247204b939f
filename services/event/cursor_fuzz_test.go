package event_test

import (
	"testing"

	"messenger/services/event"
)

// FuzzParseCursor: the cursor a client gives back (WebSocket ?cursor=, the
// sync frame, GET /v1/poll?cursor=) is parsed by ParseCursor. A cursor it
// accepts is the one spelling Cursor makes of that position (no sign, no
// leading zero, no space, no overflow), so two strings never name the same
// position and a position always survives the round trip. Seeds:
// testdata/fuzz/FuzzParseCursor.
func FuzzParseCursor(f *testing.F) {
	f.Add("42")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := event.ParseCursor(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseCursor(%q) failed but returned %d", s, n)
			}
			return
		}
		if back := event.Cursor(n); back != s {
			t.Fatalf("ParseCursor(%q) = %d, which Cursor spells %q", s, n, back)
		}
		if m, err := event.ParseCursor(event.Cursor(n)); err != nil || m != n {
			t.Fatalf("round trip of %d: %d, %v", n, m, err)
		}
	})
}
