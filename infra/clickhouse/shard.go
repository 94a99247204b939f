package clickhouse

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// LocalSuffix ends the name of a shard's own table: the Distributed table
// messages reads and writes every shard's messages_local.
const LocalSuffix = "_local"

// shardedObjects are the objects of schema.sql on one shard of a sharded
// projection: each table as <table>_local (same engine and key), then each
// table as a Distributed table over the cluster's <table>_local (the same
// columns and comments), keyed by
// cityHash64(conv) (the rows of a conversation, its receipts and membership
// changes all on one shard: a page reads one shard's rows and a
// ReplacingMergeTree collapses copies of a row, which a merge only does
// within a shard), then the views unchanged: FINAL on a Distributed table
// runs FINAL on every shard (18.16 and current versions), exact since the
// copies of a row are on the same shard.
func shardedObjects(cluster, database string) ([]object, error) {
	objs, err := objects()
	if err != nil {
		return nil, err
	}
	var locals, dists, views []object
	for _, o := range objs {
		if o.view {
			views = append(views, o)
			continue
		}
		local := o.name + LocalSuffix
		loc := createRE.FindStringSubmatchIndex(o.stmt)
		locals = append(locals, object{name: local, stmt: o.stmt[:loc[4]] + local + o.stmt[loc[5]:], columns: o.columns})
		dists = append(dists, object{name: o.name, stmt: "CREATE TABLE IF NOT EXISTS " + o.name + " AS " + local +
			" ENGINE = Distributed(" + cluster + ", " + database + ", " + local + ", cityHash64(conv))", columns: o.columns})
	}
	return append(append(locals, dists...), views...), nil
}

// ApplyAll creates the schema of cfg: Apply on conn for one server; with
// cfg.Shards, on every shard (through connections of its own, creating the
// database) the local tables, the Distributed tables and the views, after
// checking that the shard's cluster cfg.Cluster lists cfg.Shards in order.
// Every shard gets the Distributed tables, so the platform may talk to any.
func ApplyAll(ctx context.Context, conn driver.Conn, cfg Config) error {
	if len(cfg.Shards) == 0 {
		return Apply(ctx, conn)
	}
	cfg = cfg.withDefaults()
	if !identRE.MatchString(cfg.Cluster) {
		return fmt.Errorf("clickhouse: cluster name %q is not a plain identifier", cfg.Cluster)
	}
	objs, err := shardedObjects(cfg.Cluster, cfg.Database)
	if err != nil {
		return err
	}
	return eachShard(ctx, cfg, func(sc driver.Conn, addr string) error {
		if err := checkCluster(ctx, sc, cfg); err != nil {
			return err
		}
		for _, o := range objs {
			err := execCreate(ctx, sc, o.stmt, func(ctx context.Context) (bool, error) {
				var n uint8
				err := sc.QueryRow(ctx, "EXISTS TABLE `"+o.name+"`").Scan(&n)
				return n == 1, err
			})
			if err != nil {
				return fmt.Errorf("clickhouse: shard %s: create %s: %w", addr, o.name, err)
			}
		}
		for _, o := range objs {
			if err := syncComments(ctx, sc, o.name, o.columns); err != nil {
				return fmt.Errorf("clickhouse: shard %s: %w", addr, err)
			}
		}
		return nil
	})
}

// DropAll removes the projection's tables and views: Drop on conn for one
// server; with cfg.Shards, the views, Distributed tables and local tables of
// every shard. ApplyAll re-creates them.
func DropAll(ctx context.Context, conn driver.Conn, cfg Config) error {
	if len(cfg.Shards) == 0 {
		return Drop(ctx, conn)
	}
	cfg = cfg.withDefaults()
	objs, err := shardedObjects(cfg.Cluster, cfg.Database)
	if err != nil {
		return err
	}
	return eachShard(ctx, cfg, func(sc driver.Conn, addr string) error {
		for i := len(objs) - 1; i >= 0; i-- {
			if err := sc.Exec(ctx, "DROP TABLE IF EXISTS `"+objs[i].name+"`"); err != nil {
				return fmt.Errorf("clickhouse: shard %s: drop %s: %w", addr, objs[i].name, err)
			}
		}
		return nil
	})
}

// TestShards are the shards for tests: MESSENGER_TEST_CLICKHOUSE_SHARDS
// (comma-separated), else 127.0.0.1:9101 and 127.0.0.1:9102 (the defaults of
// scripts/clickhouse.sh start-shards, cluster "messenger").
func TestShards() []string {
	s := os.Getenv("MESSENGER_TEST_CLICKHOUSE_SHARDS")
	if s == "" {
		s = "127.0.0.1:9101,127.0.0.1:9102"
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// eachShard runs f with a connection to each shard's database (created when
// missing), one shard after the other.
func eachShard(ctx context.Context, cfg Config, f func(conn driver.Conn, addr string) error) error {
	for _, addr := range cfg.Shards {
		sc := cfg
		sc.Addr = addr
		conn, err := Open(ctx, sc)
		if err != nil {
			return fmt.Errorf("clickhouse: shard %s: %w", addr, err)
		}
		err = f(conn, addr)
		conn.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// checkCluster fails unless the server's cluster cfg.Cluster has the shards
// cfg.Shards in that order (one replica each): every shard must send a row
// to the same shard, and a shard missing from the cluster would never be
// read.
func checkCluster(ctx context.Context, conn driver.Conn, cfg Config) error {
	rows, err := conn.Query(ctx, "SELECT shard_num, host_name, host_address, port FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", cfg.Cluster)
	if err != nil {
		return fmt.Errorf("clickhouse: cluster %s: %w", cfg.Cluster, err)
	}
	defer rows.Close()
	var got []string
	same := true
	for rows.Next() {
		var num uint32
		var name, addr string
		var port uint16
		if err := rows.Scan(&num, &name, &addr, &port); err != nil {
			return fmt.Errorf("clickhouse: cluster %s: %w", cfg.Cluster, err)
		}
		p := ":" + strconv.Itoa(int(port))
		i := len(got)
		same = same && i < len(cfg.Shards) && (cfg.Shards[i] == name+p || cfg.Shards[i] == addr+p)
		got = append(got, name+p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: cluster %s: %w", cfg.Cluster, err)
	}
	want := strings.Join(cfg.Shards, ",")
	if !same || len(got) != len(cfg.Shards) {
		return fmt.Errorf("clickhouse: the remote_servers of this server name cluster %s as [%s], the shards given are [%s] "+
			"(scripts/clickhouse.sh start-shards writes it; the order must match)", cfg.Cluster, strings.Join(got, ","), want)
	}
	return nil
}
