package natsauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Files written by Generate under its directory:
//
//	<role>.nk          the role's NKEY seed (0600): give it to that role only
//	users.json         the public key of each role: what the server reads
//	                   (messenger nats --nats-users)
//	nats-server.conf   the same users with their permissions, to include in
//	                   the configuration of a nats-server cluster
const (
	UsersFile      = "users.json"
	ServerConfFile = "nats-server.conf"
	seedExt        = ".nk"
)

// SeedFile is the seed file of role under dir.
func SeedFile(dir, role string) string { return filepath.Join(dir, role+seedExt) }

// User is one NKEY user of the server: a public key and the role whose
// permissions it gets. Several users may share a role (one key per edge host).
type User struct {
	Role string `json:"role"`
	NKey string `json:"nkey"`
}

// UsersDoc is the users file.
type UsersDoc struct {
	Users []User `json:"users"`
}

// Generate makes, under dir, a seed for every role that has none and writes
// the users file and the nats-server configuration for those seeds. Seeds
// already there are kept, so running it again changes nothing.
func Generate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	var doc UsersDoc
	for _, role := range Roles {
		path := SeedFile(dir, role)
		kp, err := loadSeed(path)
		if errors.Is(err, os.ErrNotExist) {
			if kp, err = nkeys.CreateUser(); err != nil {
				return fmt.Errorf("natsauth: new key: %w", err)
			}
			seed, _ := kp.Seed()
			if err := writeFile(path, append(seed, '\n'), 0o600); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		pub, _ := kp.PublicKey()
		doc.Users = append(doc.Users, User{Role: role, NKey: pub})
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	if err := writeFile(filepath.Join(dir, UsersFile), append(b, '\n'), 0o644); err != nil {
		return err
	}
	conf, err := ServerConf(doc)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, ServerConfFile), conf, 0o644)
}

// Exists tells whether dir holds a users file.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, UsersFile))
	return err == nil
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	return nil
}

func loadSeed(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return nil, fmt.Errorf("natsauth: %s is not an NKEY user seed: %w", path, err)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("natsauth: %s is not an NKEY user seed", path)
	}
	return kp, nil
}

// LoadUsers reads a users file and gives each user its role's permissions,
// as nats-server takes them.
func LoadUsers(path string) ([]*server.NkeyUser, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("natsauth: users file: %w", err)
	}
	var doc UsersDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("natsauth: users file %s: %w", path, err)
	}
	return ServerUsers(doc)
}

// ServerUsers gives each user of doc its role's permissions.
func ServerUsers(doc UsersDoc) ([]*server.NkeyUser, error) {
	if len(doc.Users) == 0 {
		return nil, errors.New("natsauth: users file lists no user")
	}
	seen := make(map[string]bool)
	out := make([]*server.NkeyUser, 0, len(doc.Users))
	for _, u := range doc.Users {
		if !nkeys.IsValidPublicUserKey(u.NKey) {
			return nil, fmt.Errorf("natsauth: user of role %q: %q is not an NKEY user public key", u.Role, u.NKey)
		}
		if seen[u.NKey] {
			return nil, fmt.Errorf("natsauth: key %s listed twice", u.NKey)
		}
		seen[u.NKey] = true
		perms, err := ServerPermissions(u.Role)
		if err != nil {
			return nil, err
		}
		out = append(out, &server.NkeyUser{Nkey: u.NKey, Permissions: perms})
	}
	return out, nil
}

// ServerConf is the authorization block of a nats-server configuration for
// the users of doc (JSON, which the nats-server configuration format reads):
// `include` it in each server of a cluster.
func ServerConf(doc UsersDoc) ([]byte, error) {
	type perms struct {
		Publish   map[string][]string `json:"publish"`
		Subscribe map[string][]string `json:"subscribe"`
		Allow     *struct {
			Max int    `json:"max"`
			TTL string `json:"expires"`
		} `json:"allow_responses,omitempty"`
	}
	type user struct {
		NKey  string `json:"nkey"`
		Perms perms  `json:"permissions"`
	}
	var users []user
	for _, u := range doc.Users {
		p, err := RolePerms(u.Role)
		if err != nil {
			return nil, err
		}
		pp := perms{
			Publish:   map[string][]string{"allow": p.PubAllow, "deny": p.PubDeny},
			Subscribe: map[string][]string{"allow": p.SubAllow, "deny": p.SubDeny},
		}
		if u.Role == RoleReadOnly {
			pp.Allow = &struct {
				Max int    `json:"max"`
				TTL string `json:"expires"`
			}{readOnlyResponses.MaxMsgs, readOnlyResponses.Expires.String()}
		}
		users = append(users, user{NKey: u.NKey, Perms: pp})
	}
	// No HTML escaping: the nats-server configuration format reads JSON
	// but not its \u escapes (">" would be written \u003e).
	var buf bytes.Buffer
	buf.WriteString("# NATS users of the messenger roles, made by `messenger nats-creds`.\n# include this file in each nats-server's configuration.\n")
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]any{"authorization": map[string]any{"users": users}}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
