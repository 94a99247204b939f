package platformtest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/natsserver"
)

// node is one server of a test cluster: its ports and store stay the same
// across StopNode and StartNode, as a restarted process's would.
type node struct {
	name, client, route, dir string
}

// startCluster starts n clustered servers on loopback, each with its own
// store and ports, and waits until JetStream has a leader.
func (p *Platform) startCluster(n int, users []*server.NkeyUser) {
	p.t.Helper()
	p.users = users
	routes := make([]string, n)
	for i := 0; i < n; i++ {
		nd := &node{name: fmt.Sprintf("n%d", i+1), client: freeAddr(p.t), route: freeAddr(p.t), dir: p.t.TempDir()}
		p.nodes = append(p.nodes, nd)
		routes[i] = "nats-route://" + nd.route
	}
	p.routes = routes
	p.Nodes = make([]*server.Server, n)
	for i := range p.nodes {
		p.StartNode(i)
	}
	p.NS = p.Nodes[0]
	p.WaitJetStream(30 * time.Second)
}

// freeAddr is a loopback address with a port free now.
func freeAddr(t interface{ Fatal(...any) }) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartNode starts cluster node i (again, after StopNode) on its own
// ports and store.
func (p *Platform) StartNode(i int) {
	p.t.Helper()
	nd := p.nodes[i]
	ns, err := natsserver.Start(natsserver.Config{Listen: nd.client, DataDir: nd.dir, Users: p.users,
		ServerName: nd.name, ClusterName: "test", ClusterListen: nd.route, Routes: p.routes})
	if err != nil {
		p.t.Fatalf("node %s: %v", nd.name, err)
	}
	p.mu.Lock()
	p.Nodes[i] = ns
	p.mu.Unlock()
}

// StopNode shuts cluster node i down (its clients move to another node).
func (p *Platform) StopNode(i int) {
	p.mu.Lock()
	ns := p.Nodes[i]
	p.mu.Unlock()
	ns.Shutdown()
	ns.WaitForShutdown()
}

// NodeOf is the index of the cluster node whose name is name (as
// nats.Conn.ConnectedServerName or a stream's leader tells), or -1.
func (p *Platform) NodeOf(name string) int {
	for i, nd := range p.nodes {
		if nd.name == name {
			return i
		}
	}
	return -1
}

// URL is the client URL of the platform: every node's, comma-separated,
// for a cluster.
func (p *Platform) URL() string {
	if len(p.nodes) == 0 {
		return p.NS.ClientURL()
	}
	urls := make([]string, len(p.nodes))
	for i, nd := range p.nodes {
		urls[i] = "nats://" + nd.client
	}
	return strings.Join(urls, ",")
}

// WaitJetStream waits until JetStream answers on the platform (a
// cluster's meta group has a leader).
func (p *Platform) WaitJetStream(timeout time.Duration) {
	p.t.Helper()
	nc := p.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		p.t.Fatal(err)
	}
	Eventually(p.t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	nc.Close()
}
