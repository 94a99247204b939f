package edge_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"messenger/infra/natsauth"
	"messenger/infra/platformtest"
	"messenger/services/presence"
)

// liveness are the NATS client options `messenger` gives every role with
// its flags' defaults (cmd/messenger dialNATS): a server that answers no
// ping is left after 2s x (2+1) at most.
func liveness() []nats.Option {
	return []nats.Option{nats.PingInterval(2 * time.Second), nats.MaxPingsOutstanding(2), nats.ReconnectWait(250 * time.Millisecond)}
}

// The operator's fault of issue 13: the NATS server under the sending edge
// and under the presence service goes silent for 20 s (as a SIGSTOPped
// node: sockets open, nothing answered), while a second path to it (as a
// second node of a cluster) stays healthy. The first send after the
// silence is acked within the client's 5 s budget, not answered
// unavailable (the edge's publish attempt times out, the server answers no
// ping, the connection moves, the same message is sent again); every send
// during the silence is acked and delivered once, in order; and presence
// never tells the sender offline (the edge timeout, 15 s, is shorter than
// the silence, yet presence holds none of it against the edges, even on a
// connection that never notices the silence). When the
// server wakes up and finally reads the first attempt, it is refused as
// the duplicate it is.
func TestSilentNATSServerSendsAckedAgainPresenceHolds(t *testing.T) {
	var (
		mu      sync.Mutex
		proxies []*platformtest.Proxy
		edges   int
	)
	p := platformtest.Start(t, platformtest.Options{
		Edges:    2,
		Presence: presence.Config{OnlineDelay: onlineDelay, OfflineDelay: offlineDelay}, // edge timeout: the default 15s
		Edge:     edgeConfig(func(c *edgeCfg) { c.SendRate, c.SendBurst = 1e4, 1e4 }),   // heartbeat 5s, publish budget 5s, attempt 1.5s
		Dial: func(role, server string) (string, []nats.Option) {
			mu.Lock()
			defer mu.Unlock()
			proxied := role == natsauth.RolePresence
			if role == natsauth.RoleEdge {
				proxied = edges == 0 // edge 0 only: edge 1 stays healthy
				edges++
			}
			if !proxied {
				return server, liveness()
			}
			px := platformtest.StartProxy(t, server)
			proxies = append(proxies, px)
			// The proxy first (where the role connects), the server
			// itself second (where it moves).
			opts := append(liveness(), nats.DontRandomize())
			if role == natsauth.RolePresence {
				// Slow to notice (the old 10s pings): presence stays on
				// the silent server throughout, deaf, and must know it.
				opts = append(opts, nats.PingInterval(10*time.Second))
			}
			return px.URL() + "," + server, opts
		},
	})
	if len(proxies) != 2 {
		t.Fatalf("%d proxied connections, want the presence service's and edge 0's", len(proxies))
	}
	befriend(t, p, "ana", "bo")
	b, brec := dial(t, p, "bo", []int{1}, dialOpts{})
	if err := b.Watch([]string{"ana"}); err != nil {
		t.Fatal(err)
	}
	dial(t, p, "ana", []int{0}, dialOpts{})
	on := brec.waitPresence(t, "ana", 2)
	if on.Status != "online" {
		t.Fatalf("ana: %+v, want online", on)
	}

	for _, px := range proxies {
		px.Silence()
	}
	silent := time.Now()
	const silence = 20 * time.Second
	var acked []string
	var firstAck time.Duration
	for i := 0; time.Since(silent) < silence; i++ {
		id := fmt.Sprintf("s%03d", i)
		start := time.Now()
		var ack map[string]any
		code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token("ana"), map[string]any{"id": id, "to": "bo", "text": id}, &ack)
		if code != 200 {
			t.Fatalf("send %s during the silence: %d %v after %v (want an ack within the 5s budget)", id, code, ack, time.Since(start))
		}
		if i == 0 {
			firstAck = time.Since(silent)
			t.Logf("server silent: first send acked after %v", firstAck)
		}
		acked = append(acked, id)
		time.Sleep(200 * time.Millisecond) // a sender's pace, not a wait for a condition
	}
	for _, px := range proxies {
		px.Resume()
	}
	t.Logf("%d sends acked during %v of silence; first after %v", len(acked), silence, firstAck)

	// Everything acked reaches bo once, in order.
	fromAna := func() (texts []string, seqs []int64) {
		for _, m := range brec.msgs() {
			if m.From == "ana" && m.Text != "hi" {
				texts, seqs = append(texts, m.Text), append(seqs, m.Seq)
			}
		}
		return texts, seqs
	}
	platformtest.WaitCount(t, "acked messages at bo", len(acked), func() int { n, _ := fromAna(); return len(n) })
	time.Sleep(2 * offlineDelay) // a duplicate would have come by now
	texts, seqs := fromAna()
	if fmt.Sprint(texts) != fmt.Sprint(acked) {
		t.Fatalf("bo got %v, want the %d acked once in order %v", texts, len(acked), acked)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seq %d after %d", seqs[i], seqs[i-1])
		}
	}
	for _, e := range brec.presences("ana")[2:] {
		if e.Status != "online" {
			t.Fatalf("ana was told %s during the silence: %+v", e.Status, e)
		}
	}
	if st := pullPresence(t, p, "bo", "ana")["ana"]; st.Status != "online" {
		t.Fatalf("bo sees ana %+v after the silence, want online", st)
	}
}
