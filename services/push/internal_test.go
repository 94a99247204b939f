package push

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// The provider token is kept for APNsTokenLife (Apple refuses new ones
// more often than every 20 minutes and old ones after an hour), and
// replaced at once when Apple calls the one in use expired.
func TestAPNsProviderTokenLife(t *testing.T) {
	if APNsTokenLife < 20*time.Minute || APNsTokenLife > 55*time.Minute {
		t.Fatalf("APNsTokenLife %v outside 20-55 min", APNsTokenLife)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	p, err := NewAPNs(APNsConfig{Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), KeyID: "K", TeamID: "T", Topic: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	p.now = func() time.Time { return now }
	first, _ := p.providerToken("")
	now = now.Add(20 * time.Minute)
	if again, _ := p.providerToken(""); again != first {
		t.Fatal("a new token after 20 minutes")
	}
	now = now.Add(APNsTokenLife - 20*time.Minute)
	second, _ := p.providerToken("")
	if second == first {
		t.Fatal("the same token after APNsTokenLife")
	}
	if again, _ := p.providerToken(first); again != second {
		t.Fatal("a refusal of an older token replaced the current one")
	}
	now = now.Add(time.Second)
	if third, _ := p.providerToken(second); third == second {
		t.Fatal("the token Apple called expired was kept")
	}
}

// encryptAES128GCM reproduces RFC 8291 section 5's example byte for byte.
func TestEncryptRFC8291Example(t *testing.T) {
	d := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	as, err := ecdh.P256().NewPrivateKey(d("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := encryptAES128GCM(d("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"),
		d("BTBZMqHH6r4Tts7J_aSIgg"), []byte("When I grow up, I want to be a watermelon"), as, d("DGv6ra1nlYgDCS1FRnbzlw"), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
	if got := base64.RawURLEncoding.EncodeToString(body); got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
}

func TestWebPushTopic(t *testing.T) {
	for _, id := range []string{"d.alice.bob", "g_123", strings.Repeat("x", 40), "conv:é"} {
		top := webPushTopic(id)
		if len(top) == 0 || len(top) > 32 || strings.Trim(top, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" || top != webPushTopic(id) {
			t.Errorf("topic of %q: %q", id, top)
		}
	}
}
