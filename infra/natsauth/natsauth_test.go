package natsauth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/natsauth"
	"messenger/infra/natsserver"
	"messenger/streams"
	"messenger/subjects"
)

// server starts an embedded server with the users of a fresh credentials
// directory and the streams made by the admin identity.
func startServer(t *testing.T) (url, dir string, admin *nats.Conn) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(dir); err != nil {
		t.Fatal(err)
	}
	users, err := natsauth.LoadUsers(filepath.Join(dir, natsauth.UsersFile))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	admin, _ = connect(t, ns.ClientURL(), dir, natsauth.RoleAdmin)
	js, _ := jetstream.New(admin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	return ns.ClientURL(), dir, admin
}

// violations collects the permission errors the server reports to a
// connection (asynchronously, as -ERR).
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		v.mu.Lock()
		v.errs = append(v.errs, err.Error())
		v.mu.Unlock()
	}
}

// waitFor waits until a violation mentioning subject was reported.
func (v *violations) waitFor(t *testing.T, subject string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		v.mu.Lock()
		for _, e := range v.errs {
			if strings.Contains(e, `"`+subject+`"`) {
				v.mu.Unlock()
				return
			}
		}
		v.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no permission violation reported for %q (got %v)", subject, v.errs)
}

func connect(t *testing.T, url, dir, role string) (*nats.Conn, *violations) {
	t.Helper()
	v := &violations{}
	opts, err := natsauth.ClientOptions(role, natsauth.SeedFile(dir, role))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append(opts, nats.ErrorHandler(v.handler))...)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc, v
}

// Attack: a plain NATS client on the server's port, with no credentials,
// read and forged everything. It is refused now.
func TestClientWithoutCredentialsIsRefused(t *testing.T) {
	url, dir, _ := startServer(t)
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was accepted")
	} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("want an authorization error, got %v", err)
	}
	// A seed the server does not know is refused too.
	other := filepath.Join(t.TempDir(), "other")
	if err := natsauth.Generate(other); err != nil {
		t.Fatal(err)
	}
	opts, _ := natsauth.ClientOptions(natsauth.RoleEdge, natsauth.SeedFile(other, natsauth.RoleEdge))
	if nc, err := nats.Connect(url, opts...); err == nil {
		nc.Close()
		t.Fatal("an unknown key was accepted")
	}
	_ = dir
}

