package push

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
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
