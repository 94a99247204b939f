package projector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/services/event"
	"messenger/streams"
	"messenger/subjects"
)

// The history check compares each conversation stream with ClickHouse:
// every stream sequence up to the projector's ack floor must be in
// ClickHouse (a message in `messages`, a receipt in `receipts`, and a
// membership event in `membership` too) or in the dead letters. It counts
// the distinct stream sequences per partition in ranges of bucketWidth
// (one scan of each table for every partition), lists the sequences only
// in the ranges that come short, and confirms a hole by reading it from the
// stream. Plain SQL on the table names, valid on ClickHouse 18.16 and
// current versions, on local or Distributed tables alike.

const (
	// bucketWidth is the width of the sequence ranges counted at once.
	bucketWidth = 65536
	// partsPerKey folds (partition, bucket) into one number for the SQL:
	// bucket*partsPerKey + partition (streams allow at most 1024 partitions).
	partsPerKey = 1024
	// keysPerQuery bounds the ranges listed by one query (each lists up to
	// bucketWidth sequences per table).
	keysPerQuery = 16
	// confirmAfter: a sequence missing from a listing is listed again this
	// much later before it is called a hole (an insert into a Distributed
	// table reaches its shard asynchronously).
	confirmAfter = time.Second
)

// membershipKinds are the msg kinds that also make a membership row (toRows).
var membershipKinds = []string{event.KindGroupCreated, event.KindMemberAdded, event.KindMemberRemoved, event.KindTitleChanged}

// PartitionCheck is what a history check found in one partition.
type PartitionCheck struct {
	Partition int
	// From and Floor bound the stream sequences checked: Floor is the
	// consumer's ack floor (0: nothing projected yet, nothing checked).
	From, Floor uint64
	// Holes are the runs of events missing from ClickHouse and from the
	// dead letters; Missing counts their events.
	Holes   []SeqRange
	Missing int
	// Repaired counts the missing events projected again (repair only).
	Repaired int
}

// CheckReport is a history check, partition by partition.
type CheckReport struct {
	Partitions []PartitionCheck
	// Conversations counts the conversations whose conversations row is
	// missing or behind their checked events (conversations.go);
	// ConversationsRepaired those written again (repair only).
	Conversations, ConversationsRepaired int
}

// Missing is the number of missing events over every partition.
func (r CheckReport) Missing() int {
	n := 0
	for _, c := range r.Partitions {
		n += c.Missing
	}
	return n
}

// Remaining is the number of missing events not repaired.
func (r CheckReport) Remaining() int {
	n := 0
	for _, c := range r.Partitions {
		n += c.Missing - c.Repaired
	}
	return n
}

// bucketKey names partition part's range of sequences b*bucketWidth.. in SQL.
func bucketKey(part int, b uint64) uint64 { return b*partsPerKey + uint64(part) }

// CheckHistory checks partitions parts (every partition when nil) and,
// with repair, projects the missing events again from the stream through
// the projector's insert path (a row ClickHouse refuses becomes a dead
// letter, as always).
func (p *Projector) CheckHistory(ctx context.Context, parts []int, repair bool) (CheckReport, error) {
	return p.checkHistory(ctx, parts, nil, repair)
}

