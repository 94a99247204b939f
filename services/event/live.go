package event

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
)

// A live announcement is what the fan-out publishes on a user's live
// subject after storing an entry in the user's queue: the entry's queue
// sequence, the sequence of the user's previous entry, the sequence of the
// source event in its conversation stream, then the stored document. Prev
// lets an edge see a gap (a dropped announcement) at once and refill it
// from the queue; Src lets it learn a conversation's last stored event
// without reading the stream (the next send's expected sequence).
const liveHeaderLen = 24

// Live is a live announcement taken apart. Seq 0 is a nudge ("catch up from
// the queue", sent when entries may have been stored unannounced) or, with
// a Doc, a live-only event (typing, group receipts) that is never stored.
type Live struct {
	Seq, Prev, Src uint64
	Doc            []byte
}

// EncodeLive builds a live announcement.
func EncodeLive(l Live) []byte {
	out := make([]byte, liveHeaderLen+len(l.Doc))
	binary.BigEndian.PutUint64(out[0:8], l.Seq)
	binary.BigEndian.PutUint64(out[8:16], l.Prev)
	binary.BigEndian.PutUint64(out[16:24], l.Src)
	copy(out[liveHeaderLen:], l.Doc)
	return out
}

// ErrBadLive is returned for a live announcement too short to be one.
var ErrBadLive = errors.New("event: bad live announcement")

// DecodeLive takes a live announcement apart; its Doc aliases data.
func DecodeLive(data []byte) (Live, error) {
	if len(data) < liveHeaderLen {
		return Live{}, ErrBadLive
	}
	return Live{
		Seq:  binary.BigEndian.Uint64(data[0:8]),
		Prev: binary.BigEndian.Uint64(data[8:16]),
		Src:  binary.BigEndian.Uint64(data[16:24]),
		Doc:  data[liveHeaderLen:],
	}, nil
}

// SourceHeader is the queue-entry header that records, per conversation
// stream, the highest source sequence already written to this user's queue.
// With it a queue write is idempotent forever, not only within a dedup window.
const SourceHeader = "Msg-Src"

// EncodeSources formats a source vector for SourceHeader.
func EncodeSources(v []uint64) string {
	var b strings.Builder
	for i, n := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(n, 10))
	}
	return b.String()
}

// DecodeSources reads a SourceHeader value into a vector of length n;
// missing or unreadable entries are zero.
func DecodeSources(s string, n int) []uint64 {
	v := make([]uint64, n)
	if s == "" {
		return v
	}
	for i, part := range strings.Split(s, ",") {
		if i >= n {
			break
		}
		v[i], _ = strconv.ParseUint(part, 10, 64)
	}
	return v
}
