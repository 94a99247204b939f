package push_test

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"messenger/infra/pushtest"
	"messenger/services/push"
)

func newWebPush(t *testing.T, c *http.Client) *push.WebPushProvider {
	t.Helper()
	k, err := push.LoadOrCreateVAPIDKey(filepath.Join(t.TempDir(), "vapid.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := push.NewWebPush(k, "mailto:ops@example.com", c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func webTarget(t *testing.T, s *pushtest.Subscription) push.Target {
	t.Helper()
	sub, err := push.ParseSubscription(s.JSON())
	if err != nil {
		t.Fatal(err)
	}
	return push.Target{User: "bob", ID: "w1", Platform: push.WebPush, Subscription: sub}
}

func TestWebPushDeliversEncryptedAndSigned(t *testing.T) {
	w := pushtest.NewWebPush(t)
	p := newWebPush(t, client(t, w.CAFile, 10*time.Second, w.Host))
	s := w.Subscribe(t, p.VAPIDPublicKey()) // the service refuses another key
	n := note()
	n.CollapseID = "conv:" + strings.Repeat("x", 60) // not a Topic as it is
	if err := p.Send(context.Background(), webTarget(t, s), n); err != nil {
		t.Fatal(err)
	}
	msgs := w.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d pushes, want 1", len(msgs))
	}
	m := msgs[0]
	if m.TTL != 3600 || m.Urgency != "high" || m.Subject != "mailto:ops@example.com" || len(m.Topic) == 0 || len(m.Topic) > 32 {
		t.Errorf("push %+v", m)
	}
	var got push.WebPushPayload
	if err := json.Unmarshal(m.Plaintext, &got); err != nil {
		t.Fatalf("decrypted %q: %v", m.Plaintext, err)
	}
	want := push.WebPushPayload{Title: "alice", Body: "3 new messages from alice", Conv: "d.alice.bob", From: "alice", Seq: 42, Count: 3, Tag: n.CollapseID}
	if got != want {
		t.Errorf("payload %+v, want %+v", got, want)
	}
}

func TestWebPushFakeRefusesAnotherVAPIDKey(t *testing.T) {
	w := pushtest.NewWebPush(t)
	c := client(t, w.CAFile, 10*time.Second, w.Host)
	other := newWebPush(t, c)
	s := w.Subscribe(t, newWebPush(t, c).VAPIDPublicKey())
	err := other.Send(context.Background(), webTarget(t, s), note())
	if err == nil || errors.Is(err, push.ErrGone) || isRetry(err) || len(w.Messages()) != 0 {
		t.Fatalf("a push signed with another key: %v, want a permanent refusal", err)
	}
}

func TestWebPushAnswers(t *testing.T) {
	w := pushtest.NewWebPush(t)
	p := newWebPush(t, client(t, w.CAFile, 10*time.Second, w.Host))
	s := w.Subscribe(t, p.VAPIDPublicKey())
	send := func(s *pushtest.Subscription) error { return p.Send(context.Background(), webTarget(t, s), note()) }

	unknown := pushtest.NewSubscription(t, w.URL+"/wpush/v2/nobody")
	if err := send(unknown); !errors.Is(err, push.ErrGone) {
		t.Errorf("404: %v, want ErrGone", err)
	}
	gone := w.Subscribe(t, "")
	w.Unregister(strings.TrimPrefix(gone.Endpoint, w.URL))
	if err := send(gone); !errors.Is(err, push.ErrGone) {
		t.Errorf("410: %v, want ErrGone", err)
	}
	w.SetRetryAfter(11)
	w.SetFault(pushtest.TooMany)
	if err := send(s); !retryAfter(err, 11*time.Second) {
		t.Errorf("429: %v, want RetryError after 11s", err)
	}
	w.SetFault(pushtest.Unavailable)
	if err := send(s); !isRetry(err) {
		t.Errorf("503: %v, want RetryError", err)
	}
	w.SetFault(pushtest.TooLarge)
	if err := send(s); err == nil || isRetry(err) || errors.Is(err, push.ErrGone) {
		t.Errorf("413: %v, want a permanent error", err)
	}
	broken := webTarget(t, s)
	broken.Subscription.Keys.P256dh = base64.RawURLEncoding.EncodeToString([]byte("not a point"))
	if err := p.Send(context.Background(), broken, note()); !errors.Is(err, push.ErrGone) {
		t.Errorf("unreadable subscription keys: %v, want ErrGone", err)
	}
	if n := len(w.Messages()); n != 0 {
		t.Errorf("%d pushes accepted, want none", n)
	}
}

func TestWebPushHangIsBounded(t *testing.T) {
	w := pushtest.NewWebPush(t)
	w.SetFault(pushtest.Hang)
	s := w.Subscribe(t, "")
	hangs(t, w.CAFile, w.Host, func(ctx context.Context, c *http.Client) error {
		return newWebPush(t, c).Send(ctx, webTarget(t, s), note())
	})
	if w.Hung() == 0 {
		t.Error("the server held no request")
	}
}

// The address check is on the address a name resolves to, when
// connecting: "localhost" is refused although only 127.0.0.1 is in no
// list, and http is refused before any connection.
func TestWebPushRefusesInternalAddressesAndHTTP(t *testing.T) {
	w := pushtest.NewWebPush(t)
	s := w.Subscribe(t, "")
	_, port, _ := strings.Cut(w.Addr, ":")
	cases := []struct {
		name, endpoint string
		allow          []string
		want           error
	}{
		{"loopback not allowed", s.Endpoint, nil, push.ErrForbiddenAddress},
		{"a name resolving to loopback", strings.Replace(s.Endpoint, w.Host, "localhost", 1), []string{"127.0.0.2"}, push.ErrForbiddenAddress},
		{"another port of an allowed host:port", strings.Replace(s.Endpoint, port, "1", 1), []string{w.Addr}, push.ErrForbiddenAddress},
		{"http", strings.Replace(s.Endpoint, "https:", "http:", 1), []string{w.Host}, push.ErrNotHTTPS},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newWebPush(t, client(t, w.CAFile, 10*time.Second, tc.allow...))
			tgt := webTarget(t, s)
			tgt.Subscription.Endpoint = tc.endpoint
			err := p.Send(context.Background(), tgt, note())
			if !errors.Is(err, tc.want) || isRetry(err) {
				t.Fatalf("%s: %v, want %v, permanent", tc.endpoint, err, tc.want)
			}
		})
	}
	// The allowed host:port itself connects.
	p := newWebPush(t, client(t, w.CAFile, 10*time.Second, w.Addr))
	if err := p.Send(context.Background(), webTarget(t, s), note()); err != nil {
		t.Fatalf("allowed host:port: %v", err)
	}
	if len(w.Messages()) != 1 {
		t.Fatalf("%d pushes, want 1", len(w.Messages()))
	}
}