// checkHistory checks partitions parts from stream sequence from[part] on
// (from the first when absent).
func (p *Projector) checkHistory(ctx context.Context, parts []int, from map[int]uint64, repair bool) (CheckReport, error) {
	if parts == nil {
		for part := range p.h.Conv {
			parts = append(parts, part)
		}
	}
	var rep CheckReport
	floors := make([]uint64, len(p.h.Conv))
	firsts := make([]uint64, len(p.h.Conv))
	for _, part := range parts {
		floor, first, err := p.checkBounds(ctx, part)
		if err != nil {
			return rep, err
		}
		floors[part], firsts[part] = floor, max(first, from[part])
	}
	dead, err := p.deadSeqs(ctx)
	if err != nil {
		return rep, err
	}
	counts, err := p.countBuckets(ctx, firsts, floors)
	if err != nil {
		return rep, err
	}
	// Ranges whose counts come short (or over: a dead letter that also went
	// in would hide a hole) are listed.
	var short []uint64
	for _, part := range parts {
		for b := firsts[part] / bucketWidth; firsts[part] <= floors[part] && b <= floors[part]/bucketWidth; b++ {
			lo, hi := max(b*bucketWidth, firsts[part]), min(b*bucketWidth+bucketWidth-1, floors[part])
			c := counts[bucketKey(part, b)]
			if c == nil {
				c = &bucketCounts{}
			}
			if c.events+dead.count(part, lo, hi) != hi-lo+1 || c.membership != c.membershipKinds {
				short = append(short, bucketKey(part, b))
			}
		}
	}
	candidates, err := p.listMissing(ctx, short, floors, firsts, dead)
	if err != nil {
		return rep, err
	}
	if len(candidates) > 0 {
		if !sleep(ctx, confirmAfter) {
			return rep, ctx.Err()
		}
		again, err := p.listMissing(ctx, keysOf(candidates), floors, firsts, dead)
		if err != nil {
			return rep, err
		}
		candidates = intersect(candidates, again)
	}
	groups, direct, err := p.staleConversations(ctx, firsts, floors)
	if err != nil {
		return rep, err
	}
	rep.Conversations = len(groups) + len(direct)
	if repair && rep.Conversations > 0 {
		// A group with a membership event among the holes is folded
		// again when the repair below projects that event.
		if rep.ConversationsRepaired, err = p.repairConversations(ctx, groups, direct); err != nil {
			return rep, err
		}
	}
	for _, part := range parts {
		pc := PartitionCheck{Partition: part, From: firsts[part], Floor: floors[part]}
		for _, r := range candidates[part] {
			// Only what the stream holds is a hole; with repair it goes in.
			err := p.readStream(ctx, part, r.From, r.To, func(evs []storedEvent) error {
				for _, e := range evs {
					pc.Holes = appendSeq(pc.Holes, e.streamSeq)
				}
				pc.Missing += len(evs)
				if !repair {
					return nil
				}
				if err := p.project(ctx, part, evs); err != nil {
					return err
				}
				pc.Repaired += len(evs)
				return nil
			})
			if err != nil {
				rep.Partitions = append(rep.Partitions, pc)
				return rep, fmt.Errorf("projector: history check of partition %d: %w", part, err)
			}
		}
		rep.Partitions = append(rep.Partitions, pc)
	}
	return rep, nil
}

// checkBounds is the consumer's ack floor on partition part (0 without a
// consumer) and the stream's first sequence.
func (p *Projector) checkBounds(ctx context.Context, part int) (floor, first uint64, err error) {
	c, err := p.h.Conv[part].Consumer(ctx, streams.ProjectorDurable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, 1, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("projector: consumer of partition %d: %w", part, err)
	}
	if floor, err = p.ackFloor(ctx, c); err != nil {
		return 0, 0, fmt.Errorf("projector: consumer of partition %d: %w", part, err)
	}
	info, err := p.h.Conv[part].Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("projector: stream of partition %d: %w", part, err)
	}
	return floor, max(info.State.FirstSeq, 1), nil
}

// deadSet is the stream sequences of the projector's dead letters, by partition.
type deadSet map[int]map[uint64]bool

func (d deadSet) count(part int, lo, hi uint64) uint64 {
	n := uint64(0)
	for s := range d[part] {
		if s >= lo && s <= hi {
			n++
		}
	}
	return n
}

// deadSeqs reads where every dead letter of the projector came from.
func (p *Projector) deadSeqs(ctx context.Context) (deadSet, error) {
	out := deadSet{}
	subject := subjects.DeadLetters("projector")
	var after uint64
	for {
		msgs, more, err := streams.ReadAfter(ctx, p.js.Conn(), streams.DeadLetterStream, subject, after, 256)
		if err != nil {
			return nil, fmt.Errorf("projector: read dead letters: %w", err)
		}
		for _, m := range msgs {
			after = m.Seq
			name, ok := strings.CutPrefix(m.Header.Get(streams.DeadStreamHeader), streams.ConvStreamPrefix)
			part, err1 := strconv.Atoi(name)
			seq, err2 := strconv.ParseUint(m.Header.Get(streams.DeadSequenceHeader), 10, 64)
			if !ok || err1 != nil || err2 != nil {
				continue
			}
			if out[part] == nil {
				out[part] = map[uint64]bool{}
			}
			out[part][seq] = true
		}
		if !more && len(msgs) < 256 {
			return out, nil
		}
	}
}

// bucketCounts are the distinct stream sequences ClickHouse holds in one
// range: events (messages and receipts), the membership events among the
// messages, and the membership rows.
type bucketCounts struct{ events, membershipKinds, membership uint64 }

