package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"messenger/client"
	"messenger/edge/auth"
)

// workload is the load the faults are measured against: pairs of users and
// a few small groups, every user with two devices on different edges; one
// device of each user sends at a steady pace, every device records what it
// receives.
type workload struct {
	log    *zap.Logger
	pl     *platform
	signer *auth.Signer
	run    string // prefix of user ids and group ids: unique per run

	pairs, groups, groupSize int
	rate                     float64 // messages per second, all senders

	mu         sync.Mutex
	sends      []Send
	deliveries []Delivery
	members    map[string][]string // conv -> devices

	senders []*sender
	devices []*client.Client
	acked   atomic.Int64
	wg      sync.WaitGroup
}

// sender is one user sending through its first device: to its peer (a
// pair) or to its group.
type sender struct {
	user, to, conv string
	c              *client.Client
	devs           []string // the devices of the conversation's members
	pair           int      // pair index, -1 for a group member
}

func (w *workload) token(user string) func() (string, error) {
	return func() (string, error) { return w.signer.Token(user, 6*time.Hour) }
}

// connect dials the two devices of user: d1 prefers edge (i mod edges),
// d2 the other one.
func (w *workload) connect(ctx context.Context, user string, i int) (*client.Client, error) {
	var first *client.Client
	for d := 0; d < 2; d++ {
		dev := user + "/d" + strconv.Itoa(d+1)
		c, err := client.Dial(ctx, client.Config{
			URLs:          w.pl.edgeURLs(i + d),
			Token:         w.token(user),
			Device:        "d" + strconv.Itoa(d+1),
			AutoDelivered: true,
			ReconnectMax:  2 * time.Second,
			OnEvent: func(ev client.Event) {
				if ev.Type != "msg" {
					return
				}
				w.mu.Lock()
				w.deliveries = append(w.deliveries, Delivery{Device: dev, Conv: ev.Conv, Seq: ev.Seq, ID: ev.ID, At: time.Now()})
				w.mu.Unlock()
			},
		})
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", dev, err)
		}
		w.devices = append(w.devices, c)
		if d == 0 {
			first = c
		}
	}
	return first, nil
}

func (w *workload) start(ctx context.Context) error {
	w.members = map[string][]string{}
	for p := 0; p < w.pairs; p++ {
		a, b := fmt.Sprintf("%s-p%d-a", w.run, p), fmt.Sprintf("%s-p%d-b", w.run, p)
		devs := []string{a + "/d1", a + "/d2", b + "/d1", b + "/d2"}
		ca, err := w.connect(ctx, a, p)
		if err != nil {
			return err
		}
		cb, err := w.connect(ctx, b, p+1)
		if err != nil {
			return err
		}
		w.senders = append(w.senders,
			&sender{user: a, to: b, c: ca, devs: devs, pair: p},
			&sender{user: b, to: a, c: cb, devs: devs, pair: p})
	}
	for g := 0; g < w.groups; g++ {
		var users, devs []string
		for m := 0; m < w.groupSize; m++ {
			u := fmt.Sprintf("%s-g%d-m%d", w.run, g, m)
			users = append(users, u)
			devs = append(devs, u+"/d1", u+"/d2")
		}
		tok, err := w.signer.Token(users[0], time.Hour)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("%s-g%d", w.run, g)
		conv, err := client.CreateGroup(ctx, nil, w.pl.edgeHTTP(g%len(w.pl.edges)), tok, id, "chaos "+id, users)
		if err != nil {
			return fmt.Errorf("group %d: %w", g, err)
		}
		w.members[conv] = devs
		for m, u := range users {
			c, err := w.connect(ctx, u, g+m)
			if err != nil {
				return err
			}
			w.senders = append(w.senders, &sender{user: u, conv: conv, c: c, devs: devs, pair: -1})
		}
	}
	per := time.Duration(float64(time.Second) * float64(len(w.senders)) / w.rate)
	for i, s := range w.senders {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			// Spread the senders' first sends over one period.
			if sleep(ctx, per*time.Duration(i)/time.Duration(len(w.senders))) != nil {
				return
			}
			w.send(ctx, s, per)
		}()
	}
	return nil
}

// send sends one message per period until ctx ends; a send not acked
// within a minute is given up (a "maybe" of the history).
func (w *workload) send(ctx context.Context, s *sender, per time.Duration) {
	next := time.Now()
	for n := 0; ctx.Err() == nil; n++ {
		id := fmt.Sprintf("%s-%d", s.user, n)
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		ack, err := s.c.SendID(sctx, id, s.to, s.conv, "chaos "+id)
		cancel()
		rec := Send{ID: id, Sender: s.user, Conv: s.conv, Start: start}
		if err == nil {
			rec.Conv, rec.Seq, rec.Acked, rec.AckAt = ack.Conv, ack.Seq, true, time.Now()
			w.acked.Add(1)
		} else if ctx.Err() == nil {
			w.log.Warn("send not acked", zap.String("id", id), zap.Error(err))
		}
		w.mu.Lock()
		w.sends = append(w.sends, rec)
		if rec.Acked && s.pair >= 0 {
			if _, ok := w.members[rec.Conv]; !ok {
				w.members[rec.Conv] = s.devs
			}
		}
		w.mu.Unlock()
		next = next.Add(per)
		if d := time.Until(next); d > 0 {
			if sleep(ctx, d) != nil {
				return
			}
		} else {
			next = time.Now() // behind (a fault): no burst to catch up
		}
	}
}

// stopSending waits for the senders once their context is cancelled.
func (w *workload) stopSending() { w.wg.Wait() }

// closeDevices closes every client.
func (w *workload) closeDevices() {
	for _, c := range w.devices {
		_ = c.Close()
	}
}

// snapshot is a copy of the history so far.
func (w *workload) snapshot() History {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := History{Sends: slicesClone(w.sends), Deliveries: slicesClone(w.deliveries), Members: map[string][]string{}}
	for k, v := range w.members {
		h.Members[k] = v
	}
	return h
}

// missing counts (acked message, member device) pairs not delivered yet.
func (w *workload) missing() int {
	h := w.snapshot()
	got := map[string]map[convSeq]bool{}
	for _, d := range h.Deliveries {
		if got[d.Device] == nil {
			got[d.Device] = map[convSeq]bool{}
		}
		got[d.Device][convSeq{d.Conv, d.Seq}] = true
	}
	n := 0
	for _, s := range h.Sends {
		if !s.Acked {
			continue
		}
		for _, dev := range h.Members[s.Conv] {
			if !got[dev][convSeq{s.Conv, s.Seq}] {
				n++
			}
		}
	}
	return n
}

// ackTimes are the ack times of the sends, sorted, in all and per sender.
func ackTimes(h History) ([]time.Time, map[string][]time.Time) {
	var all []time.Time
	by := map[string][]time.Time{}
	for _, s := range h.Sends {
		if s.Acked {
			all = append(all, s.AckAt)
			by[s.Sender] = append(by[s.Sender], s.AckAt)
		}
	}
	sortTimes(all)
	for _, t := range by {
		sortTimes(t)
	}
	return all, by
}

func deliveryTimes(h History) []time.Time {
	out := make([]time.Time, 0, len(h.Deliveries))
	for _, d := range h.Deliveries {
		out = append(out, d.At)
	}
	sortTimes(out)
	return out
}
