package edge_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"messenger/infra/platformtest"
	"messenger/services/event"
	"messenger/services/fanout"
	"messenger/services/partition"
	"messenger/services/projector"
	"messenger/streams"
)

// spread waits until the workers own disjoint, non-empty sets of partitions
// that cover all of them.
func spread(t *testing.T, parts int, ws ...*platformtest.Worker) {
	t.Helper()
	platformtest.Eventually(t, 30*time.Second, func() error {
		seen := make([]int, parts)
		for i, w := range ws {
			owned := w.Owned()
			if len(owned) == 0 {
				return fmt.Errorf("worker %d owns nothing", i)
			}
			for _, p := range owned {
				seen[p]++
			}
		}
		for p, n := range seen {
			if n != 1 {
				return fmt.Errorf("partition %d owned by %d workers", p, n)
			}
		}
		return nil
	})
}

// splitID is an id, prefix followed by a number, with which every one of
// members+id owns at least one of parts partitions (rendezvous hashing may
// give one member none of a few partitions).
func splitID(t *testing.T, prefix string, parts int, members ...string) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		id := fmt.Sprint(prefix, i)
		all := append(slices.Clone(members), id)
		owns := map[string]bool{}
		for p := 0; p < parts; p++ {
			owns[partition.Owner(all, p)] = true
		}
		if len(owns) == len(all) {
			return id
		}
	}
	t.Fatalf("no id splits %d partitions with %v", parts, members)
	return ""
}

// peerIn finds a peer of user whose direct conversation with user lies in
// one of parts; it returns the peer and the conversation.
func peerIn(t *testing.T, p *platformtest.Platform, user, prefix string, parts []int) (string, string) {
	t.Helper()
	layout := p.Conf.Layout()
	for i := 0; i < 200; i++ {
		peer := fmt.Sprintf("%s%d", prefix, i)
		conv := event.DirectConv(user, peer)
		if slices.Contains(parts, layout.ConvPartition(conv)) {
			return peer, conv
		}
	}
	t.Fatalf("no peer of %s in partitions %v", user, parts)
	return "", ""
}

// Two fan-outs share the partitions, each partition owned by exactly one
// of them; when one is killed (no hand-over, its lease left to expire) the
// other delivers the messages of its partitions within the lease plus a
// heartbeat, each exactly once and in order.
func TestSecondFanoutTakesOverAKilledOnesPartitions(t *testing.T) {
	const parts = 4
	p := platformtest.Start(t, platformtest.Options{NoFanout: true, Partitions: parts, Edge: fastSends})
	a := p.StartFanoutWorker(fanout.Config{Ownership: true, WorkerID: "fa"})
	b := p.StartFanoutWorker(fanout.Config{Ownership: true, WorkerID: splitID(t, "fb", parts, "fa")})
	spread(t, parts, a, b)

	sam, _ := dial(t, p, "sam", []int{0}, dialOpts{})
	peerA, _ := peerIn(t, p, "sam", "pa", a.Owned())
	peerB, _ := peerIn(t, p, "sam", "pb", b.Owned())
	_, recA := dial(t, p, peerA, []int{0}, dialOpts{})
	_, recB := dial(t, p, peerB, []int{0}, dialOpts{})
	for i := 0; i < 20; i++ {
		send(t, sam, peerA, "", fmt.Sprint("a", i))
		send(t, sam, peerB, "", fmt.Sprint("b", i))
	}
	recA.waitMsgs(t, 20)
	recB.waitMsgs(t, 20)

	b.Kill()
	killed := time.Now()
	send(t, sam, peerB, "", "after the kill")
	recB.waitMsgs(t, 21)
	took := time.Since(killed)
	t.Logf("a killed fan-out's partition delivered again after %s", took)
	// The bound: the lease (streams.WorkersTTL) and one heartbeat, with
	// room for a busy machine.
	if bound := streams.WorkersTTL + 6*time.Second; took > bound {
		t.Fatalf("delivery resumed after %s, bound %s", took, bound)
	}
	if owned := a.Owned(); len(owned) != parts {
		t.Fatalf("the surviving fan-out owns %v", owned)
	}
	for i := 0; i < 10; i++ {
		send(t, sam, peerA, "", fmt.Sprint("a2 ", i))
		send(t, sam, peerB, "", fmt.Sprint("b2 ", i))
	}
	recA.waitMsgs(t, 30)
	recB.waitMsgs(t, 31)
	time.Sleep(300 * time.Millisecond) // a duplicate would show now
	for name, rec := range map[string]*recorder{peerA: recA, peerB: recB} {
		ms := rec.msgs()
		for i, m := range ms {
			if m.Seq != int64(i+1) {
				t.Fatalf("%s: position %d has seq %d (%d messages)", name, i, m.Seq, len(ms))
			}
		}
	}

	// A fan-out that joins takes partitions back; one that stops cleanly
	// hands them over at once.
	c := p.StartFanoutWorker(fanout.Config{Ownership: true, WorkerID: splitID(t, "fc", parts, "fa")})
	spread(t, parts, a, c)
	a.Stop()
	platformtest.Eventually(t, 10*time.Second, func() error {
		if owned := c.Owned(); len(owned) != parts {
			return fmt.Errorf("c owns %v", owned)
		}
		return nil
	})
	send(t, sam, peerA, "", "after the hand-over")
	send(t, sam, peerB, "", "after the hand-over")
	recA.waitMsgs(t, 31)
	recB.waitMsgs(t, 32)
}

