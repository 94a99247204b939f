package platformtest

import (
	"fmt"
	"testing"
	"time"
)

// Waiting for a volume of work (1,500 messages, a page of history, a
// projection of 100 rows) is waiting on its progress: the wait goes on as
// long as the work advances and fails when nothing has moved for Stall, or
// when the whole wait passes Cap. A fixed total time for a volume of work
// fails on a busy machine while nothing is wrong: CI runs the suite on two
// cores that other work shares, and the same test takes five times longer
// there than alone.
const (
	// Stall is how long a wait goes on without progress before it fails:
	// far above any pause a loaded machine makes (a GC under -race, a
	// package being linked next door), far below the suite's timeout.
	Stall = 30 * time.Second
	// Cap bounds a whole wait that keeps progressing, against a livelock
	// in which the count creeps on for ever.
	Cap = 5 * time.Minute
	// Patience bounds a wait for one event that is not a volume of work
	// (a frame, a close, a list that shows a message): generous, since a
	// loaded machine delays it too; a test that fails waits this long.
	Patience = 30 * time.Second
)

// WaitProgress waits until f returns a nil error. Along with the error, f
// returns how far the work has got: any number that grows as it advances
// (messages received, rows projected, frames read). The wait fails the test
// with f's last error when that number has not grown for Stall, or when the
// whole wait passes Cap.
func WaitProgress(t testing.TB, f func() (progress int, err error)) {
	t.Helper()
	waitProgress(t, Stall, Cap, f)
}

func waitProgress(t testing.TB, stall, limit time.Duration, f func() (int, error)) {
	t.Helper()
	began := time.Now()
	best, moved := -1, began
	for {
		n, err := f()
		if err == nil {
			return
		}
		now := time.Now()
		if n > best {
			best, moved = n, now
		}
		switch {
		case now.Sub(moved) > stall:
			t.Fatalf("no progress for %v (at %d after %v): %v", stall, best, now.Sub(began).Round(time.Millisecond), err)
		case now.Sub(began) > limit:
			t.Fatalf("not done within %v, still progressing (at %d): %v", limit, best, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitCount waits until count() reaches n, for as long as it keeps growing
// (WaitProgress), and returns the last count. what names the things
// counted, for the failure message.
func WaitCount(t testing.TB, what string, n int, count func() int) int {
	t.Helper()
	var got int
	WaitProgress(t, func() (int, error) {
		if got = count(); got < n {
			return got, fmt.Errorf("%d of %d %s", got, n, what)
		}
		return got, nil
	})
	return got
}
