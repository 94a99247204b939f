package edge

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// originAllowed tells whether a browser request may come from its Origin
// (PROTOCOL.md section 3: one not allowed by configuration is answered
// 403). No Origin (not a browser) is allowed, so is one of
// Config.AllowedOrigins. The page's own origin (Origin equal to the Host)
// is allowed only when the Host cannot be a DNS-rebinding name: localhost
// or an IP address. A rebinding page is on the attacker's name
// (evil.example, resolved to this edge's address after the page loaded), so
// its Origin and Host are both evil.example: the same host, but not one
// this edge answers for. A web client served under a DNS name is allowed by
// listing its origin in --allowed-origins.
func (e *Edge) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range e.cfg.AllowedOrigins {
		if o == "*" || o == origin {
			return true
		}
	}
	sameHost := strings.EqualFold(origin, "http://"+r.Host) || strings.EqualFold(origin, "https://"+r.Host)
	return sameHost && unrebindableHost(r.Host)
}

// unrebindableHost: the host of a Host header is localhost or an IP address
// (a browser connects to an IP literal without asking DNS, so no other
// server can answer for it).
func unrebindableHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}
