package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"messenger/subjects"
)

// StoredMsg is one message read back from a stream.
type StoredMsg struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
}

type directGetRequest struct {
	Seq        uint64 `json:"seq,omitempty"`
	NextBySubj string `json:"next_by_subj,omitempty"`
	Batch      int    `json:"batch,omitempty"`
	MaxBytes   int    `json:"max_bytes,omitempty"`
}

// ErrDirectGet is returned when the server answers a direct get with an error status.
var ErrDirectGet = errors.New("streams: direct get failed")

// ReadAfter reads, in one round trip, up to max messages on subject of
// stream with a sequence above after (a batch direct get: the stream must
// allow direct gets). more tells whether messages beyond the batch remain.
// It is how queues are replayed without a consumer per connection.
func ReadAfter(ctx context.Context, nc *nats.Conn, stream, subject string, after uint64, max int) (msgs []StoredMsg, more bool, err error) {
	msgs, more, err = readBatch(ctx, nc, stream, directGetRequest{Seq: after + 1, NextBySubj: subject, Batch: max, MaxBytes: 1 << 20})
	if err != nil {
		return msgs, false, fmt.Errorf("streams: read %s after %d: %w", subject, after, err)
	}
	return msgs, more, nil
}

// ReadRange reads, in one round trip, the messages of stream (any subject)
// with sequences from..to, at most max of them and about 1 MiB. through is
// the last sequence the answer accounts for: every sequence from..through
// not among msgs is not in the stream (deleted); through is below to when
// the batch was cut by its size, or when the server answering holds no more:
// in a cluster a direct get may be answered by a replica that has not stored
// the newest messages yet, so a caller that needs them asks again.
func ReadRange(ctx context.Context, nc *nats.Conn, stream string, from, to uint64, max int) (msgs []StoredMsg, through uint64, err error) {
	if to < from {
		return nil, to, nil
	}
	if span := to - from + 1; span < uint64(max) {
		max = int(span)
	}
	msgs, _, err = readBatch(ctx, nc, stream, directGetRequest{Seq: from, Batch: max, MaxBytes: 1 << 20})
	through = from - 1
	if len(msgs) > 0 {
		through = msgs[len(msgs)-1].Seq
	}
	for len(msgs) > 0 && msgs[len(msgs)-1].Seq > to { // stepped over deleted ones
		msgs, through = msgs[:len(msgs)-1], to
	}
	if err != nil {
		return msgs, through, fmt.Errorf("streams: read %s %d..%d: %w", stream, from, to, err)
	}
	return msgs, through, nil
}

// readBatch makes one batch direct get and gathers its answers until the
// server says the batch is over.
func readBatch(ctx context.Context, nc *nats.Conn, stream string, r directGetRequest) (msgs []StoredMsg, more bool, err error) {
	req, _ := json.Marshal(r)
	inbox := nc.NewRespInbox()
	// A channel sized for the answer: SubscribeSync would allocate one of
	// 65,536 slots (512 KiB) on every read.
	ch := make(chan *nats.Msg, r.Batch+2)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, false, fmt.Errorf("subscribe: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subjects.DirectGet(stream), inbox, req); err != nil {
		return nil, false, fmt.Errorf("request: %w", err)
	}
	for {
		m, err := next(ctx, ch)
		if err != nil {
			return msgs, false, err
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "404": // nothing from there on
			return msgs, false, nil
		case "204": // end of batch
			np, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return msgs, np > 0, nil
		default:
			return msgs, false, fmt.Errorf("%w: %s %s: %s", ErrDirectGet, stream, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return msgs, false, fmt.Errorf("%w: %s: no sequence header", ErrDirectGet, stream)
		}
		msgs = append(msgs, StoredMsg{Seq: seq, Subject: m.Header.Get("Nats-Subject"), Header: m.Header, Data: m.Data})
	}
}

type multiLastRequest struct {
	MultiLast []string `json:"multi_last"`
	Batch     int      `json:"batch,omitempty"`
}

// ReadLastOf reads, in one round trip, the last message of each of the
// given subjects of stream (at most 1024); subjects without one are absent
// from the result.
func ReadLastOf(ctx context.Context, nc *nats.Conn, stream string, subjects_ []string) (map[string][]byte, error) {
	if len(subjects_) == 0 {
		return map[string][]byte{}, nil
	}
	out, err := readLast(ctx, nc, stream, multiLastRequest{MultiLast: subjects_, Batch: len(subjects_)})
	if err != nil {
		return out, fmt.Errorf("streams: read last of %s: %w", stream, err)
	}
	return out, nil
}

// ReadLastMatching reads, in one round trip, the last message of each
// subject of stream that matches filter (a subject with wildcards), at most
// max of them.
func ReadLastMatching(ctx context.Context, nc *nats.Conn, stream, filter string, max int) (map[string][]byte, error) {
	out, err := readLast(ctx, nc, stream, multiLastRequest{MultiLast: []string{filter}, Batch: max})
	if err != nil {
		return out, fmt.Errorf("streams: read last matching %s: %w", filter, err)
	}
	return out, nil
}

// readLast makes one multi-last direct get and gathers its answers by
// subject until the server says the batch is over.
func readLast(ctx context.Context, nc *nats.Conn, stream string, r multiLastRequest) (map[string][]byte, error) {
	out := make(map[string][]byte, r.Batch)
	req, _ := json.Marshal(r)
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, r.Batch+2)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subjects.DirectGet(stream), inbox, req); err != nil {
		return nil, err
	}
	for {
		m, err := next(ctx, ch)
		if err != nil {
			return out, err
		}
		switch status := m.Header.Get("Status"); status {
		case "":
			out[m.Header.Get("Nats-Subject")] = m.Data
		case "404", "204":
			return out, nil
		default:
			return out, fmt.Errorf("%w: %s %s: %s", ErrDirectGet, stream, status, m.Header.Get("Description"))
		}
	}
}

// next waits for the next answer of a direct get.
func next(ctx context.Context, ch <-chan *nats.Msg) (*nats.Msg, error) {
	select {
	case m := <-ch:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
