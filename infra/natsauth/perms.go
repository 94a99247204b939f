// Package natsauth holds the NATS identities of the platform: one NKEY user
// per role, its permission set (built from subjects/ and streams/), the
// files that carry them (a 0600 seed per role, the server's list of public
// keys) and the client options that use them.
//
// The permission sets are allow lists: anything not listed is refused by
// the server, and the deny lists only cut holes into wide allows. The
// package never logs; its functions are safe for concurrent use.
package natsauth

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"messenger/streams"
	"messenger/subjects"
)

// Roles: one NATS identity each.
const (
	// RoleAdmin creates and updates the streams and buckets at start
	// (`messenger nats`, `messenger all`, `messenger setup`) and is what
	// tests use to look inside. Everything but $SYS.
	RoleAdmin = "admin"
	// RoleEdge is every edge (WebSocket and HTTP API).
	RoleEdge = "edge"
	// RoleFanout is every fan-out.
	RoleFanout = "fanout"
	// RoleProjector is the ClickHouse projector and its one-shot commands
	// (replay-dead-letters, rebuild-history).
	RoleProjector = "projector"
	// RolePresence is the presence service.
	RolePresence = "presence"
	// RoleNotifier is the push notifier (and `messenger push test`).
	RoleNotifier = "notifier"
	// RoleReadOnly reads streams and buckets through the JetStream API and
	// makes its own consumers: internal services and the `nats` command line.
	RoleReadOnly = "readonly"
)

// Roles are every role, in the order files are written.
var Roles = []string{RoleAdmin, RoleEdge, RoleFanout, RoleProjector, RolePresence, RoleNotifier, RoleReadOnly}

// ServiceRoles are the roles a `messenger <role>` process runs as.
var ServiceRoles = []string{RoleEdge, RoleFanout, RoleProjector, RolePresence, RoleNotifier}

// Perms is a permission set as plain lists, for tests and documentation.
type Perms struct {
	PubAllow, PubDeny, SubAllow, SubDeny []string
}

// protectProjector keeps every role but the projector's (and the admin)
// off the projector's durable consumer: making it again with another
// configuration, deleting it, pulling or acking its messages would skip or
// stall the ClickHouse projection.
func protectProjector() []string {
	d := streams.ProjectorDurable
	return []string{
		subjects.JSConsumerCreate("*", d), subjects.JSConsumerCreateFiltered("*", d),
		subjects.JSConsumerDurableCreate("*", d), subjects.JSConsumerDelete("*", d),
		subjects.JSConsumerNext("*", d), subjects.JSAck("*", d),
	}
}

// common is what every service role needs: open the streams and buckets
// (stream info), read them (direct gets, KV gets included), and receive
// replies on its own inbox.
func common(role string) Perms {
	return Perms{
		PubAllow: []string{subjects.JSStreamInfoAll, subjects.JSDirectGetAll},
		PubDeny:  []string{subjects.SystemAll},
		SubAllow: []string{subjects.InboxAll(subjects.RoleInboxPrefix(role))},
		SubDeny:  []string{subjects.SystemAll},
	}
}

// PushRegWrites is what services/pushreg writes: its events (stream
// PUSHREG) and their projections, KV push and KV mutes. The edge registers,
// unregisters and mutes through it; the notifier removes the registrations
// a provider calls gone: its role gets these too.
func PushRegWrites() []string {
	return []string{subjects.PushRegAll, subjects.KVAll(streams.BucketPush), subjects.KVAll(streams.BucketMutes)}
}

