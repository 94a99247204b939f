package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"messenger/client"
	"messenger/client/proto"
)

const chatUsage = "usage: messenger chat <user> [--to <peer>] [--url ws://127.0.0.1:8080] [key flags]"

// chatKeyFlags are the server flags chat needs: those that find the key it
// signs its own token with (and --data, where the development secret and
// the saved cursor live). Only these and chat's own are listed by -h.
var chatKeyFlags = []string{"data", "dev", "jwt-secret", "jwt-secret-file", "jwt-public-key", "jwt-private-key", "jwt-audience", "jwt-issuer", "jwt-max-ttl"}

// chatCommand parses chat's flags (its own and chatKeyFlags, each also
// MESSENGER_<FLAG>) and runs chat.
func chatCommand(args []string, in io.Reader, out, errOut io.Writer) error {
	var cfg config
	all := flag.NewFlagSet("all", flag.ContinueOnError)
	cfg.flags(all)
	fs := flag.NewFlagSet("messenger chat", flag.ContinueOnError)
	fs.SetOutput(errOut)
	to := fs.String("to", "", "the user to write to first (or type /to <user> once signed in)")
	url := fs.String("url", "ws://127.0.0.1:8080", "WebSocket base URL of an edge")
	for _, name := range chatKeyFlags {
		f := all.Lookup(name)
		fs.Var(f.Value, f.Name, strings.ReplaceAll(f.Usage, "`", ""))
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nA terminal chat client: lines typed go to the current peer, /to <user> changes it.\nIt signs its own token with the configured key, like messenger token.\nEvery flag also reads MESSENGER_<FLAG>.\n\nflags:\n", chatUsage)
		fs.PrintDefaults()
	}
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
	return chat(&cfg, user, *to, *url, in, out)
}

// chat is a line-oriented terminal client: what a newcomer uses to try the
// platform with two terminals. Lines typed are sent to the current peer;
// "/to <user>" changes the peer; incoming messages print as they arrive,
// one's own with ✓ once stored, and the peer's receipts as they come.
func chat(cfg *config, user, to, url string, in io.Reader, out io.Writer) error {
	if user == "" {
		return errors.New(chatUsage)
	}
	if !proto.ValidID(user) {
		return fmt.Errorf("%q is not a user id ([A-Za-z0-9_-]{1,64}); %s", user, chatUsage)
	}
	if to != "" && !proto.ValidID(to) {
		return fmt.Errorf("--to %q is not a user id ([A-Za-z0-9_-]{1,64})", to)
	}
	signer, err := signer(cfg)
	if err != nil {
		return err
	}
	cursorFile := fmt.Sprintf("%s/chat-%s.cursor", cfg.Data, user)
	saved, _ := os.ReadFile(cursorFile)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	print := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	c, err := client.Dial(ctx, client.Config{
		URLs:          []string{url},
		Token:         func() (string, error) { return signer.Token(user, min(24*time.Hour, signer.MaxTTL())) },
		Device:        "cli",
		Cursor:        strings.TrimSpace(string(saved)),
		AutoDelivered: true,
		OnEvent: func(e client.Event) {
			switch e.Type {
			case "msg":
				if e.From == user {
					print("  [%s #%d] you: %s ✓", short(e.Conv), e.Seq, e.Text)
				} else {
					print("  [%s #%d] %s: %s", short(e.Conv), e.Seq, e.From, e.Text)
				}
			case "receipt":
				if e.User != user {
					print("  [%s] %s %s up to #%d", short(e.Conv), e.User, e.Status, e.Seq)
				}
			case "error":
				print("  error: %s: %s", e.Code, e.Message)
			}
			if e.Cursor != "" {
				_ = os.WriteFile(cursorFile, []byte(e.Cursor), 0o600)
			}
		},
		OnState: func(s client.State) {
			if s != client.Connected {
				print("  (%s)", s)
			}
		},
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if to == "" {
		print("signed in as %s on %s. No peer yet (no --to): type /to <user> to choose whom to write to; Ctrl-D to quit.", user, url)
	} else {
		print("signed in as %s on %s. Type a line to send it to %s; /to <user> to change; Ctrl-D to quit.", user, url, to)
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case line == "/to" || strings.HasPrefix(line, "/to "):
			peer := strings.TrimSpace(strings.TrimPrefix(line, "/to"))
			if !proto.ValidID(peer) {
				print("  usage: /to <user> (a user id: letters, digits, _ and -, at most 64)")
				continue
			}
			to = peer
			print("  now writing to %s", to)
		case to == "":
			print("  not sent: nobody to write to yet; type /to <user> first")
		default:
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := c.Send(sctx, to, "", line)
			scancel()
			if err != nil {
				print("  not sent: %v", err)
			}
		}
	}
	return sc.Err()
}

func short(conv string) string {
	if len(conv) > 8 {
		return conv[:8]
	}
	return conv
}
