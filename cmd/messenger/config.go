package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"time"

	"messenger/edge"
	"messenger/edge/auth"
	"messenger/infra/flagenv"
	"messenger/services/notifier"
	"messenger/services/push"
	"messenger/streams"
)

// config is every setting of every role. Each has a flag and an
// environment variable MESSENGER_<FLAG> (upper case, - as _); a flag given
// on the command line wins over the environment.
type config struct {
	HTTP            string
	Data            string
	NATS            string
	NATSListen      string
	NATSCreds       string
	NATSNkey        string
	NATSTLSCert     string
	NATSTLSKey      string
	NATSTLSCA       string
	JWTSecret       string
	JWTPublicKey    string
	JWTPrivateKey   string
	Dev             bool
	ClickHouse      string
	ClickHouseDB    string
	Partitions      int
	Replicas        int
	QueueMaxAge     time.Duration
	DedupWindow     time.Duration
	SyncAlways      bool
	ShutdownTimeout time.Duration
	AllowedOrigins  string
	SendRate        float64
	SendBurst       int
	MaxText         int
	MaxFrame        int
	QueueFrames     int
	PingInterval    time.Duration
	IdleTimeout     time.Duration
	FanoutShards    int
	FanoutFlush     time.Duration
	ProjectorBatch  int
	ProjectorWait   time.Duration
	LogLevel        string
	HistoryRate     float64
	HistoryBurst    int
	OnlineDelay     time.Duration
	OfflineDelay    time.Duration
	EdgeTimeout     time.Duration
	EdgeHeartbeat   time.Duration
	PresenceSync    time.Duration
	MaxWatch        int
	TypingEvery     time.Duration
	Pprof           bool
	MaxGroup        int
	ReadBuffer      int
	// Secrets, token rules, ClickHouse login, metrics listener (issue 12).
	JWTSecretFile          string
	JWTAudience            string
	JWTIssuer              string
	JWTMaxTTL              time.Duration
	ClickHouseUser         string
	ClickHousePasswordFile string
	ClickHouseTLS          bool
	ClickHouseCA           string
	MetricsListen          string

	MaxGroupsPerUser int // --max-groups-per-user
	// abuse limits (issue 12)
	ReceiptRate, GroupChangeRate, WatchRate, SyncRate, TypingRate, PushRate       float64
	ReceiptBurst, GroupChangeBurst, WatchBurst, SyncBurst, TypingBurst, PushBurst int
	MaxConnsPerUser                                                               int
	MaxPushTokens                                                                 int
	HTTPReadTimeout, HTTPWriteTimeout, HTTPIdleTimeout                            time.Duration
	HTTPMaxHeaderBytes                                                            int
	// partition ownership of the fan-outs and projectors (issue 13, services/partition)
	PartitionOwnership bool
	WorkerID           string
	// NATS cluster of the embedded server (issue 13, cluster).
	NATSServerName    string
	NATSClusterName   string
	NATSClusterListen string
	NATSRoutes        string
	// sharded ClickHouse (issue 13, chshard)
	ClickHouseShards  string
	ClickHouseCluster string
	// NATS client liveness (issue 13, availability): every role's connections.
	NATSPingInterval   time.Duration
	NATSMaxPingsOut    int
	NATSPublishAttempt time.Duration
	// projection holes (issue 13, projgap)
	HistoryCheckEvery time.Duration
	// push providers (issue 14, providers): the notifier builds them with
	// push.New(cfg.pushConfig(role == "all")).
	Push           push.Config
	PushAllowHosts string
	// push notifier (issue 14, notifier): notifierFlags
	PushCoalesce, PushTTL, PushOfflineGrace time.Duration
	PushText                                bool
	PushUserRate, PushProviderRate          float64
	PushUserBurst, PushQueue, PushWorkers   int
	// explicit: flags given on the command line or in the environment.
	explicit map[string]bool
	// cmdline: flags given on the command line (visible to every user of
	// the host in /proc/<pid>/cmdline).
	cmdline map[string]bool
}