// The local service's decryption reproduces RFC 8291 section 5's example.
func TestFakeDecryptsTheRFC8291Example(t *testing.T) {
	d := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ua, err := ecdh.P256().NewPrivateKey(d("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := pushtest.Decrypt(d(rfc8291Body), ua, d("BTBZMqHH6r4Tts7J_aSIgg"))
	if err != nil || string(plain) != "When I grow up, I want to be a watermelon" {
		t.Fatalf("decrypted %q, %v", plain, err)
	}
}

const rfc8291Body = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"

func TestVAPIDKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "vapid.pem")
	k1, err := push.LoadOrCreateVAPIDKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, %v; want mode 0600", fi, err)
	}
	k2, err := push.LoadOrCreateVAPIDKey(path)
	if err != nil || !k2.Equal(k1) {
		t.Fatalf("second load: %v, same key %v", err, err == nil && k2.Equal(k1))
	}
	pub, _ := push.VAPIDPublicKey(k1)
	if raw, err := base64.RawURLEncoding.DecodeString(pub); err != nil || len(raw) != 65 || raw[0] != 4 {
		t.Fatalf("public key %q: want 65 bytes uncompressed, base64url", pub)
	}
	// The raw base64url scalar that web-push tools print is read too.
	raw := filepath.Join(t.TempDir(), "raw")
	os.WriteFile(raw, []byte(base64.RawURLEncoding.EncodeToString(k1.D.FillBytes(make([]byte, 32)))+"\n"), 0o600)
	if k3, err := push.LoadVAPIDKey(raw); err != nil || !k3.Equal(k1) {
		t.Fatalf("raw key: %v", err)
	}
}
