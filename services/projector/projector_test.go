package projector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	chinfra "messenger/infra/clickhouse"
	"messenger/infra/natsauth"
	"messenger/infra/platformtest"
	"messenger/services/event"
	"messenger/services/projector"
	"messenger/streams"
)

// publisher writes events into the conversation streams as the edges do
// (without the edges), and remembers where each went.
type publisher struct {
	t    *testing.T
	js   jetstream.JetStream
	h    *streams.Handles
	seqs map[string]uint64 // last seq per conversation
	// stored are the events written, in order.
	stored []stored
}

type stored struct {
	part      int
	streamSeq uint64
	kind      string // a msg kind, "receipt" or "malformed"
}

// projectorOnly starts a platform of one partition with ClickHouse and a
// projector but no fan-out, and a publisher of events into it.
func projectorOnly(t *testing.T) (*platformtest.Platform, *publisher) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, Partitions: 1, NoFanout: true})
	return p, newPublisher(t, p)
}

func newPublisher(t *testing.T, p *platformtest.Platform) *publisher {
	nc, h := p.Handles()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &publisher{t: t, js: js, h: h, seqs: map[string]uint64{}}
}

func (pb *publisher) put(subject string, v any, kind string) stored {
	pb.t.Helper()
	data, ok := v.([]byte)
	if !ok {
		data, _ = json.Marshal(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), platformtest.Patience)
	defer cancel()
	ack, err := pb.js.Publish(ctx, subject, data)
	if err != nil {
		pb.t.Fatal(err)
	}
	var part int
	fmt.Sscanf(ack.Stream, streams.ConvStreamPrefix+"%d", &part)
	s := stored{part: part, streamSeq: ack.Sequence, kind: kind}
	pb.stored = append(pb.stored, s)
	return s
}

// text stores the next text message of conv.
func (pb *publisher) text(conv string) stored {
	pb.seqs[conv]++
	m := event.Msg{V: 1, Type: event.TypeMsg, Conv: conv, Seq: pb.seqs[conv], TS: time.Now().UnixMilli(), From: "alice", ID: fmt.Sprintf("m%d", len(pb.stored)), Kind: event.KindText, Text: "hello", To: "bob"}
	return pb.put(pb.h.Layout.ConvEvents(conv), m, m.Kind)
}

// group stores a group_created event of conv (a messages and a membership row).
func (pb *publisher) group(conv string) stored {
	pb.seqs[conv]++
	m := event.Msg{V: 1, Type: event.TypeMsg, Conv: conv, Seq: pb.seqs[conv], TS: time.Now().UnixMilli(), From: "alice", ID: fmt.Sprintf("g%d", len(pb.stored)), Kind: event.KindGroupCreated, Title: "team", Members: []string{"alice", "bob"}}
	return pb.put(pb.h.Layout.ConvEvents(conv), m, m.Kind)
}

// receipt stores a read receipt of bob in conv.
func (pb *publisher) receipt(conv string) stored {
	r := event.Receipt{V: 1, Type: event.TypeReceipt, Conv: conv, Seq: max(pb.seqs[conv], 1), User: "bob", Status: event.StatusRead, TS: time.Now().UnixMilli()}
	return pb.put(pb.h.Layout.Receipts(conv), r, "receipt")
}

// malformed stores an event that does not decode: a dead letter.
func (pb *publisher) malformed(conv string) stored {
	return pb.put(pb.h.Layout.ConvEvents(conv), []byte("{not json"), "malformed")
}

// mixed stores n events over convs: texts, with a group creation and a
// receipt now and then.
func (pb *publisher) mixed(n int, convs ...string) {
	for i := 0; i < n; i++ {
		conv := convs[i%len(convs)]
		switch {
		case i%7 == 3:
			pb.receipt(conv)
		case i%11 == 5:
			pb.group(conv)
		default:
			pb.text(conv)
		}
	}
}