func (c *config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:8080", "HTTP listen address (WebSocket, API, /healthz, /readyz, /metrics)")
	fs.StringVar(&c.Data, "data", "./data", "directory for JetStream and other local state")
	fs.StringVar(&c.NATS, "nats", "nats://127.0.0.1:4222", "NATS URL(s), comma-separated, for the roles that run alone")
	fs.StringVar(&c.NATSListen, "nats-listen", "127.0.0.1:4222", "client address of the embedded NATS server (all, nats)")
	fs.StringVar(&c.NATSCreds, "nats-creds", "", "directory of the NATS identities: users.json (the server's list of public keys: all, nats; made with the seeds on first start when this flag is not given) and one <role>.nk seed per role (default <data>/nats)")
	fs.StringVar(&c.NATSNkey, "nats-nkey", "", "NKEY seed file of this process's NATS identity (default <nats-creds>/<role>.nk when it exists; none: no authentication)")
	fs.StringVar(&c.NATSTLSCert, "nats-tls-cert", "", "PEM certificate: the embedded NATS server's (all, nats), or this client's for mutual TLS")
	fs.StringVar(&c.NATSTLSKey, "nats-tls-key", "", "PEM private key of --nats-tls-cert")
	fs.StringVar(&c.NATSTLSCA, "nats-tls-ca", "", "PEM CA: clients verify the NATS server with it (and use TLS); the embedded server requires client certificates signed by it")
	fs.StringVar(&c.JWTSecret, "jwt-secret", "", "HS256 secret for tokens (at least 16 bytes); other users of the host can read a flag in /proc: prefer MESSENGER_JWT_SECRET or --jwt-secret-file")
	fs.StringVar(&c.JWTPublicKey, "jwt-public-key", "", "PEM file of an Ed25519 public key: tokens are EdDSA instead of HS256")
	fs.StringVar(&c.JWTPrivateKey, "jwt-private-key", "", "PEM file of the Ed25519 private key, for `messenger token` with EdDSA")
	fs.BoolVar(&c.Dev, "dev", false, "development mode: make and keep a secret under --data, print it, enable the web sign-in (only with --http on loopback, never with a configured key)")
	fs.StringVar(&c.ClickHouse, "clickhouse", "127.0.0.1:9000", "ClickHouse native-protocol address (empty: no projection, history from the streams)")
	fs.StringVar(&c.ClickHouseDB, "clickhouse-db", "messenger", "ClickHouse database")
	fs.IntVar(&c.Partitions, "partitions", 4, "conversation and queue stream partitions (fixed at first start)")
	fs.IntVar(&c.Replicas, "replicas", 1, "replicas per stream (3 in a cluster)")
	fs.DurationVar(&c.QueueMaxAge, "queue-max-age", 30*24*time.Hour, "how long a user's queue keeps stored events")
	fs.DurationVar(&c.DedupWindow, "dedup-window", 10*time.Minute, "how long a resent client id is recognised")
	fs.BoolVar(&c.SyncAlways, "sync-always", false, "embedded NATS: fsync every write before acking (survives power loss, slower)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "drain deadline on SIGTERM")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", "", "comma-separated Origins allowed for browser WebSockets and the web sign-in (* for any); the page's own origin is allowed only on localhost or an IP address")
	fs.Float64Var(&c.SendRate, "send-rate", 20, "sends per second per user")
	fs.IntVar(&c.SendBurst, "send-burst", 50, "burst of sends per user")
	fs.IntVar(&c.MaxText, "max-text", 4096, "largest text in bytes")
	fs.IntVar(&c.MaxFrame, "max-frame", 32<<10, "largest WebSocket frame in bytes")
	fs.IntVar(&c.QueueFrames, "queue-frames", 1024, "frames that may wait for a slow reader before it is closed with 4008")
	fs.DurationVar(&c.PingInterval, "ping-interval", 20*time.Second, "server ping interval on idle connections")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 60*time.Second, "close a connection silent for this long")
	fs.IntVar(&c.FanoutShards, "fanout-shards", 64, "queue-writer goroutines of the fan-out")
	fs.DurationVar(&c.FanoutFlush, "fanout-flush", 5*time.Second, "how often the fan-out stores changed conversation summaries and watermarks, then its checkpoints (changes within it make one write; a list or conversation read has them stored at once)")
	fs.IntVar(&c.ProjectorBatch, "projector-batch", 5000, "most events of one ClickHouse insert per conversation stream")
	fs.DurationVar(&c.ProjectorWait, "projector-wait", 5*time.Second, "how long the projector gathers events for one insert (each insert makes a ClickHouse part: longer costs ClickHouse less; history pages do not wait for it)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.Float64Var(&c.HistoryRate, "history-rate", 20, "history and conversation-list reads per second per user")
	fs.IntVar(&c.HistoryBurst, "history-burst", 40, "burst of history reads per user")
	fs.DurationVar(&c.OnlineDelay, "online-delay", 5*time.Second, "presence: tell online only when still connected this long after connecting")
	fs.DurationVar(&c.OfflineDelay, "offline-delay", 10*time.Second, "presence: tell offline only when no connection came back for this long")
	fs.DurationVar(&c.EdgeTimeout, "edge-timeout", 15*time.Second, "presence: an edge silent this long is dead and its users gone")
	fs.DurationVar(&c.EdgeHeartbeat, "edge-heartbeat", 5*time.Second, "presence: how often an edge says it is alive")
	fs.DurationVar(&c.PresenceSync, "presence-sync", 30*time.Second, "presence: how often an edge sends its full list of users")
	fs.IntVar(&c.MaxWatch, "max-watch", 500, "largest watch list and presence pull")
	fs.IntVar(&c.MaxGroup, "max-group", 256, "largest group")
	fs.IntVar(&c.MaxGroupsPerUser, "max-groups-per-user", 1000, "most groups a user may be a member of")
	fs.IntVar(&c.ReadBuffer, "ws-read-buffer", 256, "read buffer of each WebSocket connection, bytes")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on --http (never expose publicly)")
	fs.DurationVar(&c.TypingEvery, "typing-every", 2*time.Second, "at most one typing event per user and conversation per this interval")
	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", "", "file holding the HS256 secret (instead of --jwt-secret, which other users of the host can read in /proc)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "", "when set, tokens must carry this aud (messenger token sets it)")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", "", "when set, tokens must carry this iss (messenger token sets it)")
	fs.DurationVar(&c.JWTMaxTTL, "jwt-max-ttl", auth.DefaultMaxTTL, "longest token lifetime accepted: exp at most this far from now and from iat")
	fs.StringVar(&c.ClickHouseUser, "clickhouse-user", "default", "ClickHouse user")
	fs.StringVar(&c.ClickHousePasswordFile, "clickhouse-password-file", "", "file holding the ClickHouse password (or the environment variable MESSENGER_CLICKHOUSE_PASSWORD; none: no password)")
	fs.BoolVar(&c.ClickHouseTLS, "clickhouse-tls", false, "connect to ClickHouse over TLS (its secure native port, 9440 by default)")
	fs.StringVar(&c.ClickHouseCA, "clickhouse-ca", "", "PEM file of the CA that signed ClickHouse's certificate (default: the system's; implies --clickhouse-tls)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "serve /metrics on this address of its own instead of --http (then --http answers 404 for /metrics)")
	c.limitFlags(fs)
	c.ownershipFlags(fs)
	c.clusterFlags(fs)
	c.chShardFlags(fs)
	c.availFlags(fs)
	c.pushFlags(fs)
	c.notifierFlags(fs)
	// projection holes (issue 13): the projector's periodic history check.
	fs.DurationVar(&c.HistoryCheckEvery, "history-check-every", 10*time.Minute, "projector: how often to compare each conversation stream with ClickHouse and project again the events missing below the ack floor (messenger_projector_holes; 0: never)")
}

