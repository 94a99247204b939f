package fanout

import (
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// casWrite is a write stored only if its subject's last sequence is still
// expect (0: the subject holds nothing).
type casWrite struct {
	msg    *nats.Msg
	expect uint64
}

// publishTogether publishes ws at once and awaits their acks together, for
// at most 5 s in all. It returns each write's stored sequence, 0 for one
// that failed, was refused or got no ack in time (the caller retries it on
// its own; one that timed out may be stored, which its compare-and-set
// then tells).
func publishTogether(js jetstream.JetStream, ws []casWrite) []uint64 {
	seqs := make([]uint64, len(ws))
	futs := make([]jetstream.PubAckFuture, len(ws))
	for i, w := range ws {
		futs[i], _ = js.PublishMsgAsync(w.msg, jetstream.WithExpectLastSequencePerSubject(w.expect))
	}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for i, fut := range futs {
		if fut == nil {
			continue
		}
		select {
		case ack := <-fut.Ok():
			seqs[i] = ack.Sequence
		case <-fut.Err():
		case <-timeout.C:
			timeout.Reset(0) // the rest: only what has come already
		}
	}
	return seqs
}
