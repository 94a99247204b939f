// Package natsserver runs the embedded nats-server with JetStream on disk, for
// `messenger all`, `messenger nats` and the tests.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
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
}

// ErrOpenListener refuses a listener reachable from other hosts with no
// authentication: anyone there could read and forge every message.
var ErrOpenListener = errors.New("natsserver: refusing a non-loopback listener without authentication")

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
	opts := &server.Options{
		ServerName:         "messenger",
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

// loopback tells whether host only listens on this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