// notifierFlags: the push notifier (issue 14, services/notifier).
func (c *config) notifierFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.PushCoalesce, "push-coalesce", 2*time.Second, "notifier: messages of one conversation to one user within this window from the first make one push (at most 30s)")
	fs.DurationVar(&c.PushTTL, "push-ttl", time.Hour, "notifier: a push is retried (transient failures, 429) until the message is this old, then dropped; the TTL given to the providers; older messages are not pushed")
	fs.BoolVar(&c.PushText, "push-text", false, "notifier: put the message text in the push (default: only who wrote and where)")
	fs.Float64Var(&c.PushUserRate, "push-user-rate", 1, "notifier: pushes per second per user (over it they are dropped)")
	fs.IntVar(&c.PushUserBurst, "push-user-burst", 10, "notifier: burst of pushes per user")
	fs.Float64Var(&c.PushProviderRate, "push-provider-rate", 500, "notifier: sends per second per provider (over it they wait in the provider's queue)")
	fs.IntVar(&c.PushQueue, "push-queue", 10000, "notifier: sends (and retries) waiting per provider; beyond it they are dropped (messenger_push_sent_total{outcome=\"dropped\"})")
	fs.IntVar(&c.PushWorkers, "push-workers", 8, "notifier: sends in flight per provider")
	fs.DurationVar(&c.PushOfflineGrace, "push-offline-grace", 10*time.Second, "notifier: no push to a user whose last connection ended less than this ago")
}

