package natsauth

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"messenger/subjects"
)

// ClientOptions are the options of a connection as role: the NKEY of
// seedFile (none when empty) and the role's own reply prefix, which its
// permissions allow it to subscribe to.
func ClientOptions(role, seedFile string) ([]nats.Option, error) {
	opts := []nats.Option{nats.CustomInboxPrefix(subjects.RoleInboxPrefix(role))}
	if role == RoleReadOnly || role == RoleAdmin {
		opts = opts[:0] // the default _INBOX, like the nats command line
	}
	if seedFile == "" {
		return opts, nil
	}
	if _, err := loadSeed(seedFile); err != nil {
		return nil, err
	}
	o, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		return nil, fmt.Errorf("natsauth: seed %s: %w", seedFile, err)
	}
	return append(opts, o), nil
}

// TLS configures a client connection: its own certificate (mutual TLS)
// when certFile is set, the CA that signs the server's when caFile is set.
// A tls:// URL or a CA turns TLS on.
func TLS(url, certFile, keyFile, caFile string) []nats.Option {
	var opts []nats.Option
	if caFile != "" {
		opts = append(opts, nats.RootCAs(caFile))
	}
	if certFile != "" {
		opts = append(opts, nats.ClientCert(certFile, keyFile))
	}
	if caFile != "" || strings.HasPrefix(url, "tls://") {
		opts = append(opts, nats.Secure())
	}
	return opts
}
