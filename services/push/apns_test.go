package push_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"messenger/infra/pushtest"
	"messenger/services/push"
)

func newAPNs(t *testing.T, a *pushtest.APNs, c *http.Client) *push.APNsProvider {
	t.Helper()
	p, err := push.NewAPNs(push.APNsConfig{Key: a.KeyP8, KeyID: pushtest.APNsKeyID, TeamID: pushtest.APNsTeamID,
		Topic: pushtest.APNsTopic, Endpoint: a.URL}, c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAPNsSendsOverHTTP2WithAProviderToken(t *testing.T) {
	a := pushtest.NewAPNs(t)
	p := newAPNs(t, a, client(t, a.CAFile, 10*time.Second, a.Host))
	dev := pushtest.DeviceToken()
	n := note()
	n.Badge = 5
	n.CollapseID = strings.Repeat("c", 100) // over APNs' 64 bytes
	start := time.Now()
	for i := 0; i < 2; i++ {
		if err := p.Send(context.Background(), push.Target{User: "bob", ID: "r1", Platform: push.APNs, Token: dev}, n); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	got := a.Notifications()
	if len(got) != 2 {
		t.Fatalf("%d notifications, want 2", len(got))
	}
	g := got[0]
	if g.Token != dev || g.Topic != pushtest.APNsTopic || g.PushType != "alert" || g.Priority != "10" {
		t.Errorf("headers %+v", g)
	}
	if len(g.CollapseID) == 0 || len(g.CollapseID) > 64 || g.CollapseID != got[1].CollapseID {
		t.Errorf("collapse ids %q %q", g.CollapseID, got[1].CollapseID)
	}
	if exp := time.Unix(g.Expiration, 0); exp.Before(start.Add(time.Hour-time.Minute)) || exp.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Errorf("apns-expiration %v, want about an hour from now", exp)
	}
	pl := g.Payload
	if pl.APS.Alert.Title != "alice" || pl.APS.Alert.Body != "3 new messages from alice" || pl.APS.ThreadID != "d.alice.bob" ||
		pl.APS.Badge == nil || *pl.APS.Badge != 5 || pl.Conv != "d.alice.bob" || pl.From != "alice" || pl.Seq != 42 || pl.Count != 3 {
		t.Errorf("payload %+v", pl)
	}
	if n := a.ProviderTokens(); n != 1 {
		t.Errorf("%d provider tokens for two sends, want 1 (reused)", n)
	}
}

// The fake refuses HTTP/1.1 as APNs does, so the provider's success above
// was HTTP/2.
func TestAPNsFakeRefusesHTTP1(t *testing.T) {
	a := pushtest.NewAPNs(t)
	pem, err := os.ReadFile(a.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	resp, err := h1.Post(a.URL+"/3/device/"+pushtest.DeviceToken(), "application/json", strings.NewReader(`{"aps":{"alert":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusHTTPVersionNotSupported || a.HTTP1Refused() != 1 {
		t.Fatalf("HTTP/1.1: %d, refused %d", resp.StatusCode, a.HTTP1Refused())
	}
}

func TestAPNsNewProviderTokenOnceWhenExpired(t *testing.T) {
	a := pushtest.NewAPNs(t)
	p := newAPNs(t, a, client(t, a.CAFile, 10*time.Second, a.Host))
	tgt := push.Target{ID: "r1", Platform: push.APNs, Token: pushtest.DeviceToken()}
	if err := p.Send(context.Background(), tgt, note()); err != nil {
		t.Fatal(err)
	}
	a.ExpireProviderTokens()
	if err := p.Send(context.Background(), tgt, note()); err != nil {
		t.Fatalf("after ExpiredProviderToken: %v", err)
	}
	if n := a.ProviderTokens(); n != 2 {
		t.Errorf("%d provider tokens, want 2", n)
	}
	if n := len(a.Notifications()); n != 2 {
		t.Errorf("%d notifications, want 2", n)
	}
}

func TestAPNsAnswers(t *testing.T) {
	a := pushtest.NewAPNs(t)
	p := newAPNs(t, a, client(t, a.CAFile, 10*time.Second, a.Host))
	gone := pushtest.DeviceToken()
	a.Unregister(gone)
	send := func(token string) error {
		return p.Send(context.Background(), push.Target{ID: "r", Platform: push.APNs, Token: token}, note())
	}
	if err := send(gone); !errors.Is(err, push.ErrGone) {
		t.Errorf("410 Unregistered: %v, want ErrGone", err)
	}
	if err := send(strings.Repeat("ab", 31)); !errors.Is(err, push.ErrGone) { // hex, wrong length
		t.Errorf("400 BadDeviceToken: %v, want ErrGone", err)
	}
	if err := send("not-a-token/../x"); !errors.Is(err, push.ErrGone) {
		t.Errorf("a token that is not hex: %v, want ErrGone", err)
	}
	a.SetRetryAfter(3)
	a.SetFault(pushtest.TooMany)
	if err := send(pushtest.DeviceToken()); !retryAfter(err, 3*time.Second) {
		t.Errorf("429: %v, want RetryError after 3s", err)
	}
	a.SetFault(pushtest.Unavailable)
	if err := send(pushtest.DeviceToken()); !isRetry(err) {
		t.Errorf("503: %v, want RetryError", err)
	}
	a.SetFault(pushtest.TooLarge)
	if err := send(pushtest.DeviceToken()); err == nil || isRetry(err) || errors.Is(err, push.ErrGone) {
		t.Errorf("413: %v, want a permanent error", err)
	}
	wrongTopic, err := push.NewAPNs(push.APNsConfig{Key: a.KeyP8, KeyID: pushtest.APNsKeyID, TeamID: pushtest.APNsTeamID,
		Topic: "com.example.other", Endpoint: a.URL}, client(t, a.CAFile, 10*time.Second, a.Host))
	if err != nil {
		t.Fatal(err)
	}
	a.SetFault(pushtest.OK)
	err = wrongTopic.Send(context.Background(), push.Target{ID: "r", Platform: push.APNs, Token: pushtest.DeviceToken()}, note())
	if err == nil || errors.Is(err, push.ErrGone) {
		t.Errorf("DeviceTokenNotForTopic: %v, want a permanent error that keeps the registration", err)
	}
	if n := len(a.Notifications()); n != 0 {
		t.Errorf("%d notifications, want none", n)
	}
}

func TestAPNsHangIsBounded(t *testing.T) {
	a := pushtest.NewAPNs(t)
	a.SetFault(pushtest.Hang)
	hangs(t, a.CAFile, a.Host, func(ctx context.Context, c *http.Client) error {
		return newAPNs(t, a, c).Send(ctx, push.Target{ID: "r", Platform: push.APNs, Token: pushtest.DeviceToken()}, note())
	})
	if a.Hung() == 0 {
		t.Error("the server held no request")
	}
}

func TestAPNsRefusesALoopbackServerNotAllowed(t *testing.T) {
	a := pushtest.NewAPNs(t)
	p := newAPNs(t, a, client(t, a.CAFile, 10*time.Second))
	err := p.Send(context.Background(), push.Target{ID: "r", Platform: push.APNs, Token: pushtest.DeviceToken()}, note())
	if !errors.Is(err, push.ErrForbiddenAddress) || isRetry(err) {
		t.Fatalf("send to 127.0.0.1 without an allow list: %v, want ErrForbiddenAddress, permanent", err)
	}
	if a.ProviderTokens() != 0 {
		t.Fatal("the server was reached")
	}
}

// The local APNs checks the provider token's signature with the key's
// public half: another key is refused, permanently.
func TestAPNsRefusesATokenSignedWithAnotherKey(t *testing.T) {
	a := pushtest.NewAPNs(t)
	other, _ := pushtest.P8Key(t)
	p, err := push.NewAPNs(push.APNsConfig{Key: other, KeyID: pushtest.APNsKeyID, TeamID: pushtest.APNsTeamID,
		Topic: pushtest.APNsTopic, Endpoint: a.URL}, client(t, a.CAFile, 10*time.Second, a.Host))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Send(context.Background(), push.Target{ID: "r", Platform: push.APNs, Token: pushtest.DeviceToken()}, note())
	if err == nil || isRetry(err) || errors.Is(err, push.ErrGone) || !strings.Contains(err.Error(), "InvalidProviderToken") {
		t.Fatalf("another key: %v, want a permanent InvalidProviderToken", err)
	}
	if len(a.Notifications()) != 0 {
		t.Fatal("accepted")
	}
}
