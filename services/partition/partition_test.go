package partition_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"messenger/infra/natsauth"
	"messenger/infra/platformtest"
	"messenger/services/partition"
	"messenger/streams"
)

// Rendezvous hashing spreads the partitions evenly enough, and a member
// joining takes partitions only from the others (none move between them).
func TestOwnerSpreadAndMinimalMoves(t *testing.T) {
	const parts = 12
	members := []string{"a", "b", "c"}
	count := map[string]int{}
	before := make([]string, parts)
	for p := range parts {
		before[p] = partition.Owner(members, p)
		count[before[p]]++
	}
	for _, m := range members {
		if count[m] == 0 {
			t.Fatalf("member %s owns nothing of %d partitions: %v", m, parts, count)
		}
	}
	grown := append(slices.Clone(members), "d")
	for p := range parts {
		if after := partition.Owner(grown, p); after != before[p] && after != "d" {
			t.Fatalf("partition %d moved from %s to %s when d joined", p, before[p], after)
		}
	}
	if partition.Owner(nil, 0) != "" {
		t.Fatal("a partition without members has an owner")
	}
	// Over many member names the load stays within a factor of the mean.
	many := make([]string, 8)
	for i := range many {
		many[i] = fmt.Sprintf("host-%d", 1000+i)
	}
	load := map[string]int{}
	for p := range 1024 {
		load[partition.Owner(many, p)]++
	}
	for _, m := range many {
		if load[m] < 1024/8/2 || load[m] > 1024/8*2 {
			t.Fatalf("uneven spread over 8 members: %v", load)
		}
	}
}

func TestSanitizeID(t *testing.T) {
	if got := partition.SanitizeID("web-1.example.com:42"); got != "web-1_example_com_42" {
		t.Fatalf("SanitizeID: %q", got)
	}
}

// tracker records which partitions each member works.
type tracker struct {
	mu      sync.Mutex
	working map[string]map[int]bool
}

func (tr *tracker) work(id string) partition.Work {
	return func(ctx context.Context, p int) error {
		tr.mu.Lock()
		if tr.working[id] == nil {
			tr.working[id] = map[int]bool{}
		}
		tr.working[id][p] = true
		tr.mu.Unlock()
		<-ctx.Done()
		tr.mu.Lock()
		delete(tr.working[id], p)
		tr.mu.Unlock()
		return nil
	}
}

// exactlyOnce checks that every partition is worked by exactly one of ids.
func (tr *tracker) exactlyOnce(parts int, ids ...string) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for p := range parts {
		var by []string
		for _, id := range ids {
			if tr.working[id][p] {
				by = append(by, id)
			}
		}
		if len(by) != 1 {
			return fmt.Errorf("partition %d worked by %v", p, by)
		}
	}
	return nil
}

// Two members share the partitions (each worked by exactly one once
// stable, both working some); when one dies without leaving, the other
// works them all within the lease plus a heartbeat; a clean leave hands
// over at once.
func TestMembersShareAndTakeOver(t *testing.T) {
	const parts = 8
	p := platformtest.Start(t, platformtest.Options{NoFanout: true, Partitions: parts})
	tr := &tracker{working: map[string]map[int]bool{}}
	type member struct {
		cancel context.CancelFunc
		done   chan struct{}
		err    *error
		kill   func()
	}
	start := func(id string) member {
		nc, h := p.RoleHandles(natsauth.RoleFanout)
		m, err := partition.New(partition.Config{Kind: partition.KindFanout, ID: id, Partitions: parts}, nc, h.Workers, p.Log, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		var runErr error
		go func() { defer close(done); runErr = m.Run(ctx, tr.work(id)) }()
		t.Cleanup(func() { cancel(); <-done })
		// A crash: the lease is neither renewed nor deleted.
		kill := func() { nc.Close(); cancel() }
		return member{cancel, done, &runErr, kill}
	}
	a := start("a")
	platformtest.Eventually(t, 10*time.Second, func() error { return tr.exactlyOnce(parts, "a") })
	b := start("b")
	platformtest.Eventually(t, 20*time.Second, func() error {
		if err := tr.exactlyOnce(parts, "a", "b"); err != nil {
			return err
		}
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if len(tr.working["a"]) == 0 || len(tr.working["b"]) == 0 {
			return fmt.Errorf("not spread: %v", tr.working)
		}
		return nil
	})
	members, err := partition.ReadMembers(context.Background(), p.Conn(), partition.KindFanout)
	if err != nil || !slices.Equal(members, []string{"a", "b"}) {
		t.Fatalf("members %v, %v", members, err)
	}

	// b dies: a works everything within the lease and a heartbeat.
	b.kill()
	killed := time.Now()
	platformtest.Eventually(t, 30*time.Second, func() error { return tr.exactlyOnce(parts, "a") })
	took := time.Since(killed)
	t.Logf("take-over after a crash: %s", took)
	if bound := streams.WorkersTTL + 3*time.Second; took > bound {
		t.Fatalf("take-over took %s, bound %s", took, bound)
	}

	// c joins, then a leaves cleanly: c works everything at once (no lease to wait for).
	start("c")
	platformtest.Eventually(t, 20*time.Second, func() error {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if len(tr.working["c"]) == 0 {
			return fmt.Errorf("c works nothing")
		}
		return nil
	})
	a.cancel()
	<-a.done
	if *a.err != nil {
		t.Fatal(*a.err)
	}
	left := time.Now()
	platformtest.Eventually(t, 20*time.Second, func() error { return tr.exactlyOnce(parts, "c") })
	t.Logf("take-over after a clean leave: %s", time.Since(left))
	if took := time.Since(left); took > 2*time.Second+time.Second {
		t.Fatalf("take-over after a clean leave took %s", took)
	}
}
