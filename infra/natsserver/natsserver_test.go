package natsserver_test

import (
	"errors"
	"net"
	"testing"

	"messenger/infra/natsserver"
)

// A cluster listener off loopback without route TLS is refused: anyone
// who reaches it could join as a node. On loopback it needs nothing.
func TestClusterListenerRules(t *testing.T) {
	_, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir(), ClusterListen: "0.0.0.0:-1", Routes: []string{"nats-route://10.0.0.2:6222"}})
	if !errors.Is(err, natsserver.ErrOpenRoutes) {
		t.Fatalf("non-loopback cluster listener without TLS: want ErrOpenRoutes, got %v", err)
	}
	if _, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir(), Routes: []string{"nats-route://127.0.0.1:1"}}); err == nil {
		t.Fatal("routes without a cluster listener: want an error")
	}
	if _, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir(), ClusterListen: "127.0.0.1:-1"}); err == nil {
		t.Fatal("a cluster listener without routes: want an error")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	route := l.Addr().String()
	l.Close()
	s, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir(), ServerName: "n1",
		ClusterListen: route, Routes: []string{"nats-route://" + route, "nats-route://127.0.0.1:1"}})
	if err != nil {
		t.Fatalf("loopback cluster listener: %v", err)
	}
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if s.Name() != "n1" || s.ClusterAddr() == nil {
		t.Fatalf("server name %q, cluster address %v", s.Name(), s.ClusterAddr())
	}
}