// countBuckets counts, in one scan of each table, the distinct stream
// sequences up to each partition's floor, per partition and range.
func (p *Projector) countBuckets(ctx context.Context, firsts, floors []uint64) (map[uint64]*bucketCounts, error) {
	out := map[uint64]*bucketCounts{}
	get := func(part uint16, b uint64) *bucketCounts {
		k := bucketKey(int(part), b)
		if out[k] == nil {
			out[k] = &bucketCounts{}
		}
		return out[k]
	}
	const where = " WHERE stream_seq >= arrayElement(?, part + 1) AND stream_seq <= arrayElement(?, part + 1) GROUP BY part, b"
	for _, q := range []struct {
		sql  string
		args []any
		add  func(c *bucketCounts, n, m uint64)
	}{
		{"SELECT part, intDiv(stream_seq, 65536) AS b, uniqExact(stream_seq), uniqExactIf(stream_seq, has(?, kind)) FROM messages" + where,
			[]any{membershipKinds, firsts, floors}, func(c *bucketCounts, n, m uint64) { c.events += n; c.membershipKinds += m }},
		{"SELECT part, intDiv(stream_seq, 65536) AS b, uniqExact(stream_seq), toUInt64(0) FROM receipts" + where,
			[]any{firsts, floors}, func(c *bucketCounts, n, _ uint64) { c.events += n }},
		{"SELECT part, intDiv(stream_seq, 65536) AS b, uniqExact(stream_seq), toUInt64(0) FROM membership" + where,
			[]any{firsts, floors}, func(c *bucketCounts, n, _ uint64) { c.membership += n }},
	} {
		rows, err := p.ch.Query(ctx, q.sql, q.args...)
		if err != nil {
			return nil, fmt.Errorf("projector: history check: count: %w", err)
		}
		for rows.Next() {
			var (
				part    uint16
				b, n, m uint64
			)
			if err := rows.Scan(&part, &b, &n, &m); err != nil {
				rows.Close()
				return nil, fmt.Errorf("projector: history check: count: %w", err)
			}
			q.add(get(part, b), n, m)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("projector: history check: count: %w", err)
		}
	}
	return out, nil
}

// listing is what ClickHouse holds of one range: a bit per sequence.
type listing struct {
	events, membershipKinds, membership []bool
}

// listMissing lists the sequences of ranges keys and returns, per
// partition, the runs missing from ClickHouse and from the dead letters.
func (p *Projector) listMissing(ctx context.Context, keys []uint64, floors, firsts []uint64, dead deadSet) (map[int][]SeqRange, error) {
	out := map[int][]SeqRange{}
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), keysPerQuery)]
		keys = keys[len(chunk):]
		lists := map[uint64]*listing{}
		for _, k := range chunk {
			lists[k] = &listing{events: make([]bool, bucketWidth), membershipKinds: make([]bool, bucketWidth), membership: make([]bool, bucketWidth)}
		}
		const where = " WHERE has(?, intDiv(stream_seq, 65536) * 1024 + part) AND stream_seq >= arrayElement(?, part + 1) AND stream_seq <= arrayElement(?, part + 1)"
		for _, q := range []struct {
			sql  string
			args []any
			mark func(l *listing, i uint64, m uint8)
		}{
			{"SELECT part, stream_seq, has(?, kind) FROM messages" + where, []any{membershipKinds, chunk, firsts, floors},
				func(l *listing, i uint64, m uint8) {
					l.events[i] = true
					l.membershipKinds[i] = l.membershipKinds[i] || m == 1
				}},
			{"SELECT part, stream_seq, toUInt8(0) FROM receipts" + where, []any{chunk, firsts, floors},
				func(l *listing, i uint64, _ uint8) { l.events[i] = true }},
			{"SELECT part, stream_seq, toUInt8(0) FROM membership" + where, []any{chunk, firsts, floors},
				func(l *listing, i uint64, _ uint8) { l.membership[i] = true }},
		} {
			if err := p.scanSeqs(ctx, q.sql, q.args, func(part uint16, seq uint64, m uint8) {
				if l := lists[bucketKey(int(part), seq/bucketWidth)]; l != nil {
					q.mark(l, seq%bucketWidth, m)
				}
			}); err != nil {
				return nil, err
			}
		}
		for _, k := range chunk {
			part, b := int(k%partsPerKey), k/partsPerKey
			l := lists[k]
			lo, hi := max(b*bucketWidth, firsts[part]), min(b*bucketWidth+bucketWidth-1, floors[part])
			for s := lo; s <= hi; s++ {
				i := s % bucketWidth
				if dead[part][s] || (l.events[i] && (!l.membershipKinds[i] || l.membership[i])) {
					continue
				}
				out[part] = appendSeq(out[part], s)
			}
		}
	}
	return out, nil
}

// scanSeqs runs a listing query whose rows are (part, stream_seq, flag).
func (p *Projector) scanSeqs(ctx context.Context, sql string, args []any, f func(part uint16, seq uint64, m uint8)) error {
	rows, err := p.ch.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("projector: history check: list: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			part uint16
			seq  uint64
			m    uint8
		)
		if err := rows.Scan(&part, &seq, &m); err != nil {
			return fmt.Errorf("projector: history check: list: %w", err)
		}
		f(part, seq, m)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("projector: history check: list: %w", err)
	}
	return nil
}

