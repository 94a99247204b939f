package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/subjects"
)

// Stream name prefixes; the partition number follows.
const (
	ConvStreamPrefix  = "CONV_"
	QueueStreamPrefix = "UQ_"
	InboxStreamPrefix = "INBOX_"
)

// DeadLetterStream keeps what a consumer gave up on, with the reason.
const DeadLetterStream = "DEAD_LETTERS"

// PushRegStream keeps the push registration and mute events
// (services/pushreg): the source of KV push and KV mutes.
const PushRegStream = "PUSHREG"

// PushRegHistory is how many events of one registration or one mute the
// stream keeps: the last is the state; a few before it tell how it came to be.
const PushRegHistory = 8

// ProjectorDurable is the durable consumer name of the ClickHouse projector
// on every conversation stream. Never rename it: a new name re-projects all.
const ProjectorDurable = "projector"

// NotifierDurable is the durable consumer name of the push notifier on
// every conversation stream. Never rename it: a new name starts at the
// stream's end (NotifierConsumerConfig), and what was pending is lost.
const NotifierDurable = "notifier"

// NotifierAckWait is the notifier consumer's default AckWait.
const NotifierAckWait = 30 * time.Second

// Dead-letter headers: where the event came from and why it was given up.
const (
	DeadSubjectHeader   = "Dead-Subject"
	DeadStreamHeader    = "Dead-Stream"
	DeadSequenceHeader  = "Dead-Sequence"
	DeadReasonHeader    = "Dead-Reason"
	DeadComponentHeader = "Dead-Component"
)

// Key-value buckets.
const (
	// BucketConvs maps a conversation id to its metadata (kind, members):
	// a projection of the conversation streams.
	BucketConvs = "convs"
	// BucketWatermarks maps "<conv>.<user>" to that member's delivered and
	// read watermarks: a projection of the receipts.
	BucketWatermarks = "watermarks"
	// BucketFanout keeps the fan-out's checkpoint per conversation stream.
	BucketFanout = "fanout"
	// BucketPresence maps a user to its presence as watchers were last told
	// it (status, last seen): what bulk pulls answer.
	BucketPresence = "presence"
	// BucketPush maps "<user>.<id>" to a device registered for push.
	BucketPush = "push"
	// BucketUserGroups maps a user to the groups it is a member of, written
	// by the edges before a create or an add: what bounds the groups per
	// user (conversation.Memberships).
	BucketUserGroups = "user_groups"
	// BucketWorkers maps "<kind>.<worker id>" to a live worker of that kind
	// (fan-out, projector): each puts its key every heartbeat and the
	// bucket's TTL (WorkersTTL) removes the key of one that stopped beating
	// (services/partition).
	BucketWorkers = "workers"
	// BucketMutes maps "<user>.<conv>" to user's last mute event of conv:
	// a projection of stream PUSHREG (services/pushreg).
	BucketMutes = "mutes"
	// BucketPushSent maps "<user>.<conv>" to the last conversation seq the
	// notifier pushed to that user (services/notifier): claimed with a
	// compare-and-set before a push goes out, so that a restarted or a
	// second notifier never pushes a message twice. Entries age out after
	// PushSentTTL, far longer than an event stays unacked.
	BucketPushSent = "push_sent"
)

// PushSentTTL is how long a push_sent record lives after its last update.
const PushSentTTL = 7 * 24 * time.Hour

// PushPurgeTTL is how long the marker of a removed registration stays in
// BucketPush (jetstream.PurgeTTL): a user's registrations are read as the
// last message of each of its keys, so markers kept for good would grow
// with every device ever removed and crowd the live ones out of the read.
const PushPurgeTTL = time.Minute

// PushKey is the key of user's registration id in BucketPush.
func PushKey(user, id string) string { return user + "." + id }

// PushKeysOf matches the keys of user's registrations, as a subject of the
// bucket's stream.
func PushKeysOf(user string) string { return subjects.KVKey(BucketPush, user+".*") }

