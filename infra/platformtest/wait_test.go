package platformtest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fatalTB records the failure of a wait instead of failing the test.
type fatalTB struct {
	testing.TB
	failure string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.failure = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// wait runs waitProgress on a fatalTB and returns its failure, if any.
func wait(t *testing.T, stall, limit time.Duration, f func() (int, error)) string {
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		waitProgress(tb, stall, limit, f)
	}()
	<-done
	return tb.failure
}

func TestWaitProgress(t *testing.T) {
	notYet := errors.New("not yet")
	t.Run("goes on while progressing, past the stall time", func(t *testing.T) {
		began := time.Now()
		failure := wait(t, 100*time.Millisecond, time.Minute, func() (int, error) {
			n := int(time.Since(began) / (20 * time.Millisecond))
			if time.Since(began) < 500*time.Millisecond {
				return n, notYet
			}
			return n, nil
		})
		if failure != "" {
			t.Fatal(failure)
		}
	})
	t.Run("fails without progress", func(t *testing.T) {
		began := time.Now()
		failure := wait(t, 100*time.Millisecond, time.Minute, func() (int, error) { return 7, notYet })
		if !strings.Contains(failure, "no progress for 100ms (at 7") || !strings.Contains(failure, "not yet") {
			t.Fatalf("failure %q", failure)
		}
		if d := time.Since(began); d > 10*time.Second {
			t.Fatalf("failed after %v", d)
		}
	})
	t.Run("fails at the cap while progressing", func(t *testing.T) {
		n := 0
		failure := wait(t, time.Minute, 200*time.Millisecond, func() (int, error) { n++; return n, notYet })
		if !strings.Contains(failure, "not done within 200ms") {
			t.Fatalf("failure %q", failure)
		}
	})
}
