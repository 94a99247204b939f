package edge_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"messenger/client"
	"messenger/infra/platformtest"
)

// BenchmarkGroupDelivery256 sends messages to a group of 256 members, all
// connected (over two edges), and measures the time from the send to its
// arrival at the last member.
//
//	go test -run '^$' -bench GroupDelivery256 -benchtime 50x ./edge/
func BenchmarkGroupDelivery256(b *testing.B) {
	p := platformtest.Start(b, platformtest.Options{Edges: 2, Edge: edgeConfig(func(c *edgeCfg) { c.SendRate, c.SendBurst = 1e5, 1e5 })})
	var names []string
	for i := 0; i < 256; i++ {
		names = append(names, fmt.Sprintf("g%03d", i))
	}
	var v groupView
	if code := apiB(b, "POST", p.HTTP(0)+"/v1/conversations", p.Token(names[0]), map[string]any{"id": "big", "title": "big", "members": names[1:]}, &v); code != 201 {
		b.Fatalf("create: %d", code)
	}
	var mu sync.Mutex
	arrivals := map[int][]time.Duration{} // message index -> arrival delays
	sentAt := map[int]time.Time{}
	var sender *client.Client
	for i, n := range names {
		tok := p.Token(n)
		c, err := client.Dial(context.Background(), client.Config{
			URLs: []string{p.WS(i % 2)}, Token: func() (string, error) { return tok, nil },
			OnEvent: func(e client.Event) {
				if e.Type != "msg" || !strings.HasPrefix(e.Text, "bench ") {
					return
				}
				k, _ := strconv.Atoi(strings.TrimPrefix(e.Text, "bench "))
				mu.Lock()
				arrivals[k] = append(arrivals[k], time.Since(sentAt[k]))
				mu.Unlock()
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		if i == 0 {
			sender = c
		}
	}
	b.ResetTimer()
	var lasts []time.Duration
	for k := 0; k < b.N; k++ {
		mu.Lock()
		sentAt[k] = time.Now()
		mu.Unlock()
		if _, err := sender.Send(context.Background(), "", v.Conv, fmt.Sprintf("bench %d", k)); err != nil {
			b.Fatal(err)
		}
		platformtest.Eventually(b, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(arrivals[k]) < 256 {
				return fmt.Errorf("%d of 256", len(arrivals[k]))
			}
			return nil
		})
		mu.Lock()
		lasts = append(lasts, slices.Max(arrivals[k]))
		mu.Unlock()
	}
	b.StopTimer()
	slices.Sort(lasts)
	b.ReportMetric(float64(lasts[len(lasts)/2].Microseconds())/1000, "last-member-p50-ms")
	b.ReportMetric(float64(lasts[len(lasts)*99/100].Microseconds())/1000, "last-member-p99-ms")
	b.ReportMetric(float64(lasts[len(lasts)-1].Microseconds())/1000, "last-member-max-ms")
}
