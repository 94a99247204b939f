// Package natsserver runs the embedded nats-server with JetStream on disk, for
// `messenger all`, `messenger nats` and the tests.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config of the embedded server. The zero value listens on 127.0.0.1:4222
// and stores JetStream data under ./data/jetstream.
type Config struct {
	// Listen is host:port for client connections; port -1 picks a free one.
	// Default "127.0.0.1:4222".
	Listen string
	// DataDir is the directory under which JetStream keeps its files
	// (in DataDir/jetstream). Required.
	DataDir string
	// SyncAlways makes JetStream fsync every write before acking it: an acked
	// message then survives a power loss, at about a tenth of the throughput.
	// Off by default: acked messages are written to the OS before the ack and
	// survive a process crash; JetStream syncs to disk every SyncInterval.
	SyncAlways bool
	// SyncInterval is the periodic fsync interval when SyncAlways is off.
	// Default: the server's (2 minutes).
	SyncInterval time.Duration
	// MaxMemory and MaxStore bound JetStream; zero means the server's defaults.
	MaxMemory, MaxStore int64
	// Users are the NKEY users allowed to connect, each with its
	// permissions (infra/natsauth). Empty: no authentication, which Start
	// allows only on a loopback address.
	Users []*server.NkeyUser
	// TLSCert and TLSKey are PEM files of the server's certificate: when set,
	// clients must use TLS (in-process connections excepted). TLSCA, when
	// set too, is the CA whose client certificates are required (mutual TLS).
	TLSCert, TLSKey, TLSCA string

	// ServerName names this server among its cluster's; JetStream in a
	// cluster knows its peers by it, so each node needs its own, kept
	// across restarts. Default "messenger".
	ServerName string
	// ClusterName is the name every node of one cluster shares. Default
	// "messenger" (used only with ClusterListen).
	ClusterName string
	// ClusterListen is host:port for the routes from the other nodes; empty:
	// no cluster (a single server). A listener off loopback needs TLS
	// (TLSCert, TLSKey and TLSCA): routes then use mutual TLS with the same
	// certificate and CA, so only nodes holding a certificate of that CA
	// join; without it Start refuses (ErrOpenRoutes).
	ClusterListen string
	// Routes are the other nodes' route URLs (nats-route://host:port); a
	// node may list itself too (nats-server ignores it), so every node can
	// be given the same list.
	Routes []string
}

// ErrOpenListener refuses a listener reachable from other hosts with no
// authentication: anyone there could read and forge every message.
var ErrOpenListener = errors.New("natsserver: refusing a non-loopback listener without authentication")

// ErrOpenRoutes refuses a cluster listener reachable from other hosts
// without route TLS: anyone there could join the cluster as a node and
// read or change every stream.
var ErrOpenRoutes = errors.New("natsserver: refusing a non-loopback cluster listener without TLS (--nats-tls-cert, --nats-tls-key and --nats-tls-ca)")

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*server.Server, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("natsserver: data dir is required")
	}
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:4222"
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("natsserver: listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("natsserver: listen %q: bad port", listen)
	}
	if len(cfg.Users) == 0 && !loopback(host) {
		return nil, fmt.Errorf("%w: %s (give the server its users: messenger nats-creds)", ErrOpenListener, listen)
	}
	name := cfg.ServerName
	if name == "" {
		name = "messenger"
	}
	opts := &server.Options{
		ServerName:         name,
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.DataDir, "jetstream"),
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		SyncAlways:         cfg.SyncAlways,
		SyncInterval:       cfg.SyncInterval,
		NoSigs:             true,
		// Edges subscribe to one live subject per connected user.
		MaxPending: 256 << 20,
		MaxPayload: 1 << 20,
		Nkeys:      cfg.Users,
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, CaFile: cfg.TLSCA, Verify: cfg.TLSCA != "", Timeout: 2})
		if err != nil {
			return nil, fmt.Errorf("natsserver: tls: %w", err)
		}
		opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = tc, cfg.TLSCA != "", 2
	} else if cfg.TLSCA != "" {
		return nil, errors.New("natsserver: a TLS CA without a certificate and key")
	}
	if err := clusterOptions(cfg, opts); err != nil {
		return nil, err
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: new: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsserver: not ready within 30s")
	}
	return s, nil
}

// clusterOptions sets the route listener and the routes of cfg on opts.
func clusterOptions(cfg Config, opts *server.Options) error {
	if cfg.ClusterListen == "" {
		if len(cfg.Routes) > 0 {
			return errors.New("natsserver: routes without a cluster listener")
		}
		return nil
	}
	host, portStr, err := net.SplitHostPort(cfg.ClusterListen)
	if err != nil {
		return fmt.Errorf("natsserver: cluster listen %q: %w", cfg.ClusterListen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("natsserver: cluster listen %q: bad port", cfg.ClusterListen)
	}
	if len(cfg.Routes) == 0 {
		// nats-server would start without JetStream ("JetStream cluster
		// requires configured routes") and never be ready.
		return errors.New("natsserver: a cluster listener without routes (give every node's route URL)")
	}
	name := cfg.ClusterName
	if name == "" {
		name = "messenger"
	}
	opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = name, host, port
	if !loopback(host) {
		if cfg.TLSCert == "" || cfg.TLSKey == "" || cfg.TLSCA == "" {
			return fmt.Errorf("%w: %s", ErrOpenRoutes, cfg.ClusterListen)
		}
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, CaFile: cfg.TLSCA, Verify: true, Timeout: 2})
		if err != nil {
			return fmt.Errorf("natsserver: route tls: %w", err)
		}
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, 2
	}
	for _, r := range cfg.Routes {
		u, err := url.Parse(strings.TrimSpace(r))
		if err != nil || u.Host == "" {
			return fmt.Errorf("natsserver: route %q: want nats-route://host:port", r)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// loopback tells whether host only listens on this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
