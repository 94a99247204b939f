package pushreg_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"messenger/infra/natsauth"
	"messenger/infra/platformtest"
	"messenger/services/push"
	"messenger/services/pushreg"
	"messenger/streams"
	"messenger/subjects"
)

// store is a Store on the edge's NATS identity (the permissions it needs).
func store(t *testing.T, p *platformtest.Platform, max int) (*pushreg.Store, *streams.Handles) {
	t.Helper()
	nc := p.RoleConn(natsauth.RoleEdge)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := streams.Open(ctx, js, p.Conf)
	if err != nil {
		t.Fatal(err)
	}
	return pushreg.New(js, nc, h, nil, zaptest.NewLogger(t), pushreg.Config{MaxDevices: max}), h
}

// events are the stored events of subject, oldest first.
func events(t *testing.T, p *platformtest.Platform, subject string) []pushreg.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, _, err := streams.ReadAfter(ctx, p.Conn(), streams.PushRegStream, subject, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []pushreg.Event
	for _, m := range msgs {
		var ev pushreg.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func webpush(endpoint string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"endpoint":%q,"keys":{"p256dh":"k","auth":"a"},"extra":1}`, endpoint))
}

// A registration is an event first, then a key of KV push; Devices reads
// it back; Remove stores an unregister event and removes the key; the same
// device again answers its id; the oldest makes room beyond the cap.
func TestRegisterRemoveAndCap(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true})
	s, _ := store(t, p, 3)
	ctx := context.Background()

	id, existed, err := s.Register(ctx, "ann", pushreg.Registration{Platform: push.FCM, Token: "tok-1"})
	if err != nil || existed || id == "" {
		t.Fatalf("register: %q %v %v", id, existed, err)
	}
	evs := events(t, p, subjects.PushRegDevice("ann", id))
	if len(evs) != 1 || evs[0].Type != pushreg.TypeRegister || evs[0].Token != "tok-1" || evs[0].Platform != push.FCM || evs[0].V != 1 || evs[0].TS == 0 {
		t.Fatalf("register event: %+v", evs)
	}
	again, existed, err := s.Register(ctx, "ann", pushreg.Registration{Platform: push.FCM, Token: "tok-1"})
	if err != nil || !existed || again != id {
		t.Fatalf("the same device again: %q %v %v, want %q", again, existed, err, id)
	}
	wid, _, err := s.Register(ctx, "ann", pushreg.Registration{Platform: push.WebPush, Subscription: webpush("https://push.example.com/x")})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := s.Devices(ctx, "ann")
	if err != nil || len(devs) != 2 {
		t.Fatalf("devices: %+v %v", devs, err)
	}
	if devs[0].ID != id || devs[0].Token != "tok-1" || devs[1].ID != wid || devs[1].Subscription == nil ||
		devs[1].Subscription.Endpoint != "https://push.example.com/x" || devs[1].Subscription.Keys.Auth != "a" || devs[1].User != "ann" {
		t.Fatalf("devices: %+v", devs)
	}
	if other, _ := s.Devices(ctx, "bob"); len(other) != 0 {
		t.Fatalf("another user's devices: %+v", other)
	}

	// Beyond the cap of 3 the oldest (id) makes room, with an event.
	s.Register(ctx, "ann", pushreg.Registration{Platform: push.APNs, Token: "a-1"})
	newest, _, err := s.Register(ctx, "ann", pushreg.Registration{Platform: push.APNs, Token: "a-2"})
	if err != nil {
		t.Fatal(err)
	}
	regs, _ := s.Registrations(ctx, "ann")
	if len(regs) != 3 || regs[0].ID != wid || regs[2].ID != newest {
		t.Fatalf("after the cap: %+v", regs)
	}
	if evs := events(t, p, subjects.PushRegDevice("ann", id)); len(evs) != 2 || evs[1].Type != pushreg.TypeUnregister || evs[1].Reason != pushreg.ReasonEvicted {
		t.Fatalf("eviction event: %+v", evs)
	}

	if err := s.Remove(ctx, "ann", wid, pushreg.ReasonGone); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "ann", wid, pushreg.ReasonGone); !errors.Is(err, pushreg.ErrNotFound) {
		t.Fatalf("removed twice: %v", err)
	}
	if err := s.Remove(ctx, "bob", newest, pushreg.ReasonUser); !errors.Is(err, pushreg.ErrNotFound) {
		t.Fatalf("another user's registration: %v", err)
	}
	if evs := events(t, p, subjects.PushRegDevice("ann", wid)); len(evs) != 2 || evs[1].Reason != pushreg.ReasonGone {
		t.Fatalf("remove event: %+v", evs)
	}
	if devs, _ := s.Devices(ctx, "ann"); len(devs) != 2 {
		t.Fatalf("after remove: %+v", devs)
	}
}

// Bad input is ErrInvalid and stores nothing.
func TestRegisterRefusesBadInput(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true})
	s, h := store(t, p, 5)
	ctx := context.Background()
	for _, r := range []pushreg.Registration{
		{Platform: "sms", Token: "x"},
		{Platform: push.APNs},
		{Platform: push.WebPush, Token: "x"},
		{Platform: push.WebPush, Subscription: webpush("http://push.example.com/x")},
		{Platform: push.WebPush, Subscription: webpush("https://127.0.0.1/x")},
		{Platform: push.WebPush, Subscription: json.RawMessage(`"not an object"`)},
	} {
		if _, _, err := s.Register(ctx, "ann", r); !errors.Is(err, pushreg.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", r, err)
		}
	}
	if _, _, err := s.Register(ctx, "not a user", pushreg.Registration{Platform: push.FCM, Token: "x"}); !errors.Is(err, pushreg.ErrInvalid) {
		t.Errorf("bad user: %v", err)
	}
	if err := s.Mute(ctx, "ann", "c1", time.Now().Add(-time.Minute).UnixMilli()); !errors.Is(err, pushreg.ErrInvalid) {
		t.Errorf("mute until the past: %v", err)
	}
	if err := s.Mute(ctx, "ann", "c1", -5); !errors.Is(err, pushreg.ErrInvalid) {
		t.Errorf("mute until -5: %v", err)
	}
	info, err := h.PushReg.Info(ctx)
	if err != nil || info.State.Msgs != 0 {
		t.Fatalf("events stored for bad input: %+v %v", info.State, err)
	}
}

// A mute holds until its time or for ever; unmute ends it; two users'
// mutes are apart.
func TestMute(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true})
	s, _ := store(t, p, 5)
	ctx := context.Background()
	now := time.Now()
	muted := func(user, conv string, at time.Time) bool {
		t.Helper()
		m, err := s.Muted(ctx, user, conv, at)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if muted("ann", "c1", now) {
		t.Fatal("muted before any mute")
	}
	until := now.Add(time.Hour).UnixMilli()
	if err := s.Mute(ctx, "ann", "c1", until); err != nil {
		t.Fatal(err)
	}
	if !muted("ann", "c1", now) || muted("ann", "c1", now.Add(2*time.Hour)) || muted("bob", "c1", now) || muted("ann", "c2", now) {
		t.Fatal("a mute for an hour")
	}
	if err := s.Mute(ctx, "ann", "c1", 0); err != nil {
		t.Fatal(err)
	}
	if !muted("ann", "c1", now.Add(1000*time.Hour)) {
		t.Fatal("a mute for ever ended")
	}
	if err := s.Unmute(ctx, "ann", "c1"); err != nil {
		t.Fatal(err)
	}
	if muted("ann", "c1", now) {
		t.Fatal("muted after unmute")
	}
	evs := events(t, p, subjects.PushRegMute("ann", "c1"))
	if len(evs) != 3 || evs[0].Type != pushreg.TypeMute || evs[0].Until != until || evs[1].Until != 0 || evs[2].Type != pushreg.TypeUnmute || evs[2].Conv != "c1" {
		t.Fatalf("mute events: %+v", evs)
	}
}

// Rebuild from the stream gives the same buckets: registrations put and
// removed, mutes as they were.
func TestRebuildGivesTheSameBuckets(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true})
	s, _ := store(t, p, 3)
	ctx := context.Background()
	users := []string{"ann", "bob", "cy"}
	for i, u := range users {
		for d := 0; d < 4; d++ { // one evicted each
			if _, _, err := s.Register(ctx, u, pushreg.Registration{Platform: push.APNs, Token: fmt.Sprint(u, d)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := s.Register(ctx, u, pushreg.Registration{Platform: push.WebPush, Subscription: webpush(fmt.Sprintf("https://push%d.example.com/x", i))}); err != nil {
			t.Fatal(err)
		}
		regs, _ := s.Registrations(ctx, u)
		if err := s.Remove(ctx, u, regs[1].ID, pushreg.ReasonUser); err != nil {
			t.Fatal(err)
		}
		if err := s.Mute(ctx, u, "c1", 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Mute(ctx, u, "c2", time.Now().Add(time.Hour).UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	s.Unmute(ctx, "bob", "c1")
	type snapshot struct {
		Regs  map[string][]pushreg.Registration
		Mutes map[string]pushreg.MuteState
	}
	snap := func() snapshot {
		t.Helper()
		sn := snapshot{map[string][]pushreg.Registration{}, map[string]pushreg.MuteState{}}
		for _, u := range users {
			regs, err := s.Registrations(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			sn.Regs[u] = regs
			for _, c := range []string{"c1", "c2", "c3"} {
				m, found, err := s.MuteOf(ctx, u, c)
				if err != nil {
					t.Fatal(err)
				}
				if found {
					sn.Mutes[u+"/"+c] = m
				}
			}
		}
		return sn
	}
	before := snap()
	if len(before.Regs["ann"]) != 2 || len(before.Mutes) != 6 {
		t.Fatalf("before: %+v", before)
	}
	// Wipe the read models (as the admin: the buckets made again).
	admin, err := jetstream.New(p.Conn())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{streams.BucketPush, streams.BucketMutes} {
		if err := admin.DeleteKeyValue(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := streams.Ensure(ctx, admin, p.Conf); err != nil {
		t.Fatal(err)
	}
	if wiped := snap(); len(wiped.Regs["ann"])+len(wiped.Mutes) != 0 {
		t.Fatalf("not wiped: %+v", wiped)
	}
	rep, err := s.Rebuild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Registrations != 6 || rep.Mutes != 6 || rep.Unreadable != 0 {
		t.Fatalf("rebuild: %+v", rep)
	}
	if after := snap(); !reflect.DeepEqual(before, after) {
		t.Fatalf("rebuilt buckets differ:\nbefore %+v\nafter  %+v", before, after)
	}
	// Again: nothing changes.
	if _, err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if after := snap(); !reflect.DeepEqual(before, after) {
		t.Fatalf("second rebuild changed the buckets:\nbefore %+v\nafter  %+v", before, after)
	}
}

// A registration stored in KV push before the events existed is adopted by
// Rebuild (a register event stored), so that a later rebuild brings it
// back.
func TestRebuildAdoptsRegistrationsWithoutEvents(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true})
	s, _ := store(t, p, 5)
	ctx := context.Background()
	admin, err := jetstream.New(p.Conn())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := admin.KeyValue(ctx, streams.BucketPush)
	if err != nil {
		t.Fatal(err)
	}
	legacy := pushreg.Registration{ID: "sOldRegistration1", Platform: push.FCM, Token: "old-token", Created: 1700000000000}
	val, _ := json.Marshal(legacy)
	if _, err := kv.Put(ctx, streams.PushKey("olga", legacy.ID), val); err != nil {
		t.Fatal(err)
	}
	// One registered and removed the legacy way too: not adopted.
	gone := pushreg.Registration{ID: "sOldRegistration2", Platform: push.APNs, Token: "t", Created: 1700000000001}
	val, _ = json.Marshal(gone)
	kv.Put(ctx, streams.PushKey("olga", gone.ID), val)
	kv.Purge(ctx, streams.PushKey("olga", gone.ID))
	newID, _, err := s.Register(ctx, "olga", pushreg.Registration{Platform: push.FCM, Token: "new-token"})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Rebuild(ctx)
	if err != nil || rep.Adopted != 1 || rep.Registrations != 2 {
		t.Fatalf("rebuild: %+v %v", rep, err)
	}
	evs := events(t, p, subjects.PushRegDevice("olga", legacy.ID))
	if len(evs) != 1 || evs[0].Type != pushreg.TypeRegister || evs[0].Token != "old-token" || evs[0].TS != legacy.Created {
		t.Fatalf("adopted event: %+v", evs)
	}
	before, _ := s.Registrations(ctx, "olga")
	if len(before) != 2 || before[0].ID != legacy.ID || before[1].ID != newID {
		t.Fatalf("registrations: %+v", before)
	}
	if err := admin.DeleteKeyValue(ctx, streams.BucketPush); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, admin, p.Conf); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Rebuild(ctx); err != nil || rep.Adopted != 0 {
		t.Fatalf("second rebuild: %+v %v", rep, err)
	}
	if after, _ := s.Registrations(ctx, "olga"); !reflect.DeepEqual(before, after) {
		t.Fatalf("after a wipe and rebuild: %+v, want %+v", after, before)
	}
}

// A removed registration's purge marker expires (Nats-TTL): markers kept
// for good would crowd a user's live registrations out of the read.
func TestRemovedRegistrationMarkerExpires(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true})
	s, _ := store(t, p, 5)
	ctx := context.Background()
	id, _, err := s.Register(ctx, "max", pushreg.Registration{Platform: push.FCM, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "max", id, pushreg.ReasonUser); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := streams.ReadAfter(ctx, p.Conn(), subjects.KVStream(streams.BucketPush), subjects.KVKey(streams.BucketPush, streams.PushKey("max", id)), 0, 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("the key's messages: %d %v", len(msgs), err)
	}
	if h := msgs[0].Header; h.Get("KV-Operation") != "PURGE" || h.Get("Nats-TTL") == "" {
		t.Fatalf("purge marker headers: %v", h)
	}
}