// MuteKey is the key of user's mute of conv in BucketMutes.
func MuteKey(user, conv string) string { return user + "." + conv }

// WorkersTTL is how long a worker's key outlives its last heartbeat: the
// bound on how long a dead worker's partitions wait for a new owner (plus
// one heartbeat for the others to notice).
const WorkersTTL = 4 * time.Second

// WorkerKey is the key of worker id of kind in BucketWorkers; id must be a
// valid subject token (partition.SanitizeID).
func WorkerKey(kind, id string) string { return kind + "." + id }

// WorkersFilter matches the keys of every worker of kind, as a subject of
// the bucket's stream.
func WorkersFilter(kind string) string { return subjects.KVKey(BucketWorkers, kind+".*") }

// Config sets the shape of the streams. The zero value is valid: see the
// defaults on each field.
type Config struct {
	// Partitions is the number of conversation streams and of queue streams.
	// Fixed at first start: changing it later moves ids to other partitions.
	// Default 4.
	Partitions int
	// Replicas per stream (1 on a single box, 3 in a cluster). Default 1.
	Replicas int
	// QueueMaxAge is how long a user's queue keeps a stored event. Default 30 days.
	QueueMaxAge time.Duration
	// DedupWindow is how long a resent client id is recognised. Default 10 minutes.
	DedupWindow time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Partitions <= 0 {
		c.Partitions = 4
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.QueueMaxAge <= 0 {
		c.QueueMaxAge = 30 * 24 * time.Hour
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = 10 * time.Minute
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.Partitions > 1024 {
		return fmt.Errorf("streams: %d partitions: at most 1024", c.Partitions)
	}
	if c.DedupWindow < 10*time.Minute {
		return fmt.Errorf("streams: dedup window %s: at least 10m (PROTOCOL.md section 6)", c.DedupWindow)
	}
	return nil
}

// Layout is the subject layout these streams capture.
func (c Config) Layout() subjects.Layout {
	return subjects.Layout{Partitions: c.WithDefaults().Partitions}
}

// ConvStream is the name of conversation stream p.
func ConvStream(p int) string { return ConvStreamPrefix + strconv.Itoa(p) }

// QueueStream is the name of user-queue stream p.
func QueueStream(p int) string { return QueueStreamPrefix + strconv.Itoa(p) }

// ConvStreamConfig is the source of truth for conversations of partition p:
// every stored event and every receipt, kept forever.
func (c Config) ConvStreamConfig(p int) jetstream.StreamConfig {
	c = c.WithDefaults()
	return jetstream.StreamConfig{
		Name:        ConvStream(p),
		Description: "conversation events and receipts, partition " + strconv.Itoa(p),
		Subjects:    []string{subjects.ConvEventsFilter(p), subjects.ReceiptsFilter(p)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  c.DedupWindow,
		AllowDirect: true,
		Discard:     jetstream.DiscardOld,
	}
}

// QueueStreamConfig holds the queues of the users of partition p: one
// subject per user, aged out after QueueMaxAge.
func (c Config) QueueStreamConfig(p int) jetstream.StreamConfig {
	c = c.WithDefaults()
	return jetstream.StreamConfig{
		Name:        QueueStream(p),
		Description: "per-user queues of stored events, partition " + strconv.Itoa(p),
		Subjects:    []string{subjects.QueueFilter(p)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      c.QueueMaxAge,
		// Writes are made idempotent by the fan-out's source vector, not by
		// message ids; keep the window (and its memory) small.
		Duplicates:  time.Minute,
		AllowDirect: true,
		Discard:     jetstream.DiscardOld,
	}
}

// InboxStream is the name of conversation-list stream p.
func InboxStream(p int) string { return InboxStreamPrefix + strconv.Itoa(p) }

// InboxStreamConfig holds, for the users of partition p, one summary per
// conversation (the last per subject): the conversation list, a projection.
func (c Config) InboxStreamConfig(p int) jetstream.StreamConfig {
	c = c.WithDefaults()
	return jetstream.StreamConfig{
		Name:              InboxStream(p),
		Description:       "conversation-list summaries per user and conversation, partition " + strconv.Itoa(p),
		Subjects:          []string{subjects.InboxFilter(p)},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
		MaxMsgsPerSubject: 1,
		Duplicates:        time.Minute,
		AllowDirect:       true,
		Discard:           jetstream.DiscardOld,
	}
}

// DeadLetterStreamConfig keeps dead letters until they are replayed.
func (c Config) DeadLetterStreamConfig() jetstream.StreamConfig {
	c = c.WithDefaults()
	return jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "events a consumer gave up on, with the reason; replayed by messenger replay-dead-letters",
		Subjects:    []string{subjects.DeadLettersFilter()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		AllowDirect: true,
	}
}

// PushRegStreamConfig keeps the push registration and mute events for good
// (no age limit: they are the source of the push and mutes buckets), the
// last PushRegHistory of each registration and mute.
func (c Config) PushRegStreamConfig() jetstream.StreamConfig {
	c = c.WithDefaults()
	return jetstream.StreamConfig{
		Name:              PushRegStream,
		Description:       "push registration and mute events; KV push and mutes are their projection",
		Subjects:          []string{subjects.PushRegAll},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
		MaxMsgsPerSubject: PushRegHistory,
		Duplicates:        c.DedupWindow,
		AllowDirect:       true,
		Discard:           jetstream.DiscardOld,
	}
}

// ProjectorConsumerConfig is the projector's durable pull consumer on
// conversation stream p: acked in order (AckAll) once ClickHouse has the
// batch and every event before it. An ack covers events fetched by nobody
// alive (a projector killed mid-batch, a fetch reply lost): the projector
// reads those from the stream before it acks (services/projector/gap.go).
// AckWait only matters for the newest events of such a lost fetch, which no
// later ack covers while nothing new comes: they are delivered again after
// a minute. Several projectors may pull from it at once (a hand-over);
// MaxAckPending bounds what is fetched and not yet acked, well above the
// largest batch (--projector-batch).
func ProjectorConsumerConfig(p int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ProjectorDurable,
		Description:   "ClickHouse history projection of " + ConvStream(p),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 50_000,
		MaxWaiting:    16,
	}
}

// NotifierConsumerConfig is the notifier's durable pull consumer on
// conversation stream p: every event (msg and receipts), acked one by one
// once the pushes it takes part in are decided (sent, claimed, skipped or
// cancelled); pending coalescing holds an event for about the coalescing
// window. It starts at since (the notifier makes it the first time a
// minute before its start: a notifier added to an old deployment does not
// push the whole history, and one started with the platform misses nothing
// sent meanwhile); a consumer made already keeps its position. ackWait
// (default NotifierAckWait) is well above the window: it is how long the
// events of a killed notifier wait before another reads them; an event
// redelivered is checked against the push_sent record, never pushed twice.
func NotifierConsumerConfig(p int, ackWait time.Duration, since time.Time) jetstream.ConsumerConfig {
	if ackWait <= 0 {
		ackWait = NotifierAckWait
	}
	return jetstream.ConsumerConfig{
		Durable:       NotifierDurable,
		Description:   "push notifications of " + ConvStream(p),
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &since,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 20_000,
		MaxWaiting:    16,
	}
}

// BucketConfigs are the key-value buckets.
func (c Config) BucketConfigs() []jetstream.KeyValueConfig {
	c = c.WithDefaults()
	return []jetstream.KeyValueConfig{
		{Bucket: BucketConvs, Description: "conversation metadata", History: 1, Storage: jetstream.FileStorage, Replicas: c.Replicas},
		{Bucket: BucketWatermarks, Description: "delivered/read watermarks per member", History: 1, Storage: jetstream.FileStorage, Replicas: c.Replicas},
		{Bucket: BucketFanout, Description: "fan-out checkpoints", History: 1, Storage: jetstream.FileStorage, Replicas: c.Replicas},
		{Bucket: BucketPresence, Description: "presence as told to watchers, and last seen", History: 1, Storage: jetstream.FileStorage, Replicas: c.Replicas},
		{Bucket: BucketPush, Description: "devices registered for push notifications", History: 1, Storage: jetstream.FileStorage, Replicas: c.Replicas,
			LimitMarkerTTL: PushPurgeTTL}, // per-message TTLs on: purge markers expire
		{Bucket: BucketUserGroups, Description: "the groups each user is a member of", History: 1, Storage: jetstream.FileStorage, Replicas: c.Replicas},
		{Bucket: BucketWorkers, Description: "live fan-out and projector workers (partition ownership)", History: 1, TTL: WorkersTTL, Storage: jetstream.FileStorage, Replicas: c.Replicas},
		{Bucket: BucketMutes, Description: "muted conversations per user", History: 1, Storage: jetstream.FileStorage, Replicas: c.Replicas},
		{Bucket: BucketPushSent, Description: "last seq pushed per user and conversation (notifier)", History: 1, TTL: PushSentTTL, Storage: jetstream.FileStorage, Replicas: c.Replicas},
	}
}

// Ensure creates or updates every stream and bucket.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c = c.WithDefaults()
	var fanoutKV jetstream.KeyValue
	for _, kc := range c.BucketConfigs() {
		kv, err := js.CreateOrUpdateKeyValue(ctx, kc)
		if err != nil {
			return fmt.Errorf("streams: ensure bucket %s: %w", kc.Bucket, err)
		}
		if kc.Bucket == BucketFanout {
			fanoutKV = kv
		}
	}
	// Before any stream: a changed count must not create stray partitions.
	if err := checkPartitions(ctx, fanoutKV, c.Partitions); err != nil {
		return err
	}
	all := []jetstream.StreamConfig{c.DeadLetterStreamConfig(), c.PushRegStreamConfig()}
	for p := 0; p < c.Partitions; p++ {
		all = append(all, c.ConvStreamConfig(p), c.QueueStreamConfig(p), c.InboxStreamConfig(p))
	}
	for _, sc := range all {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("streams: ensure %s: %w", sc.Name, err)
		}
	}
	return nil
}

// ErrPartitionsChanged means the streams were first made with another
// partition count: ids would move to other partitions, so it is refused.
var ErrPartitionsChanged = errors.New("streams: partition count differs from the one the data was created with")

// checkPartitions records the partition count at first start and refuses
// another one later.
func checkPartitions(ctx context.Context, kv jetstream.KeyValue, n int) error {
	want := strconv.Itoa(n)
	_, err := kv.Create(ctx, partitionsKey, []byte(want))
	if err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	e, err := kv.Get(ctx, partitionsKey)
	if err != nil {
		return fmt.Errorf("streams: read partition count: %w", err)
	}
	if string(e.Value()) != want {
		return fmt.Errorf("%w: data has %s, configured %s", ErrPartitionsChanged, e.Value(), want)
	}
	return nil
}

const partitionsKey = "partitions"

// Handles are the opened streams and buckets, for services to use.
type Handles struct {
	Config     Config
	Layout     subjects.Layout
	Conv       []jetstream.Stream // by partition
	Queue      []jetstream.Stream // by partition
	Inbox      []jetstream.Stream // by partition
	Dead       jetstream.Stream
	Convs      jetstream.KeyValue
	Watermarks jetstream.KeyValue
	Fanout     jetstream.KeyValue
	Presence   jetstream.KeyValue
	Push       jetstream.KeyValue
	UserGroups jetstream.KeyValue
	Workers    jetstream.KeyValue
	// push registrations and mutes (services/pushreg)
	PushReg  jetstream.Stream
	Mutes    jetstream.KeyValue
	PushSent jetstream.KeyValue
}

// ErrNotReady means the streams do not exist yet (nobody ran Ensure).
var ErrNotReady = errors.New("streams: not created yet")

// Open looks up every stream and bucket; it does not create them. A
// partition count other than the one the data was created with is refused
// (ErrPartitionsChanged), as Ensure refuses it.
func Open(ctx context.Context, js jetstream.JetStream, c Config) (*Handles, error) {
	c = c.WithDefaults()
	h := &Handles{Config: c, Layout: c.Layout()}
	var err error
	if h.Fanout, err = js.KeyValue(ctx, BucketFanout); err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrNotReady, BucketFanout, err)
	}
	if err := readPartitions(ctx, h.Fanout, c.Partitions); err != nil {
		return nil, err
	}
	for p := 0; p < c.Partitions; p++ {
		cs, err := js.Stream(ctx, ConvStream(p))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, ConvStream(p), err)
		}
		qs, err := js.Stream(ctx, QueueStream(p))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, QueueStream(p), err)
		}
		is, err := js.Stream(ctx, InboxStream(p))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, InboxStream(p), err)
		}
		h.Conv = append(h.Conv, cs)
		h.Queue = append(h.Queue, qs)
		h.Inbox = append(h.Inbox, is)
	}
	if h.Dead, err = js.Stream(ctx, DeadLetterStream); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, DeadLetterStream, err)
	}
	if h.Convs, err = js.KeyValue(ctx, BucketConvs); err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrNotReady, BucketConvs, err)
	}
	if h.Watermarks, err = js.KeyValue(ctx, BucketWatermarks); err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrNotReady, BucketWatermarks, err)
	}
	if h.Presence, err = js.KeyValue(ctx, BucketPresence); err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrNotReady, BucketPresence, err)
	}
	if h.Push, err = js.KeyValue(ctx, BucketPush); err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrNotReady, BucketPush, err)
	}
	if h.UserGroups, err = js.KeyValue(ctx, BucketUserGroups); err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrNotReady, BucketUserGroups, err)
	}
	if h.Workers, err = js.KeyValue(ctx, BucketWorkers); err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrNotReady, BucketWorkers, err)
	}
	if h.PushReg, err = js.Stream(ctx, PushRegStream); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, PushRegStream, err)
	}
	if h.Mutes, err = js.KeyValue(ctx, BucketMutes); err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrNotReady, BucketMutes, err)
	}
	if h.PushSent, err = js.KeyValue(ctx, BucketPushSent); err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrNotReady, BucketPushSent, err)
	}
	return h, nil
}

