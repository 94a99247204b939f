package edge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/client/proto"
	"messenger/streams"
	"messenger/subjects"
)

// Push registration (PROTOCOL.md section 5): devices register where to be
// pushed. The registrations are kept in the push bucket, one key per user
// and registration; sending through FCM, APNs and Web Push is a later
// service that reads them.

// PushRegistration is one registered device.
type PushRegistration struct {
	ID           string          `json:"id"`
	Platform     string          `json:"platform"`
	Token        string          `json:"token,omitempty"`
	Subscription json.RawMessage `json:"subscription,omitempty"`
	Created      int64           `json:"created"`
}

const maxPushToken = 4096

func (e *Edge) postPushToken(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		Platform     string `json:"platform"`
		Token        string `json:"token"`
		Subscription *struct {
			Endpoint string `json:"endpoint"`
			Keys     struct {
				P256dh string `json:"p256dh"`
				Auth   string `json:"auth"`
			} `json:"keys"`
		} `json:"subscription"`
	}
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	if cerr := e.writes.push.check(user, "push registrations"); cerr != nil {
		writeError(w, cerr)
		return
	}
	reg := PushRegistration{ID: serverID(), Platform: req.Platform, Created: time.Now().UnixMilli()}
	switch req.Platform {
	case "fcm", "apns":
		if req.Token == "" || len(req.Token) > maxPushToken {
			writeError(w, errf(proto.CodeBadRequest, "%s needs a token of 1-%d bytes", req.Platform, maxPushToken))
			return
		}
		reg.Token = req.Token
	case "webpush":
		s := req.Subscription
		if s == nil || !strings.HasPrefix(s.Endpoint, "https://") || s.Keys.P256dh == "" || s.Keys.Auth == "" || len(s.Endpoint) > maxPushToken {
			writeError(w, errf(proto.CodeBadRequest, "webpush needs a subscription {endpoint (https), keys {p256dh, auth}}"))
			return
		}
		if err := checkPushEndpoint(s.Endpoint); err != nil {
			writeError(w, errf(proto.CodeBadRequest, "webpush endpoint: %v", err))
			return
		}
		reg.Subscription, _ = json.Marshal(s)
	default:
		writeError(w, errf(proto.CodeBadRequest, "platform must be fcm, apns or webpush"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.PublishTimeout)
	defer cancel()
	id, err := e.makeRoomForPush(ctx, user, &reg)
	if err != nil {
		writeError(w, errUnavailable("push registration", err))
		return
	}
	if id != "" { // registered already: the same id again
		writeJSON(w, http.StatusOK, map[string]string{"id": id})
		return
	}
	val, _ := json.Marshal(reg)
	if _, err := e.h.Push.Put(ctx, user+"."+reg.ID, val); err != nil {
		writeError(w, errUnavailable("push registration", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": reg.ID})
}

func (e *Edge) deletePushToken(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	if cerr := e.writes.push.check(user, "push registrations"); cerr != nil {
		writeError(w, cerr)
		return
	}
	if !validID(id) {
		writeError(w, errf(proto.CodeNotFound, "no such registration"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.PublishTimeout)
	defer cancel()
	key := user + "." + id
	if _, err := e.h.Push.Get(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			writeError(w, errf(proto.CodeNotFound, "no such registration"))
			return
		}
		writeError(w, errUnavailable("push registration", err))
		return
	}
	if err := e.h.Push.Purge(ctx, key); err != nil {
		writeError(w, errUnavailable("push registration", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// makeRoomForPush keeps a user's registrations within MaxPushRegs: it
// answers the id of a registration of the same device (the same platform
// and token or endpoint) if there is one, else removes the oldest ones
// until reg fits. Evicting rather than refusing: a device reinstalled or
// reset registers anew without unregistering, and a client cannot know the
// ids of registrations it lost, so refusing would lock the user out of
// push; the oldest registration is the most likely to be stale. Two
// registrations at once may leave one more than the cap until the next.
func (e *Edge) makeRoomForPush(ctx context.Context, user string, reg *PushRegistration) (string, error) {
	raw, err := streams.ReadLastMatching(ctx, e.nc, subjects.KVStream(streams.BucketPush),
		subjects.KVKey(streams.BucketPush, user+".*"), 4*e.cfg.MaxPushRegs)
	if err != nil {
		return "", err
	}
	var regs []PushRegistration
	for _, data := range raw {
		var old PushRegistration
		if len(data) == 0 || json.Unmarshal(data, &old) != nil || old.ID == "" {
			continue // removed (a purge marker) or unreadable
		}
		if old.Platform == reg.Platform && old.Token == reg.Token && pushEndpoint(old.Subscription) == pushEndpoint(reg.Subscription) {
			return old.ID, nil
		}
		regs = append(regs, old)
	}
	slices.SortFunc(regs, func(a, b PushRegistration) int { return cmp.Compare(a.Created, b.Created) })
	for len(regs) >= e.cfg.MaxPushRegs {
		if err := e.h.Push.Purge(ctx, user+"."+regs[0].ID); err != nil {
			return "", err
		}
		regs = regs[1:]
	}
	return "", nil
}

func pushEndpoint(sub json.RawMessage) string {
	var s struct {
		Endpoint string `json:"endpoint"`
	}
	_ = json.Unmarshal(sub, &s)
	return s.Endpoint
}

// checkPushEndpoint accepts only https URLs to public hosts: a Web Push
// endpoint is fetched by the platform, and one on a loopback, private,
// link-local (169.254.169.254, cloud metadata) or otherwise internal
// address would have the platform send requests into its own network.
// Only literal addresses and names that are internal by their form are
// refused here; a public-looking name that resolves to an internal address
// must be refused by the sender when it connects (issue 14).
func checkPushEndpoint(raw string) error {
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

// notFound answers unknown API paths in the API's error format.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, errf(proto.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
}
