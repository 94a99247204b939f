package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"messenger/edge/auth"
)

type keys struct {
	secret []byte
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
}

func newKeys(t testing.TB) keys {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate ed25519 key: %v", err)
	}
	return keys{secret: []byte("0123456789abcdef-test-secret"), pub: pub, priv: priv}
}

// rawToken signs arbitrary claims, bypassing Signer's input checks so that
// tokens the Signer refuses to mint can still be fed to a Verifier.
func rawToken(t testing.TB, m jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign raw token: %v", err)
	}
	return tok
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerify(t *testing.T) {
	k := newKeys(t)
	hsV, err := auth.NewHS256Verifier(k.secret)
	if err != nil {
		t.Fatal(err)
	}
	edV, err := auth.NewEdDSAVerifier(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	hsS, err := auth.NewHS256Signer(k.secret)
	if err != nil {
		t.Fatal(err)
	}
	edS, err := auth.NewEdDSASigner(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(s *auth.Signer, user string) string {
		tok, err := s.Token(user, time.Hour)
		if err != nil {
			t.Fatalf("mint token for %q: %v", user, err)
		}
		return tok
	}
	future := jwt.NewNumericDate(time.Now().Add(time.Hour))
	hsRaw := func(c jwt.RegisteredClaims) string { return rawToken(t, jwt.SigningMethodHS256, k.secret, c) }

	validHS := mint(hsS, "alice")
	// Flipping a character in the middle of the signature (not the last one,
	// whose low bits may be padding) guarantees different decoded bytes.
	dot := strings.LastIndexByte(validHS, '.')
	sig := []byte(validHS[dot+1:])
	mid := len(sig) / 2
	if sig[mid] == 'A' {
		sig[mid] = 'B'
	} else {
		sig[mid] = 'A'
	}
	badSig := validHS[:dot+1] + string(sig)

	otherSecret, err := auth.NewHS256Signer([]byte("another-secret-of-enough-length"))
	if err != nil {
		t.Fatal(err)
	}
	noneTok := b64(`{"alg":"none","typ":"JWT"}`) + "." +
		b64(`{"sub":"alice","exp":`+strconv.FormatInt(future.Unix(), 10)+`}`) + "."

	long64 := strings.Repeat("u", 64)
	cases := []struct {
		name     string
		v        *auth.Verifier
		token    string
		wantUser string
		// wantErr is a substring of the expected error; empty means the
		// token must verify.
		wantErr string
	}{
		{"valid HS256", hsV, validHS, "alice", ""},
		{"valid EdDSA", edV, mint(edS, "bob"), "bob", ""},
		{"sub exactly 64 chars", hsV, mint(hsS, long64), long64, ""},
		{"alg none to HS256", hsV, noneTok, "", "algorithm not allowed"},
		{"alg none to EdDSA", edV, noneTok, "", "algorithm not allowed"},
		{"HS256 token to EdDSA verifier", edV, validHS, "", "algorithm not allowed"},
		{"EdDSA token to HS256 verifier", hsV, mint(edS, "bob"), "", "algorithm not allowed"},
		{"bad signature", hsV, badSig, "", "bad signature"},
		{"wrong secret", hsV, mint(otherSecret, "alice"), "", "bad signature"},
		{"missing exp", hsV, hsRaw(jwt.RegisteredClaims{Subject: "alice"}), "", "missing exp"},
		{"expired exp", hsV, hsRaw(jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Second))}), "", "expired"},
		{"sub with space", hsV, hsRaw(jwt.RegisteredClaims{Subject: "a b", ExpiresAt: future}), "", "invalid sub"},
		{"sub empty", hsV, hsRaw(jwt.RegisteredClaims{ExpiresAt: future}), "", "invalid sub"},
		{"sub 65 chars", hsV, hsRaw(jwt.RegisteredClaims{Subject: strings.Repeat("u", 65), ExpiresAt: future}), "", "invalid sub"},
		{"empty token", hsV, "", "", "missing token"},
		{"garbage", hsV, "not.a.jwt", "", "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user, exp, err := c.v.Verify(c.token)
			if c.wantErr != "" {
				if err == nil {
					t.Fatalf("Verify accepted token, user=%q", user)
				}
				if !errors.Is(err, auth.ErrUnauthorized) {
					t.Fatalf("error %v does not wrap ErrUnauthorized", err)
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("error %q, want it to mention %q", err, c.wantErr)
				}
				if user != "" || !exp.IsZero() {
					t.Errorf("rejected token leaked user=%q exp=%v", user, exp)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if user != c.wantUser {
				t.Errorf("user = %q, want %q", user, c.wantUser)
			}
			if d := time.Until(exp); d <= 0 || d > time.Hour+time.Second {
				t.Errorf("exp %v is not about an hour from now", exp)
			}
		})
	}
}

