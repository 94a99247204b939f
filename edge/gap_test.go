package edge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/platformtest"
	"messenger/services/event"
)

// NATS may drop announcements (it drops messages to a slow subscriber): an
// announcement whose prev shows a missed entry makes the edge refill from
// the queue; so does a nudge (seq 0). Nothing is skipped, nothing doubled.
func TestDroppedAnnouncementsAreRefilledFromTheQueue(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true})
	_, rec := dial(t, p, "yara", []int{0}, dialOpts{})
	nc := p.Conn()
	js, _ := jetstream.New(nc)
	layout := p.Conf.Layout()
	store := func(i int) (uint64, []byte) {
		doc := []byte(fmt.Sprintf(`{"v":1,"type":"msg","conv":"dGap","seq":%d,"ts":1,"from":"zoe","id":"g%d","kind":"text","text":"gap %d"}`, i, i, i))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ack, err := js.Publish(ctx, layout.Queue("yara"), doc)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence, doc
	}
	s1, _ := store(1) // stored, its announcement "lost"
	s2, d2 := store(2)
	if err := nc.Publish(layout.Live("yara"), event.EncodeLive(event.Live{Seq: s2, Prev: s1, Doc: d2})); err != nil {
		t.Fatal(err)
	}
	ms := rec.waitMsgs(t, 2)
	if ms[0].Text != "gap 1" || ms[1].Text != "gap 2" {
		t.Fatalf("after the gap: %+v", ms)
	}
	// The same announcement again is a duplicate.
	_ = nc.Publish(layout.Live("yara"), event.EncodeLive(event.Live{Seq: s2, Prev: s1, Doc: d2}))
	store(3) // stored, never announced
	_ = nc.Publish(layout.Live("yara"), event.EncodeLive(event.Live{}))
	ms = rec.waitMsgs(t, 3)
	time.Sleep(200 * time.Millisecond)
	if ms = rec.msgs(); len(ms) != 3 || ms[2].Text != "gap 3" {
		t.Fatalf("after the nudge: %+v", ms)
	}
}