// projected is the stream sequences of partition part in ClickHouse.
func projected(t *testing.T, ch driver.Conn, part int) map[uint64]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), platformtest.Patience)
	defer cancel()
	rows, err := ch.Query(ctx, "SELECT stream_seq FROM messages WHERE part = ? UNION ALL SELECT stream_seq FROM receipts WHERE part = ?", uint16(part), uint16(part))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uint64]bool{}
	for rows.Next() {
		var s uint64
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out[s] = true
	}
	return out
}

// assertAllProjected fails unless every stored event of partition part but
// the malformed ones is in ClickHouse.
func assertAllProjected(t *testing.T, p *platformtest.Platform, pb *publisher, part int) {
	t.Helper()
	have := projected(t, p.CH, part)
	var lost []uint64
	for _, s := range pb.stored {
		if s.part == part && s.kind != "malformed" && !have[s.streamSeq] {
			lost = append(lost, s.streamSeq)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("partition %d: %d events acked by the projector and missing from ClickHouse: %v", part, len(lost), lost)
	}
}

// fetchAndDrop fetches up to n events of partition part on the projector's
// consumer, as a projector would, and never acks them: what a projector
// killed between fetch and insert leaves, or a fetch whose reply was lost.
func fetchAndDrop(t *testing.T, nc *nats.Conn, h *streams.Handles, part, n int, wait time.Duration) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), platformtest.Patience)
	defer cancel()
	cons, err := h.Conv[part].Consumer(ctx, streams.ProjectorDurable)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(wait))
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, meta.Sequence.Stream)
	}
	return got
}

// A projector killed between its fetch and its insert: the events it
// fetched are covered by the next projector's AckAll and never delivered
// again. The next projector reads them from the stream before it acks.
func TestProjectorKilledMidBatchLosesNothing(t *testing.T) {
	p, pb := projectorOnly(t)
	pb.mixed(30, "c1", "c2")
	p.WaitProjected()
	p.StopProjector()

	pb.mixed(10, "c1", "c2")
	dying := p.RoleConn(natsauth.RoleProjector)
	_, h := p.RoleHandles(natsauth.RoleProjector)
	dropped := fetchAndDrop(t, dying, h, 0, 10, 5*time.Second)
	if len(dropped) != 10 {
		t.Fatalf("the dying projector fetched %v, want 10 events", dropped)
	}
	dying.Close() // killed: nothing inserted, nothing acked
	pb.mixed(10, "c1", "c2")

	p.StartProjector()
	p.WaitProjected()
	assertAllProjected(t, p, pb, 0)
}

// A fetch whose messages never reach the projector (the reply lost with a
// NATS node) while it keeps running: here another client of the
// projector's consumer takes a batch and drops it, and events keep coming.
func TestProjectorFetchReplyLostWhileRunning(t *testing.T) {
	p, pb := projectorOnly(t)
	pb.mixed(20, "c1", "c2", "c3")
	p.WaitProjected()

	nc, h := p.RoleHandles(natsauth.RoleProjector)
	lost := make(chan []uint64, 1)
	go func() { lost <- fetchAndDrop(t, nc, h, 0, 5, platformtest.Patience) }()
	// Events one by one until the lost fetch has had its five: the running
	// projector and the lost fetch share them.
	var dropped []uint64
	deadline := time.Now().Add(platformtest.Patience)
	for dropped == nil {
		if time.Now().After(deadline) {
			t.Fatal("the lost fetch got nothing")
		}
		pb.text("c1")
		select {
		case dropped = <-lost:
		case <-time.After(20 * time.Millisecond):
		}
	}
	if len(dropped) == 0 {
		t.Fatal("the lost fetch got no event")
	}
	pb.mixed(20, "c1", "c2", "c3") // after them: the projector's next ack covers them
	p.WaitProjected()
	last := pb.stored[len(pb.stored)-1].streamSeq
	if slices.Max(dropped) >= last {
		t.Fatalf("lost fetch %v is not below the last event %d", dropped, last)
	}
	assertAllProjected(t, p, pb, 0)
}

