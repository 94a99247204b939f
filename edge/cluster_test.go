package edge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"messenger/infra/platformtest"
)

// nodeDownBound is how long sends may go unacked after a NATS node dies:
// the streams that had their leader there elect a new one, and the
// connections that were on it move to another node. The test logs what it
// measured; the bound leaves room for a busy CI machine.
const nodeDownBound = 15 * time.Second

// On a three-node cluster with R3 streams, the node leading the
// conversation's stream is shut down: sends are acked again within nodeDownBound, and every
// message acked before, during and after is delivered, once, in order.
func TestClusterNodeDownSendsAckedAgain(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Cluster: 3, Edge: fastSends})
	kate, _ := dial(t, p, "kate", []int{0}, dialOpts{})
	_, lrec := dial(t, p, "leo", []int{0}, dialOpts{})

	acked := 0
	var conv string
	sendTimed := func(text string) time.Duration {
		t.Helper()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*nodeDownBound)
		defer cancel()
		ack, err := kate.Send(ctx, "leo", "", text)
		if err != nil {
			t.Fatalf("send %q: %v (after %s)", text, err, time.Since(start))
		}
		acked++
		conv = ack.Conv
		if ack.Seq != int64(acked) {
			t.Fatalf("send %q acked with seq %d, want %d", text, ack.Seq, acked)
		}
		return time.Since(start)
	}
	for i := 0; i < 5; i++ {
		sendTimed(fmt.Sprintf("before %d", i))
	}
	lrec.waitMsgs(t, acked)

	// The node to stop: the leader of the conversation's stream (the
	// worst case for its sends), which the edge may or may not be on.
	_, h := p.Handles()
	info, err := h.ConvStreamOf(conv).Info(context.Background())
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	node := p.NodeOf(info.Cluster.Leader)
	if node < 0 {
		t.Fatalf("stream leader %q is no node of the cluster", info.Cluster.Leader)
	}
	t.Logf("stopping n%d: leader of %s; the edge is on %s", node+1, info.Config.Name, p.Edges[0].NC.ConnectedServerName())
	stopped := time.Now()
	p.StopNode(node)
	took := sendTimed("after the node died")
	t.Logf("node n%d stopped: first send acked after %s (%s from the stop)", node+1, took, time.Since(stopped))
	if took > nodeDownBound {
		t.Errorf("first send after the node died acked after %s, bound %s", took, nodeDownBound)
	}
	for i := 0; i < 5; i++ {
		if d := sendTimed(fmt.Sprintf("after %d", i)); d > nodeDownBound {
			t.Errorf("send %d after the node died took %s", i, d)
		}
	}

	ms := lrec.waitMsgs(t, acked)
	if len(ms) != acked {
		t.Fatalf("leo got %d messages, want the %d acked", len(ms), acked)
	}
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d (%q): lost, twice or out of order", i, m.Seq, m.Text)
		}
	}
}
