package clickhouse_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"messenger/infra/clickhouse"
)

// TestCredentialsReachTheServer: the user and password of Config are the
// ones the server checks (issue 12: ClickHouse had no user or password
// option, so a protected server could not be used). The local test server's
// "default" user has no password: any other user, or a password, is refused.
func TestCredentialsReachTheServer(t *testing.T) {
	for _, c := range []struct {
		name       string
		user, pass string
	}{
		{"unknown user", "no_such_user_issue12", ""},
		{"wrong password", "default", "wrong-password"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := clickhouse.Open(ctx, clickhouse.Config{Addr: clickhouse.TestAddr(), User: c.user, Password: c.pass, DialTimeout: 3 * time.Second})
			if err == nil {
				conn.Close()
				t.Fatal("the server accepted the login")
			}
			if msg := strings.ToLower(err.Error()); !strings.Contains(msg, "user") && !strings.Contains(msg, "password") && !strings.Contains(msg, "auth") {
				t.Fatalf("refused, but not for the login: %v", err)
			}
		})
	}
}
