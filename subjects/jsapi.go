package subjects

// Subjects of the NATS and JetStream APIs, for the permission sets of the
// platform's NATS identities (infra/natsauth). Wildcards follow the NATS
// rules: "*" matches one token, ">" the rest.

// All matches every subject.
const All = ">"

// SystemAll matches the server's system subjects ($SYS), which no role of
// the platform uses.
const SystemAll = "$SYS.>"

// JetStream API subjects (nats-server's JSApi* constants) used by the roles.
const (
	jsAPI = "$JS.API."
	// JSAPIAll matches every JetStream API call.
	JSAPIAll = jsAPI + ">"
	// JSAccountInfo is the account information call.
	JSAccountInfo = jsAPI + "INFO"
	// JSStreamInfoAll matches the information call of every stream (what
	// streams.Open and js.KeyValue make).
	JSStreamInfoAll = jsAPI + "STREAM.INFO.*"
	// JSStreamNames and JSStreamList list the streams.
	JSStreamNames = jsAPI + "STREAM.NAMES"
	JSStreamList  = jsAPI + "STREAM.LIST"
	// JSStreamMsgGetAll matches the (non-direct) message get of every stream.
	JSStreamMsgGetAll = jsAPI + "STREAM.MSG.GET.*"
	// JSDirectGetAll matches every direct get, by sequence or by last
	// subject, of every stream (KV gets included).
	JSDirectGetAll = jsAPI + "DIRECT.GET.>"
	// JSConsumerListAll and JSConsumerNamesAll list the consumers of any stream.
	JSConsumerListAll  = jsAPI + "CONSUMER.LIST.*"
	JSConsumerNamesAll = jsAPI + "CONSUMER.NAMES.*"
	// JSEphemeralCreateAll matches the creation of an unnamed consumer on
	// any stream (the older API some tools still use).
	JSEphemeralCreateAll = jsAPI + "CONSUMER.CREATE.*"
)

// JSStreamMsgDelete is the call that deletes one message of stream.
func JSStreamMsgDelete(stream string) string { return jsAPI + "STREAM.MSG.DELETE." + stream }

// JSConsumerCreate is the call that creates or updates consumer on stream;
// "*" for either is a wildcard. A consumer with a filter subject is created
// on JSConsumerCreate(...) + ".<filter>": see JSConsumerCreateFiltered.
func JSConsumerCreate(stream, consumer string) string {
	return jsAPI + "CONSUMER.CREATE." + stream + "." + consumer
}

// JSConsumerCreateFiltered matches the creation of consumer on stream with
// any filter subject.
func JSConsumerCreateFiltered(stream, consumer string) string {
	return JSConsumerCreate(stream, consumer) + ".>"
}

// JSConsumerDurableCreate is the older call that creates a durable consumer.
func JSConsumerDurableCreate(stream, consumer string) string {
	return jsAPI + "CONSUMER.DURABLE.CREATE." + stream + "." + consumer
}

// JSConsumerInfo is the information call of consumer on stream.
func JSConsumerInfo(stream, consumer string) string {
	return jsAPI + "CONSUMER.INFO." + stream + "." + consumer
}

// JSConsumerDelete deletes consumer on stream.
func JSConsumerDelete(stream, consumer string) string {
	return jsAPI + "CONSUMER.DELETE." + stream + "." + consumer
}

// JSConsumerNext is the pull request of consumer on stream.
func JSConsumerNext(stream, consumer string) string {
	return jsAPI + "CONSUMER.MSG.NEXT." + stream + "." + consumer
}

// JSAck matches the acknowledgements of consumer on stream (the reply
// subjects of its messages).
func JSAck(stream, consumer string) string { return "$JS.ACK." + stream + "." + consumer + ".>" }

// KVAll matches every key of bucket, for writes (put, create, update,
// delete, purge are publishes on the key's subject).
func KVAll(bucket string) string { return KVKey(bucket, ">") }

// InboxAll matches every reply subject under an inbox prefix.
func InboxAll(prefix string) string { return prefix + ".>" }

// DefaultInboxPrefix is the NATS clients' reply prefix; the roles of the
// platform use RoleInboxPrefix instead, so that an identity allowed
// _INBOX.> (the nats command line) cannot read their replies.
const DefaultInboxPrefix = "_INBOX"

// RoleInboxPrefix is the reply prefix of role's connections: one token, so
// that no role's inbox is under another's or under _INBOX.
func RoleInboxPrefix(role string) string { return "_INBOX_" + role }

// Wildcards over the grammar, for permissions: every partition and id.
var (
	ConvEventsAll      = ConvPrefix + ".*.*"
	ReceiptsAll        = ReceiptPrefix + ".*.*"
	QueueAll           = QueuePrefix + ".*.*"
	LiveAll            = LivePrefix + ".*.*"
	InboxSummariesAll  = InboxPrefix + ".*.*.*"
	PresenceChangesAll = PresenceChangesPrefix + ".*.*"
)