func TestConstructors(t *testing.T) {
	k := newKeys(t)
	if _, err := auth.NewHS256Verifier(make([]byte, 15)); err == nil {
		t.Error("NewHS256Verifier accepted a 15-byte secret")
	}
	if _, err := auth.NewHS256Verifier(make([]byte, 16)); err != nil {
		t.Errorf("NewHS256Verifier rejected a 16-byte secret: %v", err)
	}
	if _, err := auth.NewHS256Signer(make([]byte, 15)); err == nil {
		t.Error("NewHS256Signer accepted a 15-byte secret")
	}
	if _, err := auth.NewEdDSAVerifier(k.pub[:10]); err == nil {
		t.Error("NewEdDSAVerifier accepted a truncated key")
	}
	if _, err := auth.NewEdDSASigner(k.priv[:10]); err == nil {
		t.Error("NewEdDSASigner accepted a truncated key")
	}
}

func TestSecretCopied(t *testing.T) {
	secret := []byte("0123456789abcdef")
	v, err := auth.NewHS256Verifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.NewHS256Signer(secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i := range secret {
		secret[i] = 0
	}
	if _, _, err := v.Verify(tok); err != nil {
		t.Fatalf("mutating caller's secret changed verifier: %v", err)
	}
}

func TestSignerRejects(t *testing.T) {
	s, err := auth.NewHS256Signer(newKeys(t).secret)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		user string
		ttl  time.Duration
	}{
		{"invalid user", "a b", time.Hour},
		{"empty user", "", time.Hour},
		{"zero ttl", "alice", 0},
		{"negative ttl", "alice", -time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if tok, err := s.Token(c.user, c.ttl); err == nil {
				t.Fatalf("Token(%q, %v) = %q, want error", c.user, c.ttl, tok)
			}
		})
	}
}

func TestSignerSetsIat(t *testing.T) {
	k := newKeys(t)
	s, err := auth.NewEdDSASigner(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.RegisteredClaims
	if _, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return k.pub, nil }); err != nil {
		t.Fatal(err)
	}
	if c.IssuedAt == nil || c.ExpiresAt == nil || c.Subject != "alice" {
		t.Fatalf("claims = %+v, want sub, iat and exp set", c)
	}
	if got := c.ExpiresAt.Sub(c.IssuedAt.Time); got != time.Hour {
		t.Errorf("exp - iat = %v, want 1h", got)
	}
}

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadKeys(t *testing.T) {
	k := newKeys(t)
	pubDER, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := writePEM(t, "PUBLIC KEY", pubDER)
	privPath := writePEM(t, "PRIVATE KEY", privDER)

	pub, err := auth.LoadEd25519PublicKey(pubPath)
	if err != nil {
		t.Fatalf("LoadEd25519PublicKey: %v", err)
	}
	priv, err := auth.LoadEd25519PrivateKey(privPath)
	if err != nil {
		t.Fatalf("LoadEd25519PrivateKey: %v", err)
	}
	if !pub.Equal(k.pub) || !priv.Equal(k.priv) {
		t.Fatal("loaded keys differ from the written ones")
	}

	// Loaded keys must interoperate end to end.
	s, err := auth.NewEdDSASigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewEdDSAVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("carol", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if user, _, err := v.Verify(tok); err != nil || user != "carol" {
		t.Fatalf("Verify = %q, %v", user, err)
	}

	// Swapped files, missing files and non-PEM content are all errors.
	if _, err := auth.LoadEd25519PublicKey(privPath); err == nil {
		t.Error("LoadEd25519PublicKey accepted a private key file")
	}
	if _, err := auth.LoadEd25519PrivateKey(pubPath); err == nil {
		t.Error("LoadEd25519PrivateKey accepted a public key file")
	}
	missing := filepath.Join(t.TempDir(), "nope.pem")
	if _, err := auth.LoadEd25519PublicKey(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want wrapping os.ErrNotExist", err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadEd25519PrivateKey(garbage); err == nil {
		t.Error("LoadEd25519PrivateKey accepted non-PEM content")
	}
}

func TestFromRequest(t *testing.T) {
	cases := []struct {
		name   string
		header string
		url    string
		want   string
	}{
		{"header only", "Bearer hdr", "/ws", "hdr"},
		{"query only", "", "/ws?access_token=qry", "qry"},
		{"header wins over query", "Bearer hdr", "/ws?access_token=qry", "hdr"},
		{"scheme case-insensitive", "bearer hdr", "/ws", "hdr"},
		{"non-bearer header falls back to query", "Basic dXNlcjpwdw==", "/ws?access_token=qry", "qry"},
		{"empty bearer falls back to query", "Bearer ", "/ws?access_token=qry", "qry"},
		{"scheme without separator", "Bearerhdr", "/ws", ""},
		{"none", "", "/ws", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", c.url, nil)
			if c.header != "" {
				r.Header.Set("Authorization", c.header)
			}
			if got := auth.FromRequest(r); got != c.want {
				t.Errorf("FromRequest = %q, want %q", got, c.want)
			}
		})
	}
}

func TestVerifyConcurrent(t *testing.T) {
	k := newKeys(t)
	v, err := auth.NewHS256Verifier(k.secret)
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.NewHS256Signer(k.secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			var err error
			for range 100 {
				if _, _, err = v.Verify(tok); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkVerifyHS256(b *testing.B) {
	k := newKeys(b)
	v, err := auth.NewHS256Verifier(k.secret)
	if err != nil {
		b.Fatal(err)
	}
	s, err := auth.NewHS256Signer(k.secret)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := s.Token("alice", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
