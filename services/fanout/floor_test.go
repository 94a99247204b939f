package fanout

import "testing"

func TestFloorAdvancesOnlyOverFinishedRuns(t *testing.T) {
	f := newFloor(10)
	f.start(11, 2)
	f.start(12, 0)
	f.start(13, 1)
	if f.value() != 10 {
		t.Fatalf("floor %d before anything finished", f.value())
	}
	f.finish(13)
	f.finish(11)
	if f.value() != 10 {
		t.Fatalf("floor %d with 11 half done", f.value())
	}
	f.finish(11)
	if f.value() != 13 {
		t.Fatalf("floor %d, want 13", f.value())
	}
}