// readPartitions compares the recorded partition count with n, without
// writing (a role's identity may not write the fan-out bucket's key).
func readPartitions(ctx context.Context, kv jetstream.KeyValue, n int) error {
	e, err := kv.Get(ctx, partitionsKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: no partition count recorded", ErrNotReady)
	}
	if err != nil {
		return fmt.Errorf("streams: read partition count: %w", err)
	}
	if want := strconv.Itoa(n); string(e.Value()) != want {
		return fmt.Errorf("%w: data has %s, configured %s", ErrPartitionsChanged, e.Value(), want)
	}
	return nil
}

// ConvStreamOf is the stream holding conv.
func (h *Handles) ConvStreamOf(conv string) jetstream.Stream {
	return h.Conv[h.Layout.ConvPartition(conv)]
}

// QueueStreamOf is the stream holding user's queue.
func (h *Handles) QueueStreamOf(user string) jetstream.Stream {
	return h.Queue[h.Layout.UserPartition(user)]
}

// WatermarkKey is the key of user's watermarks in conv.
func WatermarkKey(conv, user string) string { return conv + "." + user }

// FanoutCheckpointKey is the key of the fan-out checkpoint of conversation stream p.
func FanoutCheckpointKey(p int) string { return "conv_" + strconv.Itoa(p) }

// PushSentKey is the key of user's push record of conv in BucketPushSent.
func PushSentKey(user, conv string) string { return user + "." + conv }
