package edge_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/client"
	"messenger/infra/platformtest"
	"messenger/streams"
)

// BenchmarkDirectMessageCost sends direct messages between pairs of users on
// two edges, with the recipients' delivered receipts, and reports what one
// message costs in JetStream writes and bytes, and the end-to-end rate.
//
//	go test -run '^$' -bench DirectMessageCost -benchtime 2000x ./edge/
func BenchmarkDirectMessageCost(b *testing.B) {
	p := platformtest.Start(b, platformtest.Options{Edges: 2, Edge: edgeConfig(func(c *edgeCfg) { c.SendRate, c.SendBurst = 1e6, 1e6 })})
	const pairs = 16
	var received atomic.Int64
	senders := make([]*client.Client, pairs)
	for i := 0; i < pairs; i++ {
		for side := 0; side < 2; side++ {
			user := fmt.Sprintf("u%d_%d", i, side)
			tok := p.Token(user)
			c, err := client.Dial(context.Background(), client.Config{
				URLs: []string{p.WS(side)}, Token: func() (string, error) { return tok, nil },
				AutoDelivered: side == 1,
				OnEvent: func(e client.Event) {
					if e.Type == "msg" && side == 1 {
						received.Add(1)
					}
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			if side == 0 {
				senders[i] = c
			}
		}
	}
	js, _ := jetstream.New(p.Conn())
	before := streamTotals(b, js, p.Conf)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	for i := 0; i < pairs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := senders[i].Send(context.Background(), fmt.Sprintf("u%d_1", i), "", "a message of some forty bytes, typical.."); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	platformtest.Eventually(b, time.Minute, func() error {
		if received.Load() < int64(b.N) {
			return fmt.Errorf("%d of %d delivered", received.Load(), b.N)
		}
		return nil
	})
	elapsed := time.Since(start)
	b.StopTimer()
	time.Sleep(500 * time.Millisecond) // let the last receipts land
	after := streamTotals(b, js, p.Conf)
	n := float64(b.N)
	b.ReportMetric(n/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(after.convMsgs-before.convMsgs)/n, "conv-writes/msg")
	b.ReportMetric(float64(after.queueMsgs-before.queueMsgs)/n, "queue-writes/msg")
	b.ReportMetric(float64(after.bytes-before.bytes)/n, "stored-bytes/msg")
}

type totals struct{ convMsgs, queueMsgs, bytes uint64 }

func streamTotals(b *testing.B, js jetstream.JetStream, c streams.Config) totals {
	var t totals
	c = c.WithDefaults()
	for i := 0; i < c.Partitions; i++ {
		for _, name := range []string{streams.ConvStream(i), streams.QueueStream(i)} {
			s, err := js.Stream(context.Background(), name)
			if err != nil {
				b.Fatal(err)
			}
			info, err := s.Info(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if name == streams.ConvStream(i) {
				t.convMsgs += info.State.Msgs
			} else {
				t.queueMsgs += info.State.Msgs
			}
			t.bytes += info.State.Bytes
		}
	}
	return t
}
