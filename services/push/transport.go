package push

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"
)

// ErrForbiddenAddress is a push target on an address the platform refuses
// to connect to: loopback, private, link-local, unspecified, multicast or
// reserved, and not on the operator's allow list. It is checked on the
// address the name resolved to, when connecting, so a public name that
// resolves to an internal address is refused too.
var ErrForbiddenAddress = errors.New("push: address not public and host not allowed")

// ErrNotHTTPS is a push target whose URL is not https.
var ErrNotHTTPS = errors.New("push: target is not https")

// DefaultTimeout bounds one request to a provider (connection, TLS, the
// answer) when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// maxAnswer is the most of a provider's answer body read: error bodies
// are small, and a hostile endpoint must not make us read forever.
const maxAnswer = 64 << 10

// HTTPClient builds the client every provider uses: https only, no
// redirects, no proxy from the environment, each connection's resolved
// address checked (public, or its host in allowHosts), the system's CAs
// plus caFile, HTTP/2 when the server offers it, each request bounded by
// timeout.
//
// allowHosts lists hosts ("127.0.0.1", "push.internal") or host:port pairs
// ("127.0.0.1:8443") that may be on any address; the names are compared as
// given in the URL, before resolution.
func HTTPClient(allowHosts []string, caFile string, timeout time.Duration) (*http.Client, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("push CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("push CA file %s: no PEM certificate in it", caFile)
		}
		tlsConf.RootCAs = pool
	}
	g := &guard{allow: map[string]bool{}}
	for _, h := range allowHosts {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			g.allow[h] = true
		}
	}
	g.dialer = &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	g.strict = &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: refuseInternal}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would connect for us and skip the address check
		DialContext:           g.dial,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true, // APNs speaks only HTTP/2; FCM and Web Push services offer it
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{
		Transport: httpsOnly{tr},
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("push: provider answered with a redirect")
		},
	}, nil
}

// httpsOnly refuses any request whose URL is not https.
type httpsOnly struct{ rt http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s", ErrNotHTTPS, r.URL.Redacted())
	}
	return h.rt.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (h httpsOnly) CloseIdleConnections() {
	if c, ok := h.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// guard dials allowed hosts anywhere and every other host only on a public
// address.
type guard struct {
	allow  map[string]bool
	dialer *net.Dialer // for allowed hosts
	strict *net.Dialer // for the others: Control refuses internal addresses
}

func (g *guard) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("push dial %s: %w", addr, err)
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if g.allow[host] || g.allow[strings.ToLower(addr)] || g.allow["["+host+"]"] {
		return g.dialer.DialContext(ctx, network, addr)
	}
	return g.strict.DialContext(ctx, network, addr)
}

// refuseInternal is a net.Dialer Control: it runs on each resolved address
// before connecting.
func refuseInternal(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
	}
	if !PublicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}

// PublicAddr tells whether ip is an address of the public internet: not
// loopback, private, link-local, unspecified, multicast, shared (carrier
// NAT), documentation, benchmarking or otherwise reserved.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() ||
		ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range reserved {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: may map to any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo...)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds any IPv4 address
}

// readAnswer reads at most maxAnswer bytes of a provider's answer and
// closes it.
func readAnswer(resp *http.Response) []byte {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return b
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 when
// absent or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var secs int64
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && fmt.Sprint(secs) == v {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// transportError classifies an error of http.Client.Do: a refused address
// or scheme is permanent for this target; the rest (timeouts, resets,
// refused connections, the caller's deadline) is transient.
func transportError(what string, err error) error {
	if errors.Is(err, ErrForbiddenAddress) || errors.Is(err, ErrNotHTTPS) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var uerr *x509.UnknownAuthorityError
	if errors.As(err, &uerr) {
		return fmt.Errorf("%s: %w", what, err) // a certificate problem does not heal by retrying soon
	}
	return &RetryError{Err: fmt.Errorf("%s: %w", what, err)}
}
