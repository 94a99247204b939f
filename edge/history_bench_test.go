package edge_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"messenger/infra/platformtest"
)

// BenchmarkHistoryAndConversationList measures, through the HTTP API with a
// real ClickHouse: the conversation list of a user with 1,000
// conversations, history pages at random depths of a 5,000-message
// conversation (ClickHouse), and the newest page of it (recent cache).
//
//	go test -run '^$' -bench HistoryAndConversationList -benchtime 1x ./edge/
func BenchmarkHistoryAndConversationList(b *testing.B) {
	p := platformtest.Start(b, platformtest.Options{ClickHouse: true, Edge: edgeConfig(func(c *edgeCfg) {
		c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst = 1e6, 1e6, 1e6, 1e6
	})})
	post := func(from, to, id, text string) map[string]any {
		var ack map[string]any
		for {
			code := apiB(b, "POST", p.HTTP(0)+"/v1/messages", p.Token(from), fmt.Sprintf(`{"id":%q,"to":%q,"text":%q}`, id, to, text), &ack)
			if code == 200 {
				return ack
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// 1,000 conversations for "reader", from 8 senders at a time.
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 1000; i += 8 {
				post(fmt.Sprintf("peer%04d", i), "reader", "c", "hello reader")
			}
		}()
	}
	// One long conversation.
	var conv string
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 5000; i += 8 {
				ack := post("talker", "reader", fmt.Sprintf("t%d", i), fmt.Sprintf("message number %d of a long chat", i))
				if i == 0 {
					conv = ack["conv"].(string)
				}
			}
		}()
	}
	wg.Wait()
	p.WaitProjected()
	tok := p.Token("reader")
	platformtest.Eventually(b, time.Minute, func() error {
		var l convList
		apiB(b, "GET", p.HTTP(0)+"/v1/conversations?limit=200", tok, nil, &l)
		if len(l.Conversations) < 200 {
			return fmt.Errorf("%d conversations listed", len(l.Conversations))
		}
		return nil
	})
	b.ResetTimer()
	measure := func(name string, n int, url func() string) {
		var d []time.Duration
		for i := 0; i < n; i++ {
			start := time.Now()
			req, _ := http.NewRequest("GET", url(), nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("%s: %v %v", name, err, resp)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, name+"-p99-ms")
	}
	measure("list200of1000", 300, func() string { return p.HTTP(0) + "/v1/conversations?limit=200" })
	measure("page50-clickhouse", 500, func() string {
		return fmt.Sprintf("%s/v1/conversations/%s/messages?before=%d&limit=50", p.HTTP(0), conv, 51+rand.IntN(4900))
	})
	measure("page15-newest-recent-cache", 500, func() string {
		return fmt.Sprintf("%s/v1/conversations/%s/messages?limit=15", p.HTTP(0), conv)
	})
	measure("page15-newest-no-cache", 500, func() string {
		// A page ending at the last seq, one longer than the 15 the cache keeps: the store answers.
		return fmt.Sprintf("%s/v1/conversations/%s/messages?limit=16", p.HTTP(0), conv)
	})
}
