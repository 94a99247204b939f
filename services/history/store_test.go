package history_test

import (
	"context"
	"fmt"
	"testing"

	"messenger/edge"
	"messenger/infra/platformtest"
	"messenger/services/history"
)

// Every Store implementation passes the same contract.
func TestStoreContract(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, Edge: edge.Config{SendRate: 1e5, SendBurst: 1e5}})
	ctx := context.Background()
	var conv string
	for i := 0; i < 30; i++ {
		text := fmt.Sprintf("c%d", i)
		ack, cerr := p.Edges[0].Edge.Send(ctx, "ann", &edge.SendRequest{ID: text, To: "ben", Text: &text})
		if cerr != nil {
			t.Fatal(cerr)
		}
		conv = ack.Conv
	}
	p.WaitProjected()
	nc := p.Conn()
	_, _, h := p.Projector()
	stores := map[string]history.Store{
		"clickhouse": &history.ClickHouse{Conn: p.CH},
		"stream":     &history.StreamStore{NC: nc, H: h},
		"pager":      &history.Pager{Projection: &history.ClickHouse{Conn: p.CH}, Stream: &history.StreamStore{NC: nc, H: h}},
	}
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct{ lo, hi, first, n uint64 }{
				{1, 30, 1, 30}, {5, 9, 5, 5}, {30, 30, 30, 1}, {28, 40, 28, 3}, {31, 40, 0, 0},
			} {
				evs, err := s.Range(ctx, conv, tc.lo, tc.hi)
				if err != nil {
					t.Fatal(err)
				}
				if uint64(len(evs)) != tc.n {
					t.Fatalf("Range(%d, %d): %d events, want %d", tc.lo, tc.hi, len(evs), tc.n)
				}
				for i, ev := range evs {
					if ev.Seq != tc.first+uint64(i) || ev.StreamSeq == 0 || len(ev.Doc) == 0 {
						t.Fatalf("Range(%d, %d)[%d] = %+v", tc.lo, tc.hi, i, ev)
					}
				}
			}
			if evs, err := s.Range(ctx, "dNoSuchConv", 1, 10); err != nil || len(evs) != 0 {
				t.Fatalf("unknown conversation: %v %v", evs, err)
			}
		})
	}
}