// notifier is the notifier's configuration from the flags.
func (c *config) notifier() notifier.Config {
	return notifier.Config{Coalesce: c.PushCoalesce, TTL: c.PushTTL, Text: c.PushText, UserRate: c.PushUserRate, UserBurst: c.PushUserBurst,
		ProviderRate: c.PushProviderRate, QueueSize: c.PushQueue, Workers: c.PushWorkers, OfflineGrace: c.PushOfflineGrace,
		Ownership: c.PartitionOwnership, WorkerID: c.WorkerID}
}

// ownershipFlags: how fan-outs and projectors share the partitions (issue 13).
func (c *config) ownershipFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.PartitionOwnership, "partition-ownership", true, "fan-outs, projectors and notifiers share the partitions: each works those it owns among the live ones of its kind and takes a dead one's within seconds (false: every one works every partition)")
	fs.StringVar(&c.WorkerID, "worker-id", "", "this fan-out's, projector's or notifier's name among its kind (default: host name and process id)")
}

// clusterFlags: the embedded NATS server as a node of a cluster (all, nats).
func (c *config) clusterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NATSServerName, "nats-server-name", defaultServerName(), "name of the embedded NATS server, unique in its cluster and kept across restarts (JetStream knows its peers by it)")
	fs.StringVar(&c.NATSClusterName, "nats-cluster-name", "messenger", "name of the NATS cluster, the same on every node")
	fs.StringVar(&c.NATSClusterListen, "nats-cluster-listen", "", "host:port for routes from the other NATS nodes (empty: no cluster); off loopback it needs --nats-tls-cert, --nats-tls-key and --nats-tls-ca (routes use mutual TLS)")
	fs.StringVar(&c.NATSRoutes, "nats-routes", "", "comma-separated route URLs of the cluster's nodes (nats-route://host:port; this node's own may be listed too)")
}

// defaultServerName is the host name, or n1 when there is none.
func defaultServerName() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "n1"
}

// routes are --nats-routes, split.
func (c *config) routes() []string {
	var out []string
	for _, r := range strings.Split(c.NATSRoutes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// availFlags: how fast a role's NATS connections notice a silent server
// (issue 13): a connection whose server answers no ping for
// ping-interval x (max-pings-out + 1) at most moves to another server of
// --nats; a publish moves sooner (one attempt, then a ping).
func (c *config) availFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.NATSPingInterval, "nats-ping-interval", 2*time.Second, "NATS client: ping the server this often (a silent server is left after ping-interval x (max-pings-out + 1) at most)")
	fs.IntVar(&c.NATSMaxPingsOut, "nats-max-pings-out", 2, "NATS client: unanswered pings before the server is taken for dead and another one of --nats tried")
	fs.DurationVar(&c.NATSPublishAttempt, "nats-publish-attempt", 1500*time.Millisecond, "edge: one attempt of a JetStream publish (a send, a receipt); no ack by then, the server is pinged (left when silent) and the same message sent again, within the 5s answer budget")
}