// The conversation list asks every fan-out sharing the partitions to
// flush: the user's summaries are held by both, and the list right after
// the messages shows every conversation though neither has stored its
// summaries on its own.
func TestConversationListAsksEveryFanoutToFlush(t *testing.T) {
	const parts = 4
	p := platformtest.Start(t, platformtest.Options{NoFanout: true, Partitions: parts, Edge: historyEdge})
	cfg := fanout.Config{CheckpointEvery: time.Hour, Ownership: true}
	cfg.WorkerID = "fa"
	a := p.StartFanoutWorker(cfg)
	cfg.WorkerID = splitID(t, "fb", parts, "fa")
	b := p.StartFanoutWorker(cfg)
	spread(t, parts, a, b)

	amy, _ := dial(t, p, "amy", []int{0}, dialOpts{})
	peerA, convA := peerIn(t, p, "amy", "x", a.Owned())
	peerB, convB := peerIn(t, p, "amy", "y", b.Owned())
	_, recA := dial(t, p, peerA, []int{0}, dialOpts{})
	_, recB := dial(t, p, peerB, []int{0}, dialOpts{})
	send(t, amy, peerA, "", "to a")
	send(t, amy, peerB, "", "to b")
	recA.waitMsgs(t, 1)
	recB.waitMsgs(t, 1)
	var l convList
	if code := api(t, "GET", p.HTTP(0)+"/v1/conversations", p.Token("amy"), nil, &l); code != 200 {
		t.Fatalf("GET /v1/conversations: %d", code)
	}
	got := map[string]bool{}
	for _, c := range l.Conversations {
		if c.Last != nil && c.Last.Seq == 1 {
			got[c.Conv] = true
		}
	}
	if !got[convA] || !got[convB] || len(l.Conversations) != 2 {
		t.Fatalf("amy's list right after the messages: %+v (want %s and %s)", l.Conversations, convA, convB)
	}
}

// Two projectors share the partitions; when one is killed, the other
// projects the events of its partitions into ClickHouse once the lease
// expired. (Events a projector fetched and never inserted, killed or
// handing over mid-batch, are the projector's gap fill's to repair.)
func TestSecondProjectorTakesOverAKilledOnesPartitions(t *testing.T) {
	const parts = 4
	p := platformtest.Start(t, platformtest.Options{Partitions: parts, Edge: fastSends, ClickHouse: true, NoProjector: true})
	a := p.StartProjectorWorker(projector.Config{Ownership: true, WorkerID: "pa"})
	b := p.StartProjectorWorker(projector.Config{Ownership: true, WorkerID: splitID(t, "pb", parts, "pa")})
	spread(t, parts, a, b)
	// The hand-over from a to b is over once a's last fetch (1 s) ended.
	time.Sleep(2 * time.Second)
	sam, _ := dial(t, p, "sam", []int{0}, dialOpts{})
	peer, conv := peerIn(t, p, "sam", "q", b.Owned())
	rows := func(want uint64) func() error {
		return func() error {
			var n uint64
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.CH.QueryRow(ctx, "SELECT uniqExact(seq) FROM messages WHERE conv = ?", conv).Scan(&n); err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("%d of %d events of %s in ClickHouse", n, want, conv)
			}
			return nil
		}
	}
	for i := 0; i < 10; i++ {
		send(t, sam, peer, "", fmt.Sprint("before ", i))
	}
	platformtest.Eventually(t, 30*time.Second, rows(10))
	b.Kill()
	killed := time.Now()
	platformtest.Eventually(t, 20*time.Second, func() error {
		if owned := a.Owned(); len(owned) != parts {
			return fmt.Errorf("pa owns %v", owned)
		}
		return nil
	})
	t.Logf("a killed projector's partitions taken over after %s", time.Since(killed))
	if took, bound := time.Since(killed), streams.WorkersTTL+6*time.Second; took > bound {
		t.Fatalf("take-over after %s, bound %s", took, bound)
	}
	for i := 0; i < 10; i++ {
		send(t, sam, peer, "", fmt.Sprint("after ", i))
	}
	platformtest.Eventually(t, 40*time.Second, rows(20))
}