// lastOf reads the last message of subject through the admin identity, or nil.
func lastOf(t *testing.T, admin *nats.Conn, stream, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	js, _ := jetstream.New(admin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Attack: anyone on the NATS port wrote users' queues, pushed frames and
// listened to everything. An edge identity cannot write a queue (uq.*),
// a conversation summary, the fan-out's state or watermarks, cannot
// subscribe to ">" or to $SYS, nor read another role's replies.
func TestEdgeIdentityIsBounded(t *testing.T) {
	url, dir, admin := startServer(t)
	nc, v := connect(t, url, dir, natsauth.RoleEdge)
	l := subjects.Layout{Partitions: 4}

	for _, subj := range []string{
		l.Queue("alice"), l.Inbox("alice", "c1"), subjects.KVKey(streams.BucketWatermarks, "c1.alice"),
		subjects.KVKey(streams.BucketFanout, "conv_0"), subjects.KVKey(streams.BucketPresence, "alice"),
		l.PresenceChanges("alice"), "$SYS.REQ.SERVER.PING", subjects.DeadLetters("x"),
		"$JS.API.STREAM.DELETE." + streams.ConvStream(0), "$JS.API.STREAM.PURGE." + streams.QueueStream(0),
	} {
		if err := nc.Publish(subj, []byte(`{"type":"msg","from":"bob","text":"forged"}`)); err != nil {
			t.Fatal(err)
		}
		v.waitFor(t, subj)
	}
	if m := lastOf(t, admin, streams.QueueStream(l.UserPartition("alice")), l.Queue("alice")); m != nil {
		t.Fatalf("the edge wrote alice's queue: %s", m.Data)
	}
	for _, subj := range []string{">", "$SYS.>", l.Queue("alice"), "conv.>", subjects.RoleInboxPrefix(natsauth.RoleFanout) + ".>", "_INBOX.>"} {
		if _, err := nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		v.waitFor(t, subj)
	}
	// What it needs still works: a send is stored.
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, l.ConvEvents("c1"), []byte(`{}`)); err != nil {
		t.Fatalf("edge publish on its conversation subject: %v", err)
	}
}

// Attack: a raw publish forged a "msg from bob" on conv.<p>.<conv>. Only
// the edge identity may store conversation events; the fan-out, presence,
// projector and read-only identities cannot, and only edges and fan-outs
// may publish on a user's live subject.
func TestOnlyEdgesWriteConversations(t *testing.T) {
	url, dir, admin := startServer(t)
	l := subjects.Layout{Partitions: 4}
	for _, role := range []string{natsauth.RoleFanout, natsauth.RolePresence, natsauth.RoleProjector, natsauth.RoleReadOnly} {
		nc, v := connect(t, url, dir, role)
		forged := []string{l.ConvEvents("c2"), l.Receipts("c2")}
		if role != natsauth.RoleFanout { // the fan-out announces queue entries live
			forged = append(forged, l.Live("alice"))
		}
		for _, subj := range forged {
			_ = nc.Publish(subj, []byte(`{"type":"msg","from":"bob","text":"forged"}`))
			v.waitFor(t, subj)
		}
	}
	if m := lastOf(t, admin, streams.ConvStream(l.ConvPartition("c2")), l.ConvEvents("c2")); m != nil {
		t.Fatalf("a forged event was stored: %s", m.Data)
	}
}

// The read-only identity (internal services, the nats command line) reads
// the conversation streams and buckets, and makes its own consumers, but
// publishes nothing and cannot touch the projector's consumer.
func TestReadOnlyIdentityReadsButCannotWrite(t *testing.T) {
	url, dir, admin := startServer(t)
	l := subjects.Layout{Partitions: 4}
	ajs, _ := jetstream.New(admin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ajs.Publish(ctx, l.ConvEvents("c3"), []byte(`{"text":"hello"}`)); err != nil {
		t.Fatal(err)
	}

	nc, v := connect(t, url, dir, natsauth.RoleReadOnly)
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, streams.ConvStream(l.ConvPartition("c3")))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	m, err := s.GetLastMsgForSubject(ctx, l.ConvEvents("c3"))
	if err != nil || string(m.Data) != `{"text":"hello"}` {
		t.Fatalf("read the conversation: %v %v", m, err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("own consumer: %v", err)
	}
	got, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil || string(got.Data()) != `{"text":"hello"}` {
		t.Fatalf("read through its consumer: %v", err)
	}
	kv, err := js.KeyValue(ctx, streams.BucketFanout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "partitions"); err != nil {
		t.Fatalf("KV get: %v", err)
	}
	if _, err := kv.Put(ctx, "partitions", []byte("9")); err == nil {
		t.Fatal("the read-only identity wrote a bucket")
	}
	v.waitFor(t, subjects.KVKey(streams.BucketFanout, "partitions"))
	if _, err := js.Publish(ctx, l.ConvEvents("c3"), []byte("forged")); err == nil {
		t.Fatal("the read-only identity stored an event")
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: streams.ProjectorDurable}); err == nil {
		t.Fatal("the read-only identity made the projector's consumer")
	}
	if err := js.DeleteStream(ctx, streams.ConvStream(0)); err == nil {
		t.Fatal("the read-only identity deleted a stream")
	}
	if _, err := nc.SubscribeSync(l.Live("alice")); err != nil {
		t.Fatal(err)
	}
	v.waitFor(t, l.Live("alice"))
}

func TestGenerateKeepsSeedsAndWritesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(dir); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(natsauth.SeedFile(dir, natsauth.RoleEdge))
	if err := natsauth.Generate(dir); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(natsauth.SeedFile(dir, natsauth.RoleEdge))
	if string(before) != string(after) || len(before) == 0 {
		t.Fatal("a second run changed the edge's seed")
	}
	for _, role := range natsauth.Roles {
		st, err := os.Stat(natsauth.SeedFile(dir, role))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("seed of %s: %v %v", role, st.Mode(), err)
		}
	}
	if _, err := natsauth.LoadUsers(filepath.Join(dir, natsauth.UsersFile)); err != nil {
		t.Fatal(err)
	}
	// The configuration for a nats-server cluster is one nats-server reads,
	// with each role's permissions.
	opts, err := server.ProcessConfigFile(filepath.Join(dir, natsauth.ServerConfFile))
	if err != nil {
		t.Fatalf("nats-server.conf: %v", err)
	}
	if len(opts.Nkeys) != len(natsauth.Roles) {
		t.Fatalf("nats-server.conf has %d users, want %d", len(opts.Nkeys), len(natsauth.Roles))
	}
	want, _ := natsauth.ServerPermissions(natsauth.RoleReadOnly)
	for _, u := range opts.Nkeys {
		if u.Permissions == nil || u.Permissions.Publish == nil || len(u.Permissions.Publish.Allow) == 0 {
			t.Fatalf("user %s without permissions in nats-server.conf", u.Nkey)
		}
		if u.Permissions.Response != nil && *u.Permissions.Response != *want.Response {
			t.Fatalf("responses: %+v, want %+v", u.Permissions.Response, want.Response)
		}
	}
	if _, err := natsauth.RolePerms("root"); err == nil {
		t.Fatal("an unknown role has permissions")
	}
}

// A listener other hosts can reach, with no users, is refused at start.
func TestOpenListenerWithoutAuthIsRefused(t *testing.T) {
	_, err := natsserver.Start(natsserver.Config{Listen: "0.0.0.0:-1", DataDir: t.TempDir()})
	if !errors.Is(err, natsserver.ErrOpenListener) {
		t.Fatalf("want ErrOpenListener, got %v", err)
	}
}
