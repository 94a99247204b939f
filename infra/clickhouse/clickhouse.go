// Package clickhouse connects to the ClickHouse server that holds the
// analysts' projection of the history and creates its schema (schema.sql).
//
// It speaks the native protocol only (clickhouse-go v2): the driver's HTTP
// protocol is rejected by ClickHouse 18.16, the server Debian packages and
// scripts/clickhouse.sh runs. Inserts must name their columns
// (PrepareBatch("INSERT INTO messages (conv, seq, ...)")) on 18.16.
package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

//go:embed schema.sql
var schemaSQL string

// Defaults of Config.
const (
	defaultAddr        = "127.0.0.1:9000"
	defaultDatabase    = "messenger"
	defaultDialTimeout = 5 * time.Second
	defaultCluster     = "messenger"
)

// Config of the ClickHouse connection. Zero values: Addr "127.0.0.1:9000",
// Database "messenger", DialTimeout 5s, user "default" with no password, no
// TLS.
type Config struct {
	Addr, Database string
	DialTimeout    time.Duration
	// User and Password log in; an empty User is "default".
	User, Password string
	// TLS connects over TLS (ClickHouse's secure native port); CAFile, a
	// PEM file, replaces the system's roots to check the server's
	// certificate and implies TLS.
	TLS    bool
	CAFile string
	// Shards, when set, are the native addresses of the shards of a
	// sharded projection, in the order of the cluster Cluster of their
	// remote_servers (scripts/clickhouse.sh start-shards). ApplyAll and
	// DropAll then work on every shard, and inserts wait for every shard
	// (insert_distributed_sync). Addr may be any of them. Empty: one server.
	Shards []string
	// Cluster names the shards' cluster; empty is "messenger".
	Cluster string
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = defaultAddr
	}
	if c.Database == "" {
		c.Database = defaultDatabase
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.User == "" {
		c.User = "default"
	}
	if c.Cluster == "" {
		c.Cluster = defaultCluster
	}
	return c
}

// Options are the driver options of cfg on database ("" for the server's
// default). It reads CAFile.
func Options(cfg Config, database string) (*ch.Options, error) {
	cfg = cfg.withDefaults()
	o := &ch.Options{
		Protocol:    ch.Native,
		Addr:        []string{cfg.Addr},
		Auth:        ch.Auth{Database: database, Username: cfg.User, Password: cfg.Password},
		DialTimeout: cfg.DialTimeout,
	}
	if len(cfg.Shards) > 0 {
		// An insert into a Distributed table returns once every shard has
		// written its rows, so a projector acks only what is stored; without
		// it the rows wait in a local queue on disk, sent later.
		o.Settings = ch.Settings{"insert_distributed_sync": 1}
	}
	if cfg.TLS || cfg.CAFile != "" {
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("clickhouse: CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("clickhouse: CA file %s: no PEM certificate in it", cfg.CAFile)
			}
			o.TLS.RootCAs = pool
		}
	}
	return o, nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Open connects over the native protocol, creates the database if missing,
// and returns a connection (a pool) using it. The caller closes it.
func Open(ctx context.Context, cfg Config) (driver.Conn, error) {
	cfg = cfg.withDefaults()
	if !identRE.MatchString(cfg.Database) {
		return nil, fmt.Errorf("clickhouse: database name %q is not a plain identifier", cfg.Database)
	}
	// The handshake fails when the database does not exist: create it through
	// a connection to the server's default database first.
	boot, err := dial(ctx, cfg, "")
	if err != nil {
		return nil, err
	}
	err = execCreate(ctx, boot, "CREATE DATABASE IF NOT EXISTS `"+cfg.Database+"`", func(ctx context.Context) (bool, error) {
		var n uint64
		err := boot.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", cfg.Database).Scan(&n)
		return n > 0, err
	})
	boot.Close()
	if err != nil {
		return nil, fmt.Errorf("clickhouse: create database %s: %w", cfg.Database, err)
	}
	return dial(ctx, cfg, cfg.Database)
}

// Server connects to the server's default database, creating nothing: for
// tools that only drop or read databases (the bench, the chaos suite). The
// error says how to start the local server.
func Server(ctx context.Context, addr string) (driver.Conn, error) {
	conn, err := dial(ctx, Config{Addr: addr}.withDefaults(), "")
	if err != nil {
		return nil, fmt.Errorf("%w (start it: bash scripts/clickhouse.sh start)", err)
	}
	return conn, nil
}

