package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	chinfra "messenger/infra/clickhouse"
)

// testConfig is the configuration of args with every default, as main
// parses it (MESSENGER_* variables included).
func testConfig(t *testing.T, args ...string) *config {
	t.Helper()
	var cfg config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.flags(fs)
	if err := parse(fs, args, &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// noKeyEnv clears the key variables a developer's shell may hold.
func noKeyEnv(t *testing.T) {
	for _, v := range []string{"MESSENGER_JWT_SECRET", "MESSENGER_JWT_SECRET_FILE", "MESSENGER_JWT_PUBLIC_KEY", "MESSENGER_DEV", "MESSENGER_HTTP"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
}

// TestDevOnlyOnLoopbackAndWithoutAKey stops the --dev attacks of issue 12:
// --dev on a public listener handed a token for any user to anyone who
// could reach it, and --dev with a real key did so for the real platform.
func TestDevOnlyOnLoopbackAndWithoutAKey(t *testing.T) {
	noKeyEnv(t)
	data := t.TempDir()
	pubKey := filepath.Join(data, "pub.pem")
	if err := os.WriteFile(pubKey, []byte("unused"), 0o600); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(data, "jwt")
	if err := os.WriteFile(secretFile, []byte("a-secret-of-enough-length\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		ok   bool
	}{
		{"loopback IPv4", []string{"--http", "127.0.0.1:8080"}, true},
		{"loopback IPv6", []string{"--http", "[::1]:8080"}, true},
		{"localhost", []string{"--http", "localhost:8080"}, true},
		{"every interface", []string{"--http", ":8080"}, false},
		{"0.0.0.0", []string{"--http", "0.0.0.0:8080"}, false},
		{"a public address", []string{"--http", "203.0.113.7:8080"}, false},
		{"a host name", []string{"--http", "chat.example:8080"}, false},
		{"with --jwt-secret", []string{"--jwt-secret", "a-secret-of-enough-length"}, false},
		{"with --jwt-secret-file", []string{"--jwt-secret-file", secretFile}, false},
		{"with --jwt-public-key", []string{"--jwt-public-key", pubKey}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, append([]string{"--dev", "--data", data}, c.args...)...)
			_, s, err := keys(cfg, true, &bytes.Buffer{}, zap.NewNop())
			if c.ok && (err != nil || s == nil) {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("--dev accepted")
			}
		})
	}
	t.Run("a key in the environment", func(t *testing.T) {
		t.Setenv("MESSENGER_JWT_SECRET", "a-secret-of-enough-length")
		if _, _, err := keys(testConfig(t, "--dev", "--data", data), true, &bytes.Buffer{}, zap.NewNop()); err == nil {
			t.Fatal("--dev accepted with MESSENGER_JWT_SECRET")
		}
	})
}

// TestDevSecretNeverLogged stops the secret-in-the-log attack of issue 12:
// the development secret was written into the structured log (shipped to
// log stores, read by more people than the box). It is printed once on the
// terminal, in plain text, and no log entry holds it.
func TestDevSecretNeverLogged(t *testing.T) {
	noKeyEnv(t)
	data := t.TempDir()
	core, logs := observer.New(zapcore.DebugLevel)
	var term bytes.Buffer
	if _, _, err := keys(testConfig(t, "--dev", "--data", data), true, &term, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(data, "dev-secret"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(secret))
	if n := strings.Count(term.String(), s); n != 1 {
		t.Fatalf("the terminal shows the secret %d times: %q", n, term.String())
	}
	if logs.Len() == 0 {
		t.Fatal("nothing logged: the test would not see a leak")
	}
	assertNotLogged(t, logs, s)
}

// TestSecretFileAndCommandLineWarning: --jwt-secret-file (or its variable)
// keeps the secret out of /proc/<pid>/cmdline; a secret on the command line
// still works but is warned about, without the secret in the warning.
func TestSecretFileAndCommandLineWarning(t *testing.T) {
	noKeyEnv(t)
	const secret = "file-secret-0123456789"
	path := filepath.Join(t.TempDir(), "jwt")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, s, err := keys(testConfig(t, "--jwt-secret-file", path), true, &bytes.Buffer{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if user, _, err := v.Verify(tok); err != nil || user != "alice" {
		t.Fatalf("Verify = %q, %v", user, err)
	}
	t.Setenv("MESSENGER_JWT_SECRET_FILE", path)
	if _, _, err := keys(testConfig(t), true, &bytes.Buffer{}, zap.NewNop()); err != nil {
		t.Fatalf("MESSENGER_JWT_SECRET_FILE: %v", err)
	}
	if _, _, err := keys(testConfig(t, "--jwt-secret", secret), true, &bytes.Buffer{}, zap.NewNop()); err == nil {
		t.Fatal("--jwt-secret and --jwt-secret-file both accepted")
	}
	os.Unsetenv("MESSENGER_JWT_SECRET_FILE")

	core, logs := observer.New(zapcore.DebugLevel)
	if _, _, err := keys(testConfig(t, "--jwt-secret", secret), true, &bytes.Buffer{}, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessageSnippet("/proc").Len() != 1 {
		t.Fatalf("no warning about --jwt-secret on the command line: %v", logs.All())
	}
	assertNotLogged(t, logs, secret)
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys(testConfig(t, "--jwt-secret-file", empty), true, &bytes.Buffer{}, zap.NewNop()); err == nil {
		t.Fatal("an empty secret file accepted")
	}
}

func assertNotLogged(t *testing.T, logs *observer.ObservedLogs, secret string) {
	t.Helper()
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, " ", e.ContextMap())
		if strings.Contains(line, secret) {
			t.Fatalf("the secret is in a log entry: %s", line)
		}
	}
}

// TestTokenTTLCapped: `messenger token --ttl` over --jwt-max-ttl is refused
// (issue 12: no cap on lifetime), and the token carries --jwt-audience and
// --jwt-issuer when they are set.
func TestTokenTTLCapped(t *testing.T) {
	noKeyEnv(t)
	t.Setenv("MESSENGER_JWT_SECRET", "a-secret-of-enough-length")
	cfg := testConfig(t, "--jwt-max-ttl", "48h", "--jwt-audience", "messenger", "--jwt-issuer", "ops")
	if err := printToken(cfg, "alice", 49*time.Hour); err == nil {
		t.Fatal("a 49h token minted with --jwt-max-ttl 48h")
	}
	if err := printToken(testConfig(t), "alice", 365*24*time.Hour); err == nil {
		t.Fatal("a one-year token minted with the default --jwt-max-ttl")
	}
	s, err := signer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("alice", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := keys(cfg, true, &bytes.Buffer{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if user, _, err := v.Verify(tok); err != nil || user != "alice" {
		t.Fatalf("Verify = %q, %v", user, err)
	}
	other, err := signer(testConfig(t, "--jwt-audience", "billing", "--jwt-issuer", "ops"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err = other.Token("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Verify(tok); err == nil {
		t.Fatal("a token for another audience accepted")
	}
}

// TestClickHouseCredentialsReachTheDriver: the ClickHouse flags (issue 12:
// there was no user, password or TLS option) end up in the driver's
// options; the password comes from a file or MESSENGER_CLICKHOUSE_PASSWORD,
// never a flag.
func TestClickHouseCredentialsReachTheDriver(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	writeTestCA(t, ca)
	os.Unsetenv(chPasswordEnv)
	def, err := chConfig(testConfig(t), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	o, err := chinfra.Options(def, "messenger")
	if err != nil {
		t.Fatal(err)
	}
	if o.Auth.Username != "default" || o.Auth.Password != "" || o.TLS != nil {
		t.Fatalf("defaults changed: user %q password %q TLS %v", o.Auth.Username, o.Auth.Password, o.TLS)
	}
	c, err := chConfig(testConfig(t, "--clickhouse-user", "messenger", "--clickhouse-password-file", pw, "--clickhouse-ca", ca), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	o, err = chinfra.Options(c, "messenger")
	if err != nil {
		t.Fatal(err)
	}
	if o.Auth.Username != "messenger" || o.Auth.Password != "s3cret" || o.TLS == nil || o.TLS.RootCAs == nil {
		t.Fatalf("user %q password %q TLS %+v", o.Auth.Username, o.Auth.Password, o.TLS)
	}
	t.Setenv(chPasswordEnv, "from-env")
	c, err = chConfig(testConfig(t, "--clickhouse-tls"), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if o, err = chinfra.Options(c, ""); err != nil || o.Auth.Password != "from-env" || o.TLS == nil || o.TLS.RootCAs != nil {
		t.Fatalf("env password, system roots: %+v %v", o, err)
	}
	if _, err := chConfig(testConfig(t, "--clickhouse-password-file", pw), zap.NewNop()); err == nil {
		t.Fatal("a password file and the variable both accepted")
	}
}

// writeTestCA writes a self-signed CA certificate (PEM) to path.
func writeTestCA(t *testing.T, path string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