// appendSeq adds s (at or above the last run's end) to runs.
func appendSeq(runs []SeqRange, s uint64) []SeqRange {
	if n := len(runs); n > 0 && runs[n-1].To+1 == s {
		runs[n-1].To = s
		return runs
	}
	return append(runs, SeqRange{s, s})
}

// keysOf is the ranges that runs fall in.
func keysOf(runs map[int][]SeqRange) []uint64 {
	var out []uint64
	for part, rs := range runs {
		seen := map[uint64]bool{}
		for _, r := range rs {
			for b := r.From / bucketWidth; b <= r.To/bucketWidth; b++ {
				if k := bucketKey(part, b); !seen[k] {
					seen[k] = true
					out = append(out, k)
				}
			}
		}
	}
	return out
}

// intersect is the sequences in both a and b, by partition.
func intersect(a, b map[int][]SeqRange) map[int][]SeqRange {
	out := map[int][]SeqRange{}
	for part, ra := range a {
		rb := b[part]
		i, j := 0, 0
		for i < len(ra) && j < len(rb) {
			lo, hi := max(ra[i].From, rb[j].From), min(ra[i].To, rb[j].To)
			if lo <= hi {
				out[part] = append(out[part], SeqRange{lo, hi})
			}
			if ra[i].To < rb[j].To {
				i++
			} else {
				j++
			}
		}
	}
	return out
}

// watchHoles runs the history check every HistoryCheckEvery on the
// partitions this projector works, repairs what it finds, and exports it.
func (p *Projector) watchHoles(ctx context.Context, parts func() []int) {
	every := p.cfg.HistoryCheckEvery
	if every <= 0 {
		return
	}
	// verified is, per partition, the first stream sequence not yet checked
	// whole: after the first, full, check each looks only at what came since
	// (a scan of two columns instead of counting every event again). The
	// command checks everything.
	verified := map[int]uint64{}
	wait := min(every, firstCheckAfter)
	for sleep(ctx, wait) {
		wait = every
		owned := parts()
		if len(owned) == 0 {
			continue // none of this projector's (nil would mean all)
		}
		cctx, cancel := context.WithTimeout(ctx, max(every, checkTimeout))
		rep, err := p.checkHistory(cctx, owned, verified, true)
		cancel()
		for _, c := range rep.Partitions {
			label := strconv.Itoa(c.Partition)
			p.m.holes.WithLabelValues(label).Set(float64(c.Missing - c.Repaired))
			p.m.holesFound.WithLabelValues(label).Add(float64(c.Missing))
			p.m.holesRepaired.WithLabelValues(label).Add(float64(c.Repaired))
			switch {
			case c.Floor+1 < verified[c.Partition]: // the consumer was made again (a rebuild)
				delete(verified, c.Partition)
			case c.Missing == c.Repaired && c.Floor >= c.From:
				verified[c.Partition] = c.Floor + 1
			}
			if c.Missing > 0 {
				p.log.Error("history check: events missing from ClickHouse (projected again from the stream)",
					zap.Int("partition", c.Partition), zap.Uint64("ack_floor", c.Floor), zap.Int("missing", c.Missing),
					zap.Int("repaired", c.Repaired), zap.String("holes", FormatRuns(c.Holes, 20)))
			}
		}
		if rep.Conversations > 0 {
			p.log.Warn("history check: conversations rows missing or behind their events (written again)",
				zap.Int("conversations", rep.Conversations), zap.Int("repaired", rep.ConversationsRepaired))
		}
		if err != nil && ctx.Err() == nil {
			p.log.Error("history check", zap.Error(err))
		}
	}
}

const (
	// firstCheckAfter is when a projector makes its first history check.
	firstCheckAfter = 30 * time.Second
	// checkTimeout bounds a history check (or HistoryCheckEvery if longer):
	// one stuck on a replica that never answers gives way to the next.
	checkTimeout = 5 * time.Minute
)

// FormatRuns writes runs as "3, 7-9", at most max of them.
func FormatRuns(runs []SeqRange, max int) string {
	var b strings.Builder
	for i, r := range runs {
		if i == max {
			fmt.Fprintf(&b, ", ... (%d runs)", len(runs))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if r.From == r.To {
			fmt.Fprintf(&b, "%d", r.From)
		} else {
			fmt.Fprintf(&b, "%d-%d", r.From, r.To)
		}
	}
	return b.String()
}