// RolePerms is the permission set of role, or an error for an unknown one.
func RolePerms(role string) (Perms, error) {
	switch role {
	case RoleAdmin:
		return Perms{
			PubAllow: []string{subjects.All}, PubDeny: []string{subjects.SystemAll},
			SubAllow: []string{subjects.All}, SubDeny: []string{subjects.SystemAll},
		}, nil
	case RoleEdge:
		p := common(role)
		p.PubAllow = append(p.PubAllow,
			// sends and receipts, stored (conversation.Cache.Commit, edge/send.go)
			subjects.ConvEventsAll, subjects.ReceiptsAll,
			// group metadata (conversation.Store), groups per user
			// (conversation.Memberships)
			subjects.KVAll(streams.BucketConvs), subjects.KVAll(streams.BucketUserGroups),
			// online probe requests and typing (edge/online.go, edge/presence.go)
			subjects.LiveAll,
			// connection reports, heartbeats and full lists to the presence service
			subjects.PresenceEventsAll, subjects.PresenceHeartbeatsAll, subjects.PresenceSyncsAll,
			// ask the fan-outs to store a user's summaries before a read
			subjects.FanoutFlush,
			// answers to other edges' online probes, and to the notifier's
			subjects.InboxAll(subjects.RoleInboxPrefix(RoleEdge)), subjects.InboxAll(subjects.RoleInboxPrefix(RoleNotifier)),
		)
		// push registrations and mutes (services/pushreg)
		p.PubAllow = append(p.PubAllow, PushRegWrites()...)
		p.SubAllow = append(p.SubAllow,
			subjects.LiveAll,            // the live subjects of whichever users connect
			subjects.PresenceChangesAll, // changes of the users its clients watch
			subjects.PresenceEventsAll,  // other edges' reports (edge/online.go)
			subjects.PresenceResync,
		)
		return p, nil
	case RoleFanout:
		p := common(role)
		p.PubAllow = append(p.PubAllow,
			subjects.QueueAll, subjects.InboxSummariesAll, subjects.LiveAll,
			subjects.KVAll(streams.BucketWatermarks), subjects.KVAll(streams.BucketFanout), subjects.KVAll(streams.BucketConvs),
			// its lease among the fan-outs sharing the partitions (services/partition)
			subjects.KVAll(streams.BucketWorkers),
			// its ordered consumers on the conversation streams (names are generated)
			subjects.JSConsumerCreate("*", "*"), subjects.JSConsumerCreateFiltered("*", "*"),
			subjects.JSConsumerInfo("*", "*"), subjects.JSConsumerNext("*", "*"), subjects.JSConsumerDelete("*", "*"),
			// answers to the edges' flush requests
			subjects.InboxAll(subjects.RoleInboxPrefix(RoleEdge)),
		)
		p.PubDeny = append(p.PubDeny, protectProjector()...)
		p.SubAllow = append(p.SubAllow, subjects.FanoutFlush)
		return p, nil
	case RoleProjector:
		p := common(role)
		d := streams.ProjectorDurable
		p.PubAllow = append(p.PubAllow,
			subjects.DeadLettersFilter(),
			subjects.JSConsumerCreate("*", d), subjects.JSConsumerInfo("*", d), subjects.JSConsumerNext("*", d),
			subjects.JSConsumerDelete("*", d), subjects.JSAck("*", d),
			subjects.JSStreamMsgDelete(streams.DeadLetterStream),
			// its lease among the projectors sharing the partitions (services/partition)
			subjects.KVAll(streams.BucketWorkers),
		)
		return p, nil
	case RoleNotifier:
		p := common(role)
		d := streams.NotifierDurable
		p.PubAllow = append(p.PubAllow,
			// its durable consumer on each conversation stream
			subjects.JSConsumerCreate("*", d), subjects.JSConsumerInfo("*", d), subjects.JSConsumerNext("*", d), subjects.JSAck("*", d),
			// the push records (claimed before a push), group metadata
			// written back by conversation.Store, its lease among the
			// notifiers
			subjects.KVAll(streams.BucketPushSent), subjects.KVAll(streams.BucketConvs),
			subjects.KVAll(streams.BucketWorkers),
			// online probes (requests answered by the edges holding the user)
			subjects.LiveAll,
		)
		// a registration a provider calls gone is removed (services/pushreg)
		p.PubAllow = append(p.PubAllow, PushRegWrites()...)
		p.PubDeny = append(p.PubDeny, protectProjector()...)
		// the edges' connection reports: who left within the offline grace
		p.SubAllow = append(p.SubAllow, subjects.PresenceEventsAll)
		return p, nil
	case RolePresence:
		p := common(role)
		p.PubAllow = append(p.PubAllow, subjects.PresenceResync, subjects.PresenceChangesAll, subjects.KVAll(streams.BucketPresence))
		p.SubAllow = append(p.SubAllow, subjects.PresenceEventsAll, subjects.PresenceHeartbeatsAll, subjects.PresenceSyncsAll)
		return p, nil
	case RoleReadOnly:
		return Perms{
			PubAllow: []string{
				subjects.JSAccountInfo, subjects.JSStreamInfoAll, subjects.JSStreamNames, subjects.JSStreamList,
				subjects.JSStreamMsgGetAll, subjects.JSDirectGetAll,
				subjects.JSConsumerListAll, subjects.JSConsumerNamesAll,
				subjects.JSEphemeralCreateAll, subjects.JSConsumerCreate("*", "*"), subjects.JSConsumerCreateFiltered("*", "*"),
				subjects.JSConsumerInfo("*", "*"), subjects.JSConsumerNext("*", "*"), subjects.JSConsumerDelete("*", "*"),
			},
			PubDeny:  append([]string{subjects.SystemAll}, protectProjector()...),
			SubAllow: []string{subjects.InboxAll(subjects.DefaultInboxPrefix)},
			SubDeny:  []string{subjects.SystemAll},
		}, nil
	}
	return Perms{}, fmt.Errorf("natsauth: unknown role %q (one of %v)", role, Roles)
}

// readOnlyResponses lets the read-only identity answer what it receives
// with a reply subject: acks and flow control of its own consumers.
var readOnlyResponses = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}

// ServerPermissions is role's permission set as the server takes it.
func ServerPermissions(role string) (*server.Permissions, error) {
	p, err := RolePerms(role)
	if err != nil {
		return nil, err
	}
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.PubAllow, Deny: p.PubDeny},
		Subscribe: &server.SubjectPermission{Allow: p.SubAllow, Deny: p.SubDeny},
	}
	if role == RoleReadOnly {
		sp.Response = readOnlyResponses
	}
	return sp, nil
}
