package natsauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"messenger/infra/natsauth"
	"messenger/infra/natsserver"
)

// selfSigned writes a CA-signed certificate for 127.0.0.1: ca.pem, cert.pem, key.pem.
func selfSigned(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", srvDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// Attack: in a cluster the roles talked to NATS in clear text. With a
// certificate the server requires TLS; a role given the CA verifies the
// server and connects, one without TLS is refused.
func TestTLSWhenConfigured(t *testing.T) {
	ca, cert, key := selfSigned(t)
	dir := filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(dir); err != nil {
		t.Fatal(err)
	}
	users, err := natsauth.LoadUsers(filepath.Join(dir, natsauth.UsersFile))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir(), Users: users, TLSCert: cert, TLSKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	url := ns.ClientURL()
	auth, err := natsauth.ClientOptions(natsauth.RoleEdge, natsauth.SeedFile(dir, natsauth.RoleEdge))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append(auth, natsauth.TLS(url, "", "", ca)...)...)
	if err != nil {
		t.Fatalf("TLS with the CA: %v", err)
	}
	if !nc.TLSRequired() {
		t.Fatal("the server does not require TLS")
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Fatalf("not a TLS connection: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect(url, auth...); err == nil {
		if _, terr := nc.TLSConnectionState(); terr != nil {
			t.Fatal("a client without TLS settings connected in clear text")
		}
		nc.Close()
	}
	// A tls:// URL without the CA does not trust a private CA's certificate.
	turl := "tls://" + strings.TrimPrefix(url, "nats://")
	if nc, err := nats.Connect(turl, append(auth, natsauth.TLS(turl, "", "", "")...)...); err == nil {
		nc.Close()
		t.Fatal("an unverified server certificate was accepted")
	}
}