// The history check on a ClickHouse database where some events were never
// inserted (a copy of the projection without them): it finds exactly them,
// not the dead letter, and the repair fills them.
func TestHistoryCheckFindsAndRepairsHoles(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, Partitions: 2, NoFanout: true})
	pb := newPublisher(t, p)
	convs := []string{"c1", "c2", "c3", "c4", "c5", "c6"}
	pb.mixed(80, convs...)
	pb.malformed("c1") // a dead letter: not a hole
	for _, c := range convs {
		pb.group(c)
	}
	pb.mixed(40, convs...)
	p.WaitProjected()

	// The holes: per partition, a run of three events, a receipt, a lone
	// message; and a group creation whose membership row alone is missing.
	drop := map[[2]uint64]bool{}     // (part, stream seq) left out of every table
	membOnly := map[[2]uint64]bool{} // left out of membership only
	want := map[int][]uint64{}
	for part := 0; part < 2; part++ {
		var events, receipts, groups []uint64
		for _, s := range pb.stored {
			if s.part != part {
				continue
			}
			switch s.kind {
			case event.KindText:
				events = append(events, s.streamSeq)
			case "receipt":
				receipts = append(receipts, s.streamSeq)
			case event.KindGroupCreated:
				groups = append(groups, s.streamSeq)
			}
		}
		if len(events) < 10 || len(receipts) < 2 || len(groups) < 2 {
			t.Fatalf("partition %d: too few events to make holes: %v %v %v", part, events, receipts, groups)
		}
		mid := len(events) / 2
		for _, seq := range []uint64{events[1], events[mid], events[mid] + 1, events[mid] + 2, receipts[1], events[len(events)-2]} {
			drop[[2]uint64{uint64(part), seq}] = true
		}
		for k := range drop {
			if k[0] == uint64(part) {
				want[part] = append(want[part], k[1])
			}
		}
		for _, g := range groups {
			if !drop[[2]uint64{uint64(part), g}] {
				membOnly[[2]uint64{uint64(part), g}] = true
				want[part] = append(want[part], g)
				break
			}
		}
		slices.Sort(want[part])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*platformtest.Patience)
	defer cancel()
	conn := copyWithout(t, p, drop, membOnly)

	nc, h := p.RoleHandles(natsauth.RoleProjector)
	js, _ := jetstream.New(nc)
	pr, err := projector.New(projector.Config{}, js, h, conn, p.Log, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := func(rep projector.CheckReport) map[int][]uint64 {
		out := map[int][]uint64{}
		for _, c := range rep.Partitions {
			for _, r := range c.Holes {
				for s := r.From; s <= r.To; s++ {
					out[c.Partition] = append(out[c.Partition], s)
				}
			}
			if n := len(out[c.Partition]); n != c.Missing {
				t.Errorf("partition %d: %d holes listed, Missing %d", c.Partition, n, c.Missing)
			}
		}
		return out
	}
	rep, err := pr.CheckHistory(ctx, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for part := 0; part < 2; part++ {
		if got := found(rep)[part]; !slices.Equal(got, want[part]) {
			t.Errorf("partition %d: check found %v, want %v", part, got, want[part])
		}
	}
	if rep.Partitions[0].Floor == 0 || rep.Partitions[1].Floor == 0 {
		t.Fatalf("nothing checked: %+v", rep)
	}

	rep, err = pr.CheckHistory(ctx, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Missing() != len(want[0])+len(want[1]) || rep.Remaining() != 0 {
		t.Fatalf("repair: %d missing, %d remaining: %+v", rep.Missing(), rep.Remaining(), rep)
	}
	rep, err = pr.CheckHistory(ctx, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Missing() != 0 {
		t.Fatalf("after the repair: %+v", rep)
	}
	for _, table := range []string{"messages", "receipts", "membership"} {
		var a, b uint64
		if err := conn.QueryRow(ctx, "SELECT uniqExact(part, stream_seq) FROM "+table).Scan(&a); err != nil {
			t.Fatal(err)
		}
		if err := p.CH.QueryRow(ctx, "SELECT uniqExact(part, stream_seq) FROM "+table).Scan(&b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("%s: %d events after the repair, the original projection has %d", table, a, b)
		}
	}
}

// copyWithout copies the platform's projection into a database of its own
// without the events drop (from every table) and membOnly (from membership
// only), keyed by (partition, stream seq).
func copyWithout(t *testing.T, p *platformtest.Platform, drop, membOnly map[[2]uint64]bool) driver.Conn {
	t.Helper()
	keys := func(m map[[2]uint64]bool) []uint64 {
		out := []uint64{0} // never a stream seq: the array is never empty
		for k := range m {
			out = append(out, k[0]<<32|k[1])
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), platformtest.Patience)
	defer cancel()
	copyDB := p.CHDB + "_holes"
	conn, err := chinfra.Open(ctx, chinfra.Config{Addr: chinfra.TestAddr(), Database: copyDB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+copyDB)
		conn.Close()
	})
	if err := chinfra.Apply(ctx, conn); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		table string
		left  []uint64
	}{{"messages", keys(drop)}, {"receipts", keys(drop)}, {"membership", append(keys(drop), keys(membOnly)...)}} {
		q := "INSERT INTO " + c.table + " SELECT * FROM " + p.CHDB + "." + c.table + " WHERE NOT has(?, bitShiftLeft(toUInt64(part), 32) + stream_seq)"
		if err := conn.Exec(ctx, q, c.left); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return conn
}

// The projector's own periodic check finds holes, repairs them and says so
// in its metrics.
func TestPeriodicHistoryCheckRepairs(t *testing.T) {
	p, pb := projectorOnly(t)
	pb.mixed(60, "c1", "c2")
	p.WaitProjected()
	drop := map[[2]uint64]bool{}
	for _, i := range []int{3, 10, 11, 40} {
		drop[[2]uint64{0, pb.stored[i].streamSeq}] = true
	}
	conn := copyWithout(t, p, drop, nil)
	if have := projected(t, conn, 0); len(have) != 60-len(drop) {
		t.Fatalf("copy holds %d events, want %d", len(have), 60-len(drop))
	}
	p.StopProjector() // the consumer stays; this projector checks the copy

	nc, h := p.RoleHandles(natsauth.RoleProjector)
	js, _ := jetstream.New(nc)
	reg := prometheus.NewRegistry()
	pr, err := projector.New(projector.Config{HistoryCheckEvery: 200 * time.Millisecond, BatchWait: time.Second}, js, h, conn, p.Log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pr.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	platformtest.Eventually(t, platformtest.Patience, func() error {
		found := gather(t, reg, "messenger_projector_holes_found_total")
		repaired := gather(t, reg, "messenger_projector_holes_repaired_total")
		if found != float64(len(drop)) || repaired != found {
			return platformtest.Errorf("found %v, repaired %v, want %d", found, repaired, len(drop))
		}
		return nil
	})
	if have := projected(t, conn, 0); len(have) != 60 {
		t.Fatalf("after the periodic check the copy holds %d events, want 60", len(have))
	}
	platformtest.Eventually(t, platformtest.Patience, func() error {
		if g := gather(t, reg, "messenger_projector_holes"); g != 0 {
			return platformtest.Errorf("holes gauge %v", g)
		}
		return nil
	})

	// Later checks look only above what was checked whole: a batch acked
	// and never inserted meanwhile (a projector before the gap fix, sharing
	// the consumer) is found there and repaired.
	rogue, rh := p.RoleHandles(natsauth.RoleProjector)
	acked := make(chan []uint64, 1)
	go func() { acked <- fetchAndAck(t, rogue, rh, 0, 5) }()
	var got []uint64
	for got == nil {
		pb.text("c1")
		select {
		case got = <-acked:
		case <-time.After(20 * time.Millisecond):
		}
	}
	pb.mixed(10, "c1", "c2")
	platformtest.Eventually(t, platformtest.Patience, func() error {
		have := projected(t, conn, 0)
		for _, s := range pb.stored {
			if !have[s.streamSeq] {
				return platformtest.Errorf("event %d missing (acked without insert: %v)", s.streamSeq, got)
			}
		}
		return nil
	})
	t.Logf("acked without insert: %v; holes found in all: %v", got, gather(t, reg, "messenger_projector_holes_found_total"))
}

// gather is the sum of metric name's values in reg.
func gather(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

// fetchAndAck fetches up to n events of partition part on the projector's
// consumer and acks them without inserting them: what a projector before
// the gap fix left after a fetch reply was lost (the next ack covered it).
func fetchAndAck(t *testing.T, nc *nats.Conn, h *streams.Handles, part, n int) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), platformtest.Patience)
	defer cancel()
	cons, err := h.Conv[part].Consumer(ctx, streams.ProjectorDurable)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	var last jetstream.Msg
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		got, last = append(got, meta.Sequence.Stream), m
	}
	if last != nil {
		if err := last.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// The check on the sharded projection (Distributed tables over two
// servers, the same table names): holes left by a batch acked and never
// inserted are found exactly and repaired.
func TestHistoryCheckOnShardedTables(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, ClickHouseShards: chinfra.TestShards(), Partitions: 1, NoFanout: true})
	pb := newPublisher(t, p)
	convs := []string{"c1", "c2", "c3", "c4"}
	pb.mixed(20, convs...)
	for _, c := range convs {
		pb.group(c)
	}
	p.WaitProjected()
	p.StopProjector()
	pb.mixed(10, convs...)
	_, h := p.RoleHandles(natsauth.RoleProjector)
	acked := fetchAndAck(t, p.RoleConn(natsauth.RoleProjector), h, 0, 10)
	if len(acked) != 10 {
		t.Fatalf("acked %v, want 10 events", acked)
	}
	pb.mixed(5, convs...)
	p.StartProjector()
	p.WaitProjected()

	pr, _, _ := p.Projector()
	ctx, cancel := context.WithTimeout(context.Background(), 2*platformtest.Patience)
	defer cancel()
	rep, err := pr.CheckHistory(ctx, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var found []uint64
	for _, r := range rep.Partitions[0].Holes {
		for s := r.From; s <= r.To; s++ {
			found = append(found, s)
		}
	}
	if !slices.Equal(found, acked) {
		t.Fatalf("check found %v, want the events acked and never inserted %v", found, acked)
	}
	if rep, err = pr.CheckHistory(ctx, nil, true); err != nil || rep.Missing() != 10 || rep.Remaining() != 0 {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	if rep, err = pr.CheckHistory(ctx, nil, false); err != nil || rep.Missing() != 0 {
		t.Fatalf("after the repair: %+v %v", rep, err)
	}
	assertAllProjected(t, p, pb, 0)
}

// A database where nothing was ever inserted: every event is a hole (ranges
// without a single row), and the repair fills them all.
func TestHistoryCheckOnAnEmptyDatabase(t *testing.T) {
	p, pb := projectorOnly(t)
	pb.mixed(30, "c1", "c2")
	pb.malformed("c1")
	p.WaitProjected()
	all := map[[2]uint64]bool{}
	for _, s := range pb.stored {
		all[[2]uint64{0, s.streamSeq}] = true
	}
	conn := copyWithout(t, p, all, nil)
	nc, h := p.RoleHandles(natsauth.RoleProjector)
	js, _ := jetstream.New(nc)
	pr, err := projector.New(projector.Config{}, js, h, conn, p.Log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*platformtest.Patience)
	defer cancel()
	rep, err := pr.CheckHistory(ctx, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Missing() != 30 || rep.Remaining() != 0 { // the malformed one is a dead letter
		t.Fatalf("empty database: %+v", rep)
	}
	if have := projected(t, conn, 0); len(have) != 30 {
		t.Fatalf("after the repair: %d events, want 30", len(have))
	}
}