// dial opens a pool on database ("" for the server's default) and checks
// that the server answers.
func dial(ctx context.Context, cfg Config, database string) (driver.Conn, error) {
	opts, err := Options(cfg, database)
	if err != nil {
		return nil, err
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open %s: %w", cfg.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse: connect %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

// object is one CREATE statement of schema.sql.
type object struct {
	name string // table or view
	view bool
	stmt string
	// columns are a table's columns with their comments, in order.
	columns []column
}

// column is one column of a table of schema.sql and its COMMENT.
type column struct{ name, comment string }

// columnRE matches a column line of schema.sql: its name, and the text of its
// COMMENT (no quote or backslash in it, so it is the same in SQL and as the
// server stores it).
var columnRE = regexp.MustCompile(`(?m)^\s*([A-Za-z_][A-Za-z0-9_]*)\s+[A-Z].*\sCOMMENT\s+'([^'\\]*)',?\s*$`)

var createRE = regexp.MustCompile(`(?is)^CREATE\s+(TABLE|VIEW)\s+IF\s+NOT\s+EXISTS\s+([A-Za-z_][A-Za-z0-9_]*)\b`)

// objects parses schema.sql, in order.
func objects() ([]object, error) {
	var out []object
	for _, stmt := range splitSQL(schemaSQL) {
		m := createRE.FindStringSubmatch(stmt)
		if m == nil {
			return nil, fmt.Errorf("clickhouse: schema.sql: not a CREATE ... IF NOT EXISTS statement: %.60q", stmt)
		}
		o := object{name: m[2], view: strings.EqualFold(m[1], "VIEW"), stmt: stmt}
		for _, c := range columnRE.FindAllStringSubmatch(stmt, -1) {
			o.columns = append(o.columns, column{name: c[1], comment: c[2]})
		}
		out = append(out, o)
	}
	return out, nil
}

// syncComments gives the columns of table the comments of schema.sql where
// they differ (a table created before its comments were written, or a
// comment changed since): CREATE ... IF NOT EXISTS leaves an existing table
// alone. Columns the table lacks are left to rebuild-history --drop.
func syncComments(ctx context.Context, conn driver.Conn, table string, want []column) error {
	if len(want) == 0 {
		return nil
	}
	rows, err := conn.Query(ctx, "SELECT name, comment FROM system.columns WHERE database = currentDatabase() AND table = ?", table)
	if err != nil {
		return fmt.Errorf("clickhouse: comments of %s: %w", table, err)
	}
	have := map[string]string{}
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			rows.Close()
			return fmt.Errorf("clickhouse: comments of %s: %w", table, err)
		}
		have[name] = comment
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return fmt.Errorf("clickhouse: comments of %s: %w", table, err)
	}
	for _, c := range want {
		if cur, ok := have[c.name]; !ok || cur == c.comment {
			continue
		}
		if err := conn.Exec(ctx, "ALTER TABLE `"+table+"` COMMENT COLUMN `"+c.name+"` '"+c.comment+"'"); err != nil {
			return fmt.Errorf("clickhouse: comment %s.%s: %w", table, c.name, err)
		}
	}
	return nil
}

// Apply creates every table and view of schema.sql that is missing, in the
// connection's database. It is safe to run at every start and concurrently
// from several processes: every statement is CREATE ... IF NOT EXISTS, and the
// error 18.16 may give a concurrent creator of the same table is retried.
func Apply(ctx context.Context, conn driver.Conn) error {
	objs, err := objects()
	if err != nil {
		return err
	}
	for _, o := range objs {
		err := execCreate(ctx, conn, o.stmt, func(ctx context.Context) (bool, error) {
			var n uint8
			err := conn.QueryRow(ctx, "EXISTS TABLE `"+o.name+"`").Scan(&n)
			return n == 1, err
		})
		if err != nil {
			return fmt.Errorf("clickhouse: create %s: %w", o.name, err)
		}
	}
	for _, o := range objs {
		if !o.view {
			if err := syncComments(ctx, conn, o.name, o.columns); err != nil {
				return err
			}
		}
	}
	return nil
}

// Drop removes the projection's tables and views (views first). Apply
// re-creates them.
func Drop(ctx context.Context, conn driver.Conn) error {
	objs, err := objects()
	if err != nil {
		return err
	}
	for i := len(objs) - 1; i >= 0; i-- {
		if err := conn.Exec(ctx, "DROP TABLE IF EXISTS `"+objs[i].name+"`"); err != nil {
			return fmt.Errorf("clickhouse: drop %s: %w", objs[i].name, err)
		}
	}
	return nil
}

// TestAddr is the server address for tests: MESSENGER_CLICKHOUSE, else
// 127.0.0.1:9000 (the default of scripts/clickhouse.sh).
func TestAddr() string {
	if a := os.Getenv("MESSENGER_CLICKHOUSE"); a != "" {
		return a
	}
	return defaultAddr
}

// execCreate runs an idempotent CREATE. ClickHouse 18.16 can fail a CREATE
// ... IF NOT EXISTS when another session creates the same object at that
// moment ("is creating or attaching right now", or "already exists"): then
// it succeeds if the object exists, else retries a bounded number of times.
func execCreate(ctx context.Context, conn driver.Conn, stmt string, exists func(context.Context) (bool, error)) error {
	const attempts = 20
	var err error
	for i := 0; i < attempts; i++ {
		if err = conn.Exec(ctx, stmt); err == nil {
			return nil
		}
		var ex *proto.Exception
		if !errors.As(err, &ex) {
			return err // not a server exception (network, context): no retry here
		}
		if ok, e := exists(ctx); e == nil && ok {
			return nil
		}
		if !racing(ex) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(i+1) * 20 * time.Millisecond):
		}
	}
	return err
}

// racing reports a server exception caused by a concurrent CREATE.
func racing(ex *proto.Exception) bool {
	switch ex.Code {
	case 57, 82: // TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS
		return true
	}
	return strings.Contains(ex.Message, "right now")
}

// splitSQL splits a script into statements on the semicolons outside quotes
// and comments, and drops the comments and empty statements.
func splitSQL(script string) []string {
	var (
		out   []string
		cur   strings.Builder
		s     = script
		flush = func() {
			if t := strings.TrimSpace(cur.String()); t != "" {
				out = append(out, t)
			}
			cur.Reset()
		}
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
			cur.WriteByte('\n')
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				i = len(s)
			} else {
				i += end + 3
			}
			cur.WriteByte(' ')
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				j = len(s) - 1
			}
			cur.WriteString(s[i : j+1])
			i = j
		case c == ';':
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}
