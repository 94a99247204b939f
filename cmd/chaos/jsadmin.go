package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/natsauth"
	"messenger/streams"
)

// jsAdmin reads the cluster's stream placement as the admin identity: who
// leads which stream, and whether every replica is current again.
type jsAdmin struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func dialAdmin(urls, creds string) (*jsAdmin, error) {
	opts, err := natsauth.ClientOptions(natsauth.RoleAdmin, natsauth.SeedFile(creds, natsauth.RoleAdmin))
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name("chaos-admin"), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond),
		nats.PingInterval(2*time.Second), nats.MaxPingsOutstanding(2), nats.Timeout(2*time.Second))
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("admin connection: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &jsAdmin{nc: nc, js: js}, nil
}

func (a *jsAdmin) close() { a.nc.Close() }

// streamInfos lists every stream of the messenger (conversation, queue,
// inbox streams).
func (a *jsAdmin) streamInfos(ctx context.Context) ([]*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l := a.js.ListStreams(ctx)
	var out []*jetstream.StreamInfo
	for si := range l.Info() {
		out = append(out, si)
	}
	if err := l.Err(); err != nil {
		return out, err
	}
	return out, nil
}

// leaders counts, per server name, the conversation streams it leads.
func (a *jsAdmin) leaders(ctx context.Context) (map[string]int, error) {
	infos, err := a.streamInfos(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, si := range infos {
		if strings.HasPrefix(si.Config.Name, streams.ConvStreamPrefix) && si.Cluster != nil && si.Cluster.Leader != "" {
			out[si.Cluster.Leader]++
		}
	}
	return out, nil
}

// topLeader is the server leading the most conversation streams (ties: by
// name), and the count.
func (a *jsAdmin) topLeader(ctx context.Context) (string, int, error) {
	m, err := a.leaders(ctx)
	if err != nil {
		return "", 0, err
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	if len(names) == 0 {
		return "", 0, fmt.Errorf("no conversation stream has a leader")
	}
	return names[0], m[names[0]], nil
}

// waitCurrent waits until every stream has a leader and every replica is
// current (a restarted node caught up), or the deadline passes.
func (a *jsAdmin) waitCurrent(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		infos, err := a.streamInfos(ctx)
		if err == nil {
			last = ""
			for _, si := range infos {
				if si.Cluster == nil {
					continue
				}
				if si.Cluster.Leader == "" {
					last = si.Config.Name + ": no leader"
					break
				}
				if want := si.Config.Replicas - 1; len(si.Cluster.Replicas) < want {
					last = fmt.Sprintf("%s: %d replicas known, want %d", si.Config.Name, len(si.Cluster.Replicas), want)
					break
				}
				for _, r := range si.Cluster.Replicas {
					if !r.Current || r.Offline {
						last = si.Config.Name + ": replica " + r.Name + " not current"
						break
					}
				}
				if last != "" {
					break
				}
			}
			if last == "" && len(infos) > 0 {
				return nil
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("streams not current after %v: %s", timeout, last)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}
