package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	chinfra "messenger/infra/clickhouse"
	"messenger/services/history"
)

// chLink is a ClickHouse connection that may come later: the platform
// starts, stores and delivers messages without ClickHouse, and uses it
// (projection, history reads) once it answers. It keeps pinging it for
// /readyz.
//
// Only the projector (and `all`) makes the database and the schema
// (makeSchema): an edge only reads, so it connects once the projector's
// tables exist and reads history from the streams until then.
type chLink struct {
	cfg        chinfra.Config
	makeSchema bool
	log        *zap.Logger
	conn       atomic.Pointer[driver.Conn]
	healthy    atomic.Bool
	// noSchema: connected to nothing yet because the projection's
	// tables are not there (an edge before the first projector).
	noSchema atomic.Bool
	ready    chan struct{}
	once     sync.Once
}

func newCHLink(cfg chinfra.Config, makeSchema bool, log *zap.Logger) *chLink {
	return &chLink{cfg: cfg, makeSchema: makeSchema, log: log.With(zap.String("component", "clickhouse")), ready: make(chan struct{})}
}

// errNoSchema: the database or the history table is not there yet (no
// projector has started against this ClickHouse).
var errNoSchema = errors.New("no projection schema yet (the projector makes it)")

// historyTable is the table history pages read (services/history).
const historyTable = "messages"

// connect opens the connection: with makeSchema it creates the database
// and the schema; otherwise it fails with errNoSchema until they exist.
func (l *chLink) connect(ctx context.Context) (driver.Conn, error) {
	if l.makeSchema {
		conn, err := chinfra.Open(ctx, l.cfg)
		if err != nil {
			return nil, err
		}
		if err := chinfra.ApplyAll(ctx, conn, l.cfg); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
	opts, err := chinfra.Options(l.cfg, l.cfg.Database)
	if err != nil {
		return nil, err
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open %s: %w", l.cfg.Addr, err)
	}
	var exists uint8
	if err := conn.QueryRow(ctx, "EXISTS TABLE "+historyTable).Scan(&exists); err != nil || exists != 1 {
		conn.Close()
		var ex *ch.Exception
		if err == nil || (errors.As(err, &ex) && ex.Code == chUnknownDatabase) {
			return nil, errNoSchema
		}
		return nil, fmt.Errorf("clickhouse: connect %s: %w", l.cfg.Addr, err)
	}
	return conn, nil
}

// chUnknownDatabase is ClickHouse's error code for a missing database.
const chUnknownDatabase = 81

// run connects and then watches health until ctx ends.
func (l *chLink) run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	told := false
	for ctx.Err() == nil && l.conn.Load() == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := l.connect(cctx)
		cancel()
		if err != nil {
			if errors.Is(err, errNoSchema) {
				l.noSchema.Store(true)
				if !told {
					l.log.Info("clickhouse has no projection yet: history is read from the streams until the projector makes its tables", zap.String("addr", l.cfg.Addr), zap.String("db", l.cfg.Database))
				}
				told = true
			} else {
				l.log.Warn("clickhouse not available yet", zap.String("addr", l.cfg.Addr), zap.Error(err))
			}
			sleepCtx(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		l.conn.Store(&conn)
		l.noSchema.Store(false)
		l.healthy.Store(true)
		l.once.Do(func() { close(l.ready) })
		l.log.Info("clickhouse connected", zap.String("addr", l.cfg.Addr), zap.String("db", l.cfg.Database))
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if c := l.conn.Load(); c != nil {
				(*c).Close()
			}
			return
		case <-t.C:
			if c := l.conn.Load(); c != nil {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				l.healthy.Store((*c).Ping(pctx) == nil)
				cancel()
			}
		}
	}
}

// get waits for the connection.
func (l *chLink) get(ctx context.Context) (driver.Conn, error) {
	select {
	case <-l.ready:
		return *l.conn.Load(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var errNoClickHouse = errors.New("clickhouse not connected")

// store is the history projection as seen by an edge: unavailable (so the
// stream answers) until connected.
type linkStore struct{ l *chLink }

func (s linkStore) Range(ctx context.Context, conv string, lo, hi uint64) ([]history.Event, error) {
	c := s.l.conn.Load()
	if c == nil {
		return nil, errNoClickHouse
	}
	return (&history.ClickHouse{Conn: *c}).Range(ctx, conv, lo, hi)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// chPasswordEnv holds the ClickHouse password when no file is given. It is
// not a flag: a flag's value shows in /proc/<pid>/cmdline.
const chPasswordEnv = "MESSENGER_CLICKHOUSE_PASSWORD"

// chConfig is the ClickHouse connection of cfg, the password read from
// --clickhouse-password-file or MESSENGER_CLICKHOUSE_PASSWORD.
func chConfig(cfg *config, log *zap.Logger) (chinfra.Config, error) {
	c := chinfra.Config{Addr: cfg.ClickHouse, Database: cfg.ClickHouseDB, User: cfg.ClickHouseUser, TLS: cfg.ClickHouseTLS, CAFile: cfg.ClickHouseCA,
		Shards: cfg.chShards(), Cluster: cfg.ClickHouseCluster}
	env, inEnv := os.LookupEnv(chPasswordEnv)
	switch {
	case cfg.ClickHousePasswordFile != "" && inEnv:
		return c, fmt.Errorf("give --clickhouse-password-file or %s, not both", chPasswordEnv)
	case cfg.ClickHousePasswordFile != "":
		p, err := readSecretFile(cfg.ClickHousePasswordFile, "--clickhouse-password-file", log)
		if err != nil {
			return c, err
		}
		c.Password = p
	default:
		c.Password = env
	}
	return c, nil
}
