package push_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"messenger/infra/pushtest"
	"messenger/services/push"
)

// client trusts the fake servers' certificate and lets it connect to allow.
func client(t *testing.T, caFile string, timeout time.Duration, allow ...string) *http.Client {
	t.Helper()
	c, err := push.HTTPClient(allow, caFile, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func note() push.Notification {
	return push.Notification{Conv: "d.alice.bob", From: "alice", Count: 3, Seq: 42, Title: "alice",
		Body: "3 new messages from alice", CollapseID: "d.alice.bob", TTL: time.Hour}
}

func newFCM(t *testing.T, f *pushtest.FCM, c *http.Client) *push.FCMProvider {
	t.Helper()
	p, err := push.NewFCM(f.CredentialsJSON, f.URL, c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFCMSendsTheMessageWithAnIssuedToken(t *testing.T) {
	f := pushtest.NewFCM(t)
	p := newFCM(t, f, client(t, f.CAFile, 10*time.Second, f.Host))
	if p.Project() != pushtest.FCMProject {
		t.Fatalf("project %q", p.Project())
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := p.Send(ctx, push.Target{User: "bob", ID: "r1", Platform: push.FCM, Token: "tok-bob"}, note()); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	msgs := f.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages recorded, want 2", len(msgs))
	}
	m := msgs[0]
	if m.Token != "tok-bob" || m.Notification == nil || m.Notification.Title != "alice" || m.Notification.Body != "3 new messages from alice" {
		t.Errorf("message %+v", m)
	}
	want := map[string]string{"conv": "d.alice.bob", "sender": "alice", "seq": "42", "count": "3"}
	for k, v := range want {
		if m.Data[k] != v {
			t.Errorf("data[%s] = %q, want %q (data %v)", k, m.Data[k], v, m.Data)
		}
	}
	if a := m.Android; a == nil || a.CollapseKey != "d.alice.bob" || a.TTL != "3600s" || a.Priority != "HIGH" {
		t.Errorf("android %+v", m.Android)
	}
	if n := f.TokensIssued(); n != 1 {
		t.Errorf("%d access tokens fetched for two sends, want 1 (reused)", n)
	}
}

func TestFCMFetchesANewTokenOnceWhenRefused(t *testing.T) {
	f := pushtest.NewFCM(t)
	p := newFCM(t, f, client(t, f.CAFile, 10*time.Second, f.Host))
	tgt := push.Target{ID: "r1", Platform: push.FCM, Token: "tok"}
	if err := p.Send(context.Background(), tgt, note()); err != nil {
		t.Fatal(err)
	}
	f.ExpireAccessTokens()
	if err := p.Send(context.Background(), tgt, note()); err != nil {
		t.Fatalf("after the token was revoked: %v", err)
	}
	if n := f.TokensIssued(); n != 2 {
		t.Errorf("%d tokens issued, want 2", n)
	}
	if n := len(f.Messages()); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

func TestFCMAnswers(t *testing.T) {
	f := pushtest.NewFCM(t)
	p := newFCM(t, f, client(t, f.CAFile, 10*time.Second, f.Host))
	f.Unregister("tok-gone")
	f.Invalid("tok-invalid")
	send := func(token string) error {
		return p.Send(context.Background(), push.Target{ID: "r", Platform: push.FCM, Token: token}, note())
	}
	if err := send("tok-gone"); !errors.Is(err, push.ErrGone) {
		t.Errorf("UNREGISTERED: %v, want ErrGone", err)
	}
	if err := send("tok-invalid"); !errors.Is(err, push.ErrGone) {
		t.Errorf("INVALID_ARGUMENT on message.token: %v, want ErrGone", err)
	}
	f.SetFault(pushtest.TooLarge) // INVALID_ARGUMENT, not about the token
	if err := send("tok"); err == nil || errors.Is(err, push.ErrGone) || isRetry(err) {
		t.Errorf("INVALID_ARGUMENT on the message: %v, want a permanent error", err)
	}
	f.SetRetryAfter(7)
	f.SetFault(pushtest.TooMany)
	if err := send("tok"); !retryAfter(err, 7*time.Second) {
		t.Errorf("429: %v, want RetryError after 7s", err)
	}
	f.SetFault(pushtest.Unavailable)
	if err := send("tok"); !isRetry(err) || errors.Is(err, push.ErrGone) {
		t.Errorf("503: %v, want RetryError", err)
	}
	if n := len(f.Messages()); n != 0 {
		t.Errorf("%d messages recorded, want none", n)
	}
}

func isRetry(err error) bool {
	var re *push.RetryError
	return errors.As(err, &re)
}

func retryAfter(err error, after time.Duration) bool {
	var re *push.RetryError
	return errors.As(err, &re) && re.After == after
}

// hangs checks that a provider's Send to a server that never answers ends
// as a RetryError, both by the caller's deadline and by the client's own
// timeout.
func hangs(t *testing.T, caFile, host string, send func(ctx context.Context, c *http.Client) error) {
	t.Run("ctx", func(t *testing.T) {
		c := client(t, caFile, time.Minute, host)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := send(ctx, c)
		if !isRetry(err) {
			t.Fatalf("hang: %v, want RetryError", err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("returned after %v with a 300ms deadline", d)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		c := client(t, caFile, 500*time.Millisecond, host)
		start := time.Now()
		err := send(context.Background(), c)
		if !isRetry(err) {
			t.Fatalf("hang: %v, want RetryError", err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("returned after %v with a 500ms timeout", d)
		}
	})
}

func TestFCMHangIsBounded(t *testing.T) {
	f := pushtest.NewFCM(t)
	f.SetFault(pushtest.Hang)
	hangs(t, f.CAFile, f.Host, func(ctx context.Context, c *http.Client) error {
		return newFCM(t, f, c).Send(ctx, push.Target{ID: "r", Platform: push.FCM, Token: "tok"}, note())
	})
	if f.Hung() == 0 {
		t.Error("the server held no request")
	}
}

// A token endpoint that never answers is bounded the same way; one that
// is down is transient.
func TestFCMTokenEndpointHangIsBounded(t *testing.T) {
	f := pushtest.NewFCM(t)
	f.SetTokenFault(pushtest.Hang)
	hangs(t, f.CAFile, f.Host, func(ctx context.Context, c *http.Client) error {
		return newFCM(t, f, c).Send(ctx, push.Target{ID: "r", Platform: push.FCM, Token: "tok"}, note())
	})
	if f.Hung() == 0 {
		t.Error("the token endpoint held no request")
	}
	f.SetTokenFault(pushtest.Unavailable)
	p := newFCM(t, f, client(t, f.CAFile, 10*time.Second, f.Host))
	if err := p.Send(context.Background(), push.Target{ID: "r", Platform: push.FCM, Token: "tok"}, note()); !isRetry(err) {
		t.Fatalf("token endpoint 503: %v, want RetryError", err)
	}
}

func TestFCMRefusesALoopbackServerNotAllowed(t *testing.T) {
	f := pushtest.NewFCM(t)
	p := newFCM(t, f, client(t, f.CAFile, 10*time.Second)) // no allow list
	err := p.Send(context.Background(), push.Target{ID: "r", Platform: push.FCM, Token: "tok"}, note())
	if !errors.Is(err, push.ErrForbiddenAddress) || isRetry(err) {
		t.Fatalf("send to 127.0.0.1 without an allow list: %v, want ErrForbiddenAddress, permanent", err)
	}
	if f.TokensIssued() != 0 || len(f.Messages()) != 0 {
		t.Fatal("the server was reached")
	}
}

// The local token endpoint checks the assertion's signature: a key the
// project does not know gets no access token, and that is permanent.
func TestFCMTokenEndpointRefusesAnotherKey(t *testing.T) {
	f := pushtest.NewFCM(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var sa struct {
		ClientEmail string `json:"client_email"`
	}
	json.Unmarshal(f.CredentialsJSON, &sa)
	forged := pushtest.ServiceAccountKey(t, other, pushtest.FCMProject, sa.ClientEmail, f.URL+"/token")
	p, err := push.NewFCM(forged, f.URL, client(t, f.CAFile, 10*time.Second, f.Host))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Send(context.Background(), push.Target{ID: "r", Platform: push.FCM, Token: "tok"}, note())
	if err == nil || isRetry(err) || errors.Is(err, push.ErrGone) {
		t.Fatalf("a key the project does not know: %v, want a permanent error", err)
	}
	if f.TokensIssued() != 0 || len(f.Messages()) != 0 {
		t.Fatal("a token was issued for a forged assertion")
	}
}
