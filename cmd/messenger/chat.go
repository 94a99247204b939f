package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"messenger/client"
)

// chat is a line-oriented terminal client: what a newcomer uses to try the
// platform with two terminals. Lines typed are sent to the current peer;
// "/to <user>" changes the peer; incoming messages print as they arrive,
// one's own with ✓ once stored, and the peer's receipts as they come.
func chat(cfg *config, user, to, url string, in io.Reader, out io.Writer) error {
	if user == "" {
		return errors.New("usage: messenger chat <user> [--to <peer>] [--url ws://127.0.0.1:8080]")
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
	print("signed in as %s on %s. Type a line to send it to %q; /to <user> to change; Ctrl-D to quit.", user, url, to)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "/to "):
			to = strings.TrimSpace(strings.TrimPrefix(line, "/to "))
			print("  now writing to %s", to)
		case to == "":
			print("  nobody to write to: /to <user>")
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
