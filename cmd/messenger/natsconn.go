package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/infra/natsauth"
	"messenger/streams"
)

// natsSeed is the seed file role connects with: --nats-nkey, else
// <nats-creds>/<role>.nk when it exists, else none (no authentication).
func natsSeed(cfg *config, role string) string {
	if cfg.NATSNkey != "" {
		return cfg.NATSNkey
	}
	if path := natsauth.SeedFile(cfg.natsCreds(), role); fileExists(path) {
		return path
	}
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// natsUsers are the identities the embedded server accepts, read from
// <nats-creds>/users.json. On a single box (--nats-creds not given) a
// missing file is made, with a seed per role, on first start.
func natsUsers(cfg *config, log *zap.Logger) ([]*server.NkeyUser, error) {
	dir := cfg.natsCreds()
	if !natsauth.Exists(dir) {
		if cfg.explicit["nats-creds"] {
			return nil, fmt.Errorf("no %s in --nats-creds %s (make it with: messenger nats-creds --nats-creds %s)", natsauth.UsersFile, dir, dir)
		}
		if err := natsauth.Generate(dir); err != nil {
			return nil, err
		}
		log.Info("NATS identities made, one seed per role", zap.String("dir", dir))
	}
	return natsauth.LoadUsers(filepath.Join(dir, natsauth.UsersFile))
}

// dialNATS connects to url as role: its seed (natsSeed, or seed when
// given), its own reply prefix, TLS as configured, in process when ns is
// set. Permission violations are logged as errors: they mean the role's
// permission set misses something it does.
func dialNATS(cfg *config, url, role, seed string, ns *server.Server, log *zap.Logger, extra ...nats.Option) (*nats.Conn, error) {
	if seed == "" {
		seed = natsSeed(cfg, role)
	}
	if cfg.NATSPingInterval <= 0 || cfg.NATSMaxPingsOut < 1 {
		return nil, fmt.Errorf("--nats-ping-interval must be positive and --nats-max-pings-out at least 1")
	}
	auth, err := natsauth.ClientOptions(role, seed)
	if err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name("messenger-" + role),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(cfg.NATSPingInterval),
		nats.MaxPingsOutstanding(cfg.NATSMaxPingsOut),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				log.Error("nats permission violation", zap.String("nats_identity", role), zap.Error(err))
			} else {
				log.Warn("nats", zap.Error(err))
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", zap.String("nats_identity", role), zap.Error(err))
		}),
	}
	opts = append(opts, auth...)
	if ns != nil {
		opts = append(opts, nats.InProcessServer(ns))
	} else {
		opts = append(opts, natsauth.TLS(url, cfg.NATSTLSCert, cfg.NATSTLSKey, cfg.NATSTLSCA)...)
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s as %s: %w", url, role, err)
	}
	return nc, nil
}

// openStreams opens the streams and buckets. ensure creates or updates
// them first: the admin identity does it (all, nats, setup), and so does a
// role connected without authentication (to a server that has none, where
// every client may). A role with its own identity may not change them: it
// waits until they exist.
func openStreams(ctx context.Context, js jetstream.JetStream, sc streams.Config, ensure bool) (*streams.Handles, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if ensure {
		if err := streams.Ensure(ctx, js, sc); err != nil {
			return nil, err
		}
	}
	for {
		h, err := streams.Open(ctx, js, sc)
		if err == nil || !errors.Is(err, streams.ErrNotReady) {
			return h, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (is `messenger nats` or `messenger setup` run?)", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// setup creates or updates the streams and buckets as the admin identity,
// on a NATS server run apart (a nats-server cluster): the roles' own
// identities may not.
func setup(ctx context.Context, cfg *config) error {
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	sc := cfg.streams()
	nc, err := dialNATS(cfg, cfg.NATS, natsauth.RoleAdmin, "", nil, log, nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := openStreams(ctx, js, sc, true); err != nil {
		return err
	}
	fmt.Printf("streams and buckets ready on %s (%d partitions, %d replicas)\n", cfg.NATS, sc.WithDefaults().Partitions, sc.WithDefaults().Replicas)
	return nil
}

// natsCreds writes the identities of a single box (or of a cluster, to be
// copied out): a seed per role, the users file and the nats-server
// configuration. Seeds already there are kept.
func natsCreds(cfg *config) error {
	dir := cfg.natsCreds()
	if err := natsauth.Generate(dir); err != nil {
		return err
	}
	fmt.Printf("NATS identities in %s:\n", dir)
	for _, role := range natsauth.Roles {
		fmt.Printf("  %-10s %s\n", role, natsauth.SeedFile(dir, role))
	}
	fmt.Printf("  server     %s (messenger nats --nats-creds %s)\n", filepath.Join(dir, natsauth.UsersFile), dir)
	fmt.Printf("  cluster    %s (include it in each nats-server's configuration)\n", filepath.Join(dir, natsauth.ServerConfFile))
	return nil
}
