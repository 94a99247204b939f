package push

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

func hkdfKey(secret, salt []byte, info string, n int) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, salt, info, n)
}

// VAPIDPublicKey is the public half of a VAPID key as browsers take it
// (PushManager.subscribe's applicationServerKey): the uncompressed P-256
// point, base64url without padding. The edge serves it at
// GET /v1/push/webpush-key.
func VAPIDPublicKey(key *ecdsa.PrivateKey) (string, error) {
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		return "", fmt.Errorf("vapid key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(pub.Bytes()), nil
}

// LoadVAPIDKey reads a VAPID private key: PEM (PKCS#8 "PRIVATE KEY" or
// SEC 1 "EC PRIVATE KEY") or the 32-byte scalar in base64url, the form
// `web-push generate-vapid-keys` prints.
func LoadVAPIDKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	k, err := ParseVAPIDKey(b)
	if err != nil {
		return nil, fmt.Errorf("vapid key %s: %w", path, err)
	}
	return k, nil
}

// ParseVAPIDKey reads the contents of a VAPID key file (see LoadVAPIDKey).
func ParseVAPIDKey(b []byte) (*ecdsa.PrivateKey, error) {
	var key any
	if block, _ := pem.Decode(b); block != nil {
		var err error
		switch block.Type {
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		}
		if err != nil {
			return nil, err
		}
	} else {
		raw, err := decodeB64URL(strings.TrimSpace(string(b)))
		if err != nil || len(raw) != 32 {
			return nil, errors.New("neither PEM nor a base64url P-256 private key")
		}
		if key, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), raw); err != nil {
			return nil, err
		}
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("not a P-256 ECDSA key")
	}
	return ek, nil
}

// LoadOrCreateVAPIDKey reads the VAPID key at path, or makes a new P-256
// key and stores it there (PKCS#8 PEM, mode 0600) when there is none.
// Browsers subscribed with the key's public half: replacing the key
// orphans every Web Push subscription.
func LoadOrCreateVAPIDKey(path string) (*ecdsa.PrivateKey, error) {
	k, err := LoadVAPIDKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	// Written whole under another name, then linked: a process starting at
	// the same time reads either no key or this one, never half of it,
	// and the first link wins.
	f, err := os.CreateTemp(filepath.Dir(path), ".vapid-*.pem")
	if err != nil {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return LoadVAPIDKey(path)
	} else if err != nil {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	return k, nil
}
