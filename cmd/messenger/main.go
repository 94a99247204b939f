// Command messenger runs the messaging platform: every role in one process
// (`all`), or one role each (`nats`, `edge`, `fanout`), and mints tokens
// (`token`). main only parses, wires and waits; see app.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const usage = `usage: messenger <command> [flags]

commands:
  all      every role in one process, with an embedded NATS server (single box)
  nats     the embedded NATS server alone (JetStream under --data)
  edge     WebSocket and HTTP API, against --nats
  fanout   per-recipient fan-out, against --nats
  projector  the ClickHouse history projection, against --nats and --clickhouse
  presence   who is online, told to watchers, against --nats
  notifier   push notifications to away members (FCM, APNs, Web Push), against --nats
  push test <user>     send a test push to each of the user's devices, print each provider's answer
  replay-dead-letters  project the projector's dead letters again
  rebuild-history      make the ClickHouse projection again from the streams [--drop]
  check-history        compare each conversation stream with ClickHouse, print the holes [--repair]
  rebuild-push         write the push registrations and mutes (KV push, mutes) again from stream PUSHREG
  nats-creds  make the NATS identities under --nats-creds (default <data>/nats): a seed per role, users.json, nats-server.conf
  setup    create or update the streams and buckets on --nats as the admin identity (a nats-server cluster)
  token    print a token: messenger token <user> [--ttl 24h]
  chat     a terminal chat client: messenger chat <user> [--to <peer>]

Every flag also reads MESSENGER_<FLAG>; run 'messenger <command> -h' for the flags.
`

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "all" || os.Args[1] == "edge") {
		smallStacks()
	}
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "messenger:", err)
		}
		os.Exit(2)
	}
}

// smallStacks runs the binary again with GODEBUG=adaptivestackstart=0,
// unless GODEBUG sets it already. Since Go 1.19 a new goroutine starts with
// the average stack size the last GC saw, 4 or 8 KiB in an edge before its
// connections are many, and gws's read goroutine of each connection keeps it
// for the connection's whole life: a stack shrinks only when less than a
// quarter of it is in use, and the read goroutine parks with about 1 KiB.
// With the setting every goroutine starts at 2 KiB, enough for that read
// goroutine (docs/BENCHMARKS.md, idle), and grows when it needs more.
func smallStacks() {
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, "adaptivestackstart=") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	env := []string{"GODEBUG=" + godebug + "adaptivestackstart=0"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	_ = syscall.Exec(exe, os.Args, env) // returns only if it failed: run as is
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("messenger "+cmd, flag.ContinueOnError)
	var cfg config
	cfg.flags(fs)
	switch cmd {
	case "token":
		ttl := fs.Duration("ttl", 24*time.Hour, "token lifetime")
		var user string
		if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
			user, args = args[0], args[1:]
		}
		if err := parse(fs, args, &cfg); err != nil {
			return err
		}
		if user == "" && fs.NArg() > 0 {
			user = fs.Arg(0)
		}
		return printToken(&cfg, user, *ttl)
	case "chat":
		return chatCommand(args, os.Stdin, os.Stdout, os.Stderr)
	case "replay-dead-letters", "rebuild-history", "check-history":
		drop := fs.Bool("drop", false, "rebuild-history: drop the tables first (stop every projector before)")
		repair := fs.Bool("repair", false, "check-history: project the missing events again from the streams")
		if err := parse(fs, args, &cfg); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return admin(ctx, cmd, &cfg, adminFlags{drop: *drop, repair: *repair})
	case "rebuild-push":
		if err := parse(fs, args, &cfg); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return rebuildPush(ctx, &cfg)
	case "nats-creds":
		if err := parse(fs, args, &cfg); err != nil {
			return err
		}
		return natsCreds(&cfg)
	case "setup":
		if err := parse(fs, args, &cfg); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return setup(ctx, &cfg)
	case "push":
		if len(args) == 0 || args[0] != "test" {
			return errors.New("usage: messenger push test <user> [flags]")
		}
		var user string
		if args = args[1:]; len(args) > 0 && args[0] != "" && args[0][0] != '-' {
			user, args = args[0], args[1:]
		}
		if err := parse(fs, args, &cfg); err != nil {
			return err
		}
		if user == "" && fs.NArg() > 0 {
			user = fs.Arg(0)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return pushTest(ctx, &cfg, user, os.Stdout)
	case "all", "nats", "edge", "fanout", "projector", "presence", "notifier":
		if err := parse(fs, args, &cfg); err != nil {
			return err
		}
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, cleanup, err := build(ctx, cmd, &cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	return a.run(ctx)
}