// limitFlags: per-user limits of client writes (per edge) and the HTTP
// server's timeouts.
func (c *config) limitFlags(fs *flag.FlagSet) {
	d := edge.DefaultRates
	rate := func(p *float64, b *int, name, what string, r edge.Rate) {
		fs.Float64Var(p, name+"-rate", r.PerSecond, what+" per second per user, per edge")
		fs.IntVar(b, name+"-burst", r.Burst, "burst of "+what+" per user")
	}
	rate(&c.ReceiptRate, &c.ReceiptBurst, "receipt", "receipts", d.Receipt)
	rate(&c.GroupChangeRate, &c.GroupChangeBurst, "group-change", "group creations, member additions and removals and title changes", d.Group)
	rate(&c.WatchRate, &c.WatchBurst, "watch", "watch lists", d.Watch)
	rate(&c.SyncRate, &c.SyncBurst, "sync", "syncs", d.Sync)
	rate(&c.TypingRate, &c.TypingBurst, "typing", "typing events sent on (coalesced ones are free)", d.Typing)
	rate(&c.PushRate, &c.PushBurst, "push-reg", "push registrations and unregistrations", d.Push)
	fs.IntVar(&c.MaxConnsPerUser, "max-conns-per-user", 16, "WebSocket connections and held long polls per user, per edge (more: 429 rate_limited)")
	fs.IntVar(&c.MaxPushTokens, "max-push-tokens", 20, "push registrations per user (a new one beyond replaces the oldest)")
	fs.DurationVar(&c.HTTPReadTimeout, "http-read-timeout", 30*time.Second, "HTTP: most time to read a request, body included (long polls extend their own)")
	fs.DurationVar(&c.HTTPWriteTimeout, "http-write-timeout", 30*time.Second, "HTTP: most time from a request read to its answer written (long polls extend their own)")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", 120*time.Second, "HTTP: close a keep-alive connection idle this long")
	fs.IntVar(&c.HTTPMaxHeaderBytes, "http-max-header-bytes", 32<<10, "HTTP: largest request header block, bytes (more: 431)")
}

func (c *config) rates() edge.Rates {
	return edge.Rates{
		Receipt: edge.Rate{PerSecond: c.ReceiptRate, Burst: c.ReceiptBurst},
		Group:   edge.Rate{PerSecond: c.GroupChangeRate, Burst: c.GroupChangeBurst},
		Watch:   edge.Rate{PerSecond: c.WatchRate, Burst: c.WatchBurst},
		Sync:    edge.Rate{PerSecond: c.SyncRate, Burst: c.SyncBurst},
		Typing:  edge.Rate{PerSecond: c.TypingRate, Burst: c.TypingBurst},
		Push:    edge.Rate{PerSecond: c.PushRate, Burst: c.PushBurst},
	}
}

// parse reads args, then fills every flag not given from its environment
// variable; cfg learns which flags were given either way.
func parse(fs *flag.FlagSet, args []string, cfg *config) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.cmdline = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { cfg.cmdline[f.Name] = true })
	var err error
	cfg.explicit, err = flagenv.Fill(fs, "MESSENGER")
	return err
}

// natsCreds is the directory of the NATS identities.
func (c *config) natsCreds() string {
	if c.NATSCreds != "" {
		return c.NATSCreds
	}
	return filepath.Join(c.Data, "nats")
}

