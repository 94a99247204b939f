package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"messenger/edge/auth"
)

// tokenOptions are the token rules of the configuration, the same for the
// verifier and the signer.
func tokenOptions(cfg *config) []auth.Option {
	return []auth.Option{auth.WithAudience(cfg.JWTAudience), auth.WithIssuer(cfg.JWTIssuer), auth.WithMaxTTL(cfg.JWTMaxTTL)}
}

// keys returns the token verifier and, when the key material allows, a
// signer. serving is set for the roles that answer clients (all, edge): in
// --dev mode they print the development secret on term, once, and log only
// where it is kept. No secret is ever given to log.
func keys(cfg *config, serving bool, term io.Writer, log *zap.Logger) (*auth.Verifier, *auth.Signer, error) {
	if cfg.JWTMaxTTL <= 0 {
		return nil, nil, fmt.Errorf("--jwt-max-ttl must be positive, got %v", cfg.JWTMaxTTL)
	}
	configured := cfg.JWTSecret != "" || cfg.JWTSecretFile != "" || cfg.JWTPublicKey != ""
	if cfg.Dev && configured {
		// --dev mints a token for anyone who asks: with a real key that
		// would be anyone signing in as anyone on the real platform.
		return nil, nil, errors.New("--dev is refused with a configured key (--jwt-secret, --jwt-secret-file, --jwt-public-key or their MESSENGER_ variables): development sign-in mints tokens for anyone")
	}
	opts := tokenOptions(cfg)
	if cfg.JWTPublicKey != "" {
		pub, err := auth.LoadEd25519PublicKey(cfg.JWTPublicKey)
		if err != nil {
			return nil, nil, err
		}
		v, err := auth.NewEdDSAVerifier(pub, opts...)
		if err != nil {
			return nil, nil, err
		}
		var s *auth.Signer
		if cfg.JWTPrivateKey != "" {
			priv, err := auth.LoadEd25519PrivateKey(cfg.JWTPrivateKey)
			if err != nil {
				return nil, nil, err
			}
			if s, err = auth.NewEdDSASigner(priv, opts...); err != nil {
				return nil, nil, err
			}
		}
		return v, s, nil
	}
	secret, err := jwtSecret(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	if secret == "" && cfg.Dev {
		if serving && !loopbackAddr(cfg.HTTP) {
			return nil, nil, fmt.Errorf("--dev is refused on --http %s: development sign-in mints tokens for anyone, so it listens on loopback only (127.0.0.1, ::1, localhost)", cfg.HTTP)
		}
		if secret, err = devSecret(cfg.Data); err != nil {
			return nil, nil, err
		}
		if serving {
			path := filepath.Join(cfg.Data, "dev-secret")
			fmt.Fprintf(term, "development mode: JWT secret %s (kept in %s); web sign-in is on\n", secret, path)
			if log != nil {
				log.Warn("development mode: web sign-in mints tokens for anyone; the secret is kept under --data", zap.String("file", path))
			}
		}
	}
	if secret == "" {
		return nil, nil, errors.New("no token key: give --jwt-secret-file, MESSENGER_JWT_SECRET or --jwt-public-key, or --dev for a development secret")
	}
	v, err := auth.NewHS256Verifier([]byte(secret), opts...)
	if err != nil {
		return nil, nil, err
	}
	s, err := auth.NewHS256Signer([]byte(secret), opts...)
	if err != nil {
		return nil, nil, err
	}
	return v, s, nil
}

// jwtSecret is the configured HS256 secret: --jwt-secret (or
// MESSENGER_JWT_SECRET) or the content of --jwt-secret-file; "" if none.
func jwtSecret(cfg *config, log *zap.Logger) (string, error) {
	if cfg.JWTSecret != "" && cfg.JWTSecretFile != "" {
		return "", errors.New("give --jwt-secret or --jwt-secret-file, not both")
	}
	if cfg.JWTSecretFile != "" {
		return readSecretFile(cfg.JWTSecretFile, "--jwt-secret-file", log)
	}
	if cfg.JWTSecret != "" && cfg.cmdline["jwt-secret"] && log != nil {
		log.Warn("--jwt-secret on the command line can be read by every user of this host (/proc/<pid>/cmdline): use --jwt-secret-file or MESSENGER_JWT_SECRET")
	}
	return cfg.JWTSecret, nil
}

// readSecretFile reads a secret kept in a file (surrounding white space,
// such as the final newline, removed). A file other users may read is
// used, with a warning.
func readSecretFile(path, flagName string, log *zap.Logger) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && log != nil {
		log.Warn("a secret file can be read by other users: chmod 600 it", zap.String("file", path), zap.String("mode", fi.Mode().Perm().String()))
	}
	return secret, nil
}

// loopbackAddr tells whether a listen address is on loopback only: its host
// is localhost or a loopback IP (":8080" and "0.0.0.0:8080" are every
// interface).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// devSecret reads, or makes and keeps, the development secret under dir.
func devSecret(dir string) (string, error) {
	path := filepath.Join(dir, "dev-secret")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("dev secret: %w", err)
	}
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	secret := hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dev secret: %w", err)
	}
	return secret, nil
}

func printToken(cfg *config, user string, ttl time.Duration) error {
	if user == "" {
		return errors.New("usage: messenger token <user> [--ttl 24h]")
	}
	s, err := signer(cfg)
	if err != nil {
		return err
	}
	tok, err := s.Token(user, ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// signer is the configured key that can mint tokens (token, chat).
func signer(cfg *config) (*auth.Signer, error) {
	_, s, err := keys(cfg, false, io.Discard, nil)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, errors.New("minting EdDSA tokens needs --jwt-private-key")
	}
	return s, nil
}
