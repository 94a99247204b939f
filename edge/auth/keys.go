package auth

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// LoadEd25519PublicKey reads a PEM "PUBLIC KEY" (PKIX) file holding an
// Ed25519 key, the format `openssl pkey -pubout` produces.
func LoadEd25519PublicKey(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("auth: parse public key %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("auth: public key %s is %T, want Ed25519", path, k)
	}
	return pub, nil
}

// LoadEd25519PrivateKey reads a PEM "PRIVATE KEY" (PKCS8) file holding an
// Ed25519 key, the format `openssl genpkey -algorithm ed25519` produces.
func LoadEd25519PrivateKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("auth: parse private key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("auth: private key %s is %T, want Ed25519", path, k)
	}
	return priv, nil
}

// readPEM returns the first PEM block of path, insisting on the block type so
// that a public key file passed where a private key is expected (or the
// reverse) fails with a clear message instead of a parse error.
func readPEM(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("auth: %s: no PEM block found", path)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("auth: %s: PEM block is %q, want %q", path, block.Type, typ)
	}
	return block.Bytes, nil
}
