package pushreg

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"messenger/services/push"
)

// MaxToken bounds a token and a Web Push endpoint, in bytes.
const MaxToken = 4096

// check validates r for registration and normalises its subscription (only
// the endpoint and the keys are kept). Errors wrap ErrInvalid.
func check(r *Registration) error {
	switch r.Platform {
	case push.FCM, push.APNs:
		if r.Token == "" || len(r.Token) > MaxToken {
			return fmt.Errorf("%w: %s needs a token of 1-%d bytes", ErrInvalid, r.Platform, MaxToken)
		}
		r.Subscription = nil
	case push.WebPush:
		bad := fmt.Errorf("%w: webpush needs a subscription {endpoint (https), keys {p256dh, auth}}", ErrInvalid)
		if len(r.Subscription) == 0 {
			return bad
		}
		var s push.Subscription
		if json.Unmarshal(r.Subscription, &s) != nil || !strings.HasPrefix(s.Endpoint, "https://") ||
			s.Keys.P256dh == "" || s.Keys.Auth == "" || len(s.Endpoint) > MaxToken || len(s.Keys.P256dh) > MaxToken || len(s.Keys.Auth) > MaxToken {
			return bad
		}
		if err := CheckEndpoint(s.Endpoint); err != nil {
			return fmt.Errorf("%w: webpush endpoint: %v", ErrInvalid, err)
		}
		r.Subscription, _ = json.Marshal(s)
		r.Token = ""
	default:
		return fmt.Errorf("%w: platform must be fcm, apns or webpush", ErrInvalid)
	}
	return nil
}

// CheckEndpoint accepts only https URLs to public hosts: a Web Push
// endpoint is fetched by the platform, and one on a loopback, private,
// link-local (169.254.169.254, cloud metadata) or otherwise internal
// address would have the platform send requests into its own network.
// Only literal addresses and names that are internal by their form are
// refused here; a public-looking name that resolves to an internal address
// must be refused by the sender when it connects (services/push).
func CheckEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "https" {
		return errors.New("must be https")
	}
	if u.User != nil {
		return errors.New("must not carry credentials")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return errors.New("has no host")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || sharedOrReserved(ip) {
			return fmt.Errorf("%s is not a public address", ip)
		}
		return nil
	}
	labels := strings.Split(host, ".")
	tld := labels[len(labels)-1]
	switch {
	case len(labels) < 2:
		return fmt.Errorf("%q is not a public host name", host)
	case tld == "localhost" || tld == "local" || tld == "internal" || tld == "intranet" || tld == "lan" || tld == "home" || tld == "corp" ||
		strings.HasSuffix(host, ".home.arpa") || strings.HasSuffix(host, ".in-addr.arpa") || strings.HasSuffix(host, ".ip6.arpa"):
		return fmt.Errorf("%q is an internal host name", host)
	case !isLetters(tld):
		// No top-level domain is numeric: 127.1, 2130706433 or 0x7f.1 are
		// addresses in disguise for some resolvers.
		return fmt.Errorf("%q is not a public host name", host)
	}
	return nil
}

// sharedOrReserved: IPv4 ranges that IsGlobalUnicast accepts but no public
// host uses (shared address space of carrier NAT, benchmarking, reserved,
// "this network"), and IPv6 unique-local and documentation ranges.
func sharedOrReserved(ip netip.Addr) bool {
	for _, p := range reservedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

var reservedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64: may map to any IPv4 address
	netip.MustParsePrefix("2001:db8::/32"),
}

// isLetters: a top-level domain, ASCII letters or an IDN (xn--).
func isLetters(s string) bool {
	if strings.HasPrefix(s, "xn--") {
		return len(s) > 4
	}
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return true
}
