package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// errBadEvent marks an error that handling the event again cannot cure (it
// is malformed, or names what does not exist): the event is skipped,
// counted and logged at error level. Every other error (a timeout, no
// responders, a connection moving) is taken as transient and the event is
// retried until it is handled or its partition stops: an acked event is
// never dropped because NATS was away for a moment.
var errBadEvent = errors.New("bad event")

// bad marks err as permanent for its event.
func bad(err error) error { return fmt.Errorf("%w: %w", errBadEvent, err) }

// permanent tells an error no retry can cure: marked bad, or stored data
// that does not decode (a retry reads the same bytes).
func permanent(err error) bool {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return errors.Is(err, errBadEvent) || errors.As(err, &syntax) || errors.As(err, &typ)
}

// Backoff between retries of one transient failure: from retryFirst,
// doubling, at most retryMax (a partition stuck on a paused node tries
// again every few seconds and notices it back within that).
const (
	retryFirst = 50 * time.Millisecond
	retryMax   = 2 * time.Second
)

// nextBackoff doubles d up to retryMax.
func nextBackoff(d time.Duration) time.Duration { return min(2*d, retryMax) }

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
