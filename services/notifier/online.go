package notifier

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"messenger/services/event"
	"messenger/subjects"
)

// onlineCheck tells whether a user is around, from what the edges already
// tell: the online probe (a request on the user's live subject that only
// the edges holding one of its connections, WebSocket or long poll,
// answer) for now, and their connection reports (pres.evt) for "left less
// than the grace ago". Not the presence service's bucket: it says online
// only 5 s after a connect, is written by one more service that may be
// down, and a stale "online" there would silence pushes for good.
type onlineCheck struct {
	nc      *nats.Conn
	layout  subjects.Layout
	grace   time.Duration
	timeout time.Duration

	mu   sync.Mutex
	left map[string]time.Time // user -> when its last connection on some edge ended
}

// maxLeft bounds the users remembered; past it an arbitrary half goes.
const maxLeft = 200_000

func newOnlineCheck(nc *nats.Conn, layout subjects.Layout, grace, timeout time.Duration) *onlineCheck {
	return &onlineCheck{nc: nc, layout: layout, grace: grace, timeout: timeout, left: map[string]time.Time{}}
}

// onReport takes an edge's connection report.
func (o *onlineCheck) onReport(m *nats.Msg) {
	var r event.PresenceReport
	if json.Unmarshal(m.Data, &r) != nil || r.User == "" || r.On {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.left) >= maxLeft {
		for k := range o.left {
			delete(o.left, k)
			if len(o.left) < maxLeft/2 {
				break
			}
		}
	}
	o.left[r.User] = time.Now()
}

// online: connected now, or left within the grace.
func (o *onlineCheck) online(ctx context.Context, user string, now time.Time) bool {
	o.mu.Lock()
	at, ok := o.left[user]
	o.mu.Unlock()
	if ok && now.Sub(at) < o.grace {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	_, err := o.nc.RequestWithContext(ctx, o.layout.Live(user), nil)
	return err == nil
}

// forget drops reports older than the grace.
func (o *onlineCheck) forget(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for u, at := range o.left {
		if now.Sub(at) >= o.grace {
			delete(o.left, u)
		}
	}
}