func (c *config) origins() []string {
	var out []string
	for _, o := range strings.Split(c.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// streams is the stream layout the flags ask for, the same for every role
// and command.
func (c *config) streams() streams.Config {
	return streams.Config{Partitions: c.Partitions, Replicas: c.Replicas, QueueMaxAge: c.QueueMaxAge, DedupWindow: c.DedupWindow}
}

// chShardFlags: a ClickHouse projection sharded over several servers.
func (c *config) chShardFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ClickHouseShards, "clickhouse-shards", "", "comma-separated native addresses of the ClickHouse shards, in the order of their cluster's remote_servers (scripts/clickhouse.sh start-shards): the projector creates the local tables and the Distributed tables on every shard and inserts wait for every shard; --clickhouse may be any of them (empty: one server)")
	fs.StringVar(&c.ClickHouseCluster, "clickhouse-cluster", "messenger", "name of the shards' cluster in their remote_servers (with --clickhouse-shards)")
}

// chShards is --clickhouse-shards as a list.
func (c *config) chShards() []string {
	var out []string
	for _, a := range strings.Split(c.ClickHouseShards, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// pushFlags: the push providers (issue 14). A provider with none of its
// flags is off; one with some of them is an error at start.
func (c *config) pushFlags(fs *flag.FlagSet) {
	p := &c.Push
	fs.StringVar(&p.FCMCredentials, "fcm-credentials", "", "FCM: service-account key file (JSON, from the Firebase console: Project settings, Service accounts); empty: no FCM")
	fs.StringVar(&p.FCMEndpoint, "fcm-endpoint", push.DefaultFCMEndpoint, "FCM: HTTP v1 API base URL")
	fs.StringVar(&p.APNsKey, "apns-key", "", "APNs: token-signing key file (.p8, from the Apple developer account: Keys); empty: no APNs")
	fs.StringVar(&p.APNsKeyID, "apns-key-id", "", "APNs: the .p8 key's id")
	fs.StringVar(&p.APNsTeamID, "apns-team-id", "", "APNs: the developer team id")
	fs.StringVar(&p.APNsTopic, "apns-topic", "", "APNs: the app's bundle id")
	fs.StringVar(&p.APNsEndpoint, "apns-endpoint", push.DefaultAPNsEndpoint, "APNs: server base URL (sandbox: https://api.sandbox.push.apple.com)")
	fs.StringVar(&p.WebPushVAPIDKey, "webpush-vapid-key", "", "Web Push: VAPID private key file (PEM or base64url P-256; all: default <data>/vapid.pem, made when missing); empty: no Web Push")
	fs.StringVar(&p.WebPushSubject, "webpush-subject", "", "Web Push: the operator's contact in VAPID tokens, mailto: or https: (all: default mailto:webpush@localhost)")
	fs.StringVar(&c.PushAllowHosts, "push-allow-hosts", "", "comma-separated hosts or host:port that push requests may reach on a non-public address (loopback, private...); every other host only on a public address")
	fs.StringVar(&p.CAFile, "push-ca-file", "", "PEM file of CAs trusted for push providers besides the system's")
	fs.DurationVar(&p.Timeout, "push-timeout", push.DefaultTimeout, "most time for one request to a push provider")
}

// pushConfig is the providers' configuration; for the all role a missing
// VAPID key is <data>/vapid.pem, made when missing, so Web Push works on a
// development box without setup.
func (c *config) pushConfig(all bool) (push.Config, error) {
	p := c.Push
	p.AllowHosts = nil
	for _, h := range strings.Split(c.PushAllowHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			p.AllowHosts = append(p.AllowHosts, h)
		}
	}
	if all && p.WebPushVAPIDKey == "" {
		p.WebPushVAPIDKey = filepath.Join(c.Data, "vapid.pem")
		if _, err := push.LoadOrCreateVAPIDKey(p.WebPushVAPIDKey); err != nil {
			return p, err
		}
		if p.WebPushSubject == "" {
			p.WebPushSubject = "mailto:webpush@localhost"
		}
	}
	return p, p.Validate()
}
