package subjects

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Subject prefixes: the first token of each subject family.
const (
	ConvPrefix    = "conv"
	ReceiptPrefix = "rcpt"
	QueuePrefix   = "uq"
	LivePrefix    = "live"
)

// ErrBadSubject is returned by the parsers for a subject outside the grammar.
var ErrBadSubject = errors.New("subjects: not a known subject")

// Partition returns the logical partition of id among n partitions, the same
// value as the NATS server's {{partition(n,1)}} mapping of a token equal to id.
func Partition(id string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// Layout binds the grammar to a partition count.
type Layout struct {
	// Partitions is the number of logical partitions (and streams of each kind).
	Partitions int
}

func (l Layout) part(id string) string { return strconv.Itoa(Partition(id, l.Partitions)) }

// ConvPartition is the partition of a conversation.
func (l Layout) ConvPartition(conv string) int { return Partition(conv, l.Partitions) }

// UserPartition is the partition of a user's queue.
func (l Layout) UserPartition(user string) int { return Partition(user, l.Partitions) }

// ConvEvents is the subject of the stored events of conv.
func (l Layout) ConvEvents(conv string) string { return ConvPrefix + "." + l.part(conv) + "." + conv }

// Receipts is the subject of the receipts of conv.
func (l Layout) Receipts(conv string) string { return ReceiptPrefix + "." + l.part(conv) + "." + conv }

// Queue is the subject of user's queue of stored events.
func (l Layout) Queue(user string) string { return QueuePrefix + "." + l.part(user) + "." + user }

// Live is the core-NATS subject on which the queue entries of user are
// announced to the edges that hold one of its connections.
func (l Layout) Live(user string) string { return LivePrefix + "." + l.part(user) + "." + user }

// ConvEventsFilter matches every conversation event of partition p.
func ConvEventsFilter(p int) string { return ConvPrefix + "." + strconv.Itoa(p) + ".*" }

// ReceiptsFilter matches every receipt of partition p.
func ReceiptsFilter(p int) string { return ReceiptPrefix + "." + strconv.Itoa(p) + ".*" }

// QueueFilter matches every user queue of partition p.
func QueueFilter(p int) string { return QueuePrefix + "." + strconv.Itoa(p) + ".*" }

// Prefixes of the presence subjects that Parse takes apart.
const (
	PresenceEventsPrefix  = "pres.evt"
	PresenceChangesPrefix = "pres.chg"
)

// Parsed is a subject taken apart.
type Parsed struct {
	Prefix    string // one of the *Prefix constants
	Partition int
	ID        string // conversation or user id
}

// Parse takes a subject of the grammar apart.
func Parse(subject string) (Parsed, error) {
	parts := strings.Split(subject, ".")
	if len(parts) == 4 && parts[0] == PresencePrefix {
		p, err := strconv.Atoi(parts[2])
		if err != nil || p < 0 || parts[3] == "" {
			return Parsed{}, fmt.Errorf("%w: %q", ErrBadSubject, subject)
		}
		return Parsed{Prefix: parts[0] + "." + parts[1], Partition: p, ID: parts[3]}, nil
	}
	if len(parts) != 3 {
		return Parsed{}, fmt.Errorf("%w: %q", ErrBadSubject, subject)
	}
	switch parts[0] {
	case ConvPrefix, ReceiptPrefix, QueuePrefix, LivePrefix:
	default:
		return Parsed{}, fmt.Errorf("%w: %q", ErrBadSubject, subject)
	}
	p, err := strconv.Atoi(parts[1])
	if err != nil || p < 0 || parts[2] == "" {
		return Parsed{}, fmt.Errorf("%w: %q", ErrBadSubject, subject)
	}
	return Parsed{Prefix: parts[0], Partition: p, ID: parts[2]}, nil
}

// DeadLetterPrefix is the first token of dead-letter subjects.
const DeadLetterPrefix = "dead"

// DeadLetters is the subject of the events a component gave up on.
func DeadLetters(component string) string { return DeadLetterPrefix + "." + component }

// DeadLettersFilter matches every dead letter.
func DeadLettersFilter() string { return DeadLetterPrefix + ".>" }

// InboxPrefix is the first token of conversation-list subjects.
const InboxPrefix = "inbox"

// Inbox is the subject of user's summary of conv in the conversation list;
// it lives in the user's partition.
func (l Layout) Inbox(user, conv string) string {
	return InboxPrefix + "." + l.part(user) + "." + user + "." + conv
}

// InboxOf matches every conversation summary of user.
func (l Layout) InboxOf(user string) string {
	return InboxPrefix + "." + l.part(user) + "." + user + ".*"
}

// InboxFilter matches every summary of partition p.
func InboxFilter(p int) string { return InboxPrefix + "." + strconv.Itoa(p) + ".*.*" }

// Presence subjects (core NATS, nothing stored): edges report connections
// and heartbeats to the presence service, which tells changes on the
// user's change subject, heard only by the edges holding a watcher of it.
const (
	PresencePrefix = "pres"
	// PresenceResync asks every edge to report all of its users now.
	PresenceResync = "pres.resync"
	// PresenceEventsAll matches every connection report.
	PresenceEventsAll = "pres.evt.>"
	// PresenceHeartbeatsAll matches every edge heartbeat.
	PresenceHeartbeatsAll = "pres.hb.*"
	// PresenceSyncsAll matches every edge's full report.
	PresenceSyncsAll = "pres.sync.*"
)

// PresenceEvents is where an edge reports a user's first connection or
// last disconnection on it.
func (l Layout) PresenceEvents(user string) string { return "pres.evt." + l.part(user) + "." + user }

// PresenceChanges is where the presence service tells a change of user.
func (l Layout) PresenceChanges(user string) string { return "pres.chg." + l.part(user) + "." + user }

// PresenceHeartbeat is edge's liveness beat.
func PresenceHeartbeat(edge string) string { return "pres.hb." + edge }

// PresenceSync is where edge reports every user it holds.
func PresenceSync(edge string) string { return "pres.sync." + edge }

// FanoutFlush is where an edge asks the fan-outs, before it reads a user's
// conversation summaries or a conversation's watermarks, to store that
// user's summaries and every watermark still in memory (core NATS request;
// the body is the user id, the answer empty).
const FanoutFlush = "fanout.flush"

// KVKey is the stream subject of key in a key-value bucket (for batch reads).
func KVKey(bucket, key string) string { return "$KV." + bucket + "." + key }

// KVStream is the stream behind a key-value bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// DirectGet is the JetStream API subject for direct (batch) gets on stream.
func DirectGet(stream string) string { return "$JS.API.DIRECT.GET." + stream }
