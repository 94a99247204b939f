package edge

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"messenger/services/event"
)

// onlineTTL is how long a user another edge answered the online probe for
// counts as online without asking again. A report that the user left an
// edge ends it at once; only an edge that dies without reporting leaves
// its users counted online, for at most this long.
const onlineTTL = 5 * time.Second

// maxOnlineSeen bounds the users remembered; past it an arbitrary half goes.
const maxOnlineSeen = 200_000

// onlineSeen remembers the users other edges recently said they hold, so
// that the ack of a send to them costs no NATS request (the probe is a
// request on the user's live subject, answered by the edges holding it).
type onlineSeen struct {
	mu sync.Mutex
	m  map[string]onlineMark
}

type onlineMark struct {
	until int64 // unix nanos: online until then, unless it left
	left  int64 // unix nanos of the last report that it left an edge
}

func newOnlineSeen() *onlineSeen { return &onlineSeen{m: map[string]onlineMark{}} }

func (o *onlineSeen) has(user string, now int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[user].until > now
}

// answered records a probe asked at askedAt that an edge answered: unless
// a report that the user left came after askedAt, it counts online.
func (o *onlineSeen) answered(user string, askedAt int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := o.m[user]
	if k.left > askedAt {
		return
	}
	o.trimLocked()
	k.until = askedAt + int64(onlineTTL)
	o.m[user] = k
}

// leftEdge records that the user's last connection on some edge ended: the
// next send to it asks again.
func (o *onlineSeen) leftEdge(user string, now int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.trimLocked()
	o.m[user] = onlineMark{left: now}
}

func (o *onlineSeen) trimLocked() {
	if len(o.m) < maxOnlineSeen {
		return
	}
	for k := range o.m {
		delete(o.m, k)
		if len(o.m) < maxOnlineSeen/2 {
			break
		}
	}
}

// onPresenceReport takes every edge's connection reports: a user that left
// an edge is asked about again.
func (e *Edge) onPresenceReport(m *nats.Msg) {
	var r event.PresenceReport
	if json.Unmarshal(m.Data, &r) != nil || r.User == "" || r.On {
		return
	}
	e.onlineSeen.leftEdge(r.User, time.Now().UnixNano())
}

// online tells whether user has a live connection now: on this edge, or
// on an edge that said so within onlineTTL and has not reported it gone,
// or else on an edge that answers the probe now.
func (e *Edge) online(user string) bool {
	if e.hub.has(user) {
		return true
	}
	now := time.Now().UnixNano()
	if e.onlineSeen.has(user, now) {
		return true
	}
	e.m.onlineProbes.Inc()
	if _, err := e.nc.Request(e.h.Layout.Live(user), nil, 250*time.Millisecond); err != nil {
		return false
	}
	e.onlineSeen.answered(user, now)
	return true
}
