package edge_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"messenger/client"
	"messenger/infra/platformtest"
	"messenger/services/fanout"
	"messenger/services/presence"
)

const (
	onlineDelay  = 400 * time.Millisecond
	offlineDelay = 800 * time.Millisecond
)

func presencePlatform(t *testing.T, edges int) *platformtest.Platform {
	return platformtest.Start(t, platformtest.Options{
		Edges:    edges,
		Presence: presence.Config{OnlineDelay: onlineDelay, OfflineDelay: offlineDelay, EdgeTimeout: 1500 * time.Millisecond},
		Edge: edgeConfig(func(c *edgeCfg) {
			c.PresenceHeartbeat, c.TypingEvery = 300*time.Millisecond, 500*time.Millisecond
			c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst = 1e4, 1e4, 1e4, 1e4
		}),
	})
}

// befriend makes a and b share a conversation in which both have written
// (so each sees the other's presence, PROTOCOL.md section 7), and waits
// until both lists show it.
func befriend(t *testing.T, p *platformtest.Platform, a, b string) {
	t.Helper()
	var ack map[string]any
	if code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token(a), map[string]any{"id": "hi-" + b, "to": b, "text": "hi"}, &ack); code != 200 {
		t.Fatalf("befriend: %d %v", code, ack)
	}
	if code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token(b), map[string]any{"id": "re-" + a, "to": a, "text": "hello"}, &ack); code != 200 {
		t.Fatalf("befriend: answer: %d %v", code, ack)
	}
	for _, u := range []string{a, b} {
		platformtest.Eventually(t, platformtest.Patience, func() error {
			var l convList
			api(t, "GET", p.HTTP(0)+"/v1/conversations", p.Token(u), nil, &l)
			for _, c := range l.Conversations {
				if c.Conv == ack["conv"] {
					return nil
				}
			}
			return fmt.Errorf("%s does not list the conversation yet", u)
		})
	}
}

// presences returns the presence events received about user.
func (r *recorder) presences(user string) []client.Event {
	var out []client.Event
	for _, e := range r.ofType("presence") {
		if e.User == user {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) waitPresence(t *testing.T, user string, n int) client.Event {
	t.Helper()
	platformtest.Eventually(t, platformtest.Patience, func() error {
		if got := len(r.presences(user)); got < n {
			return fmt.Errorf("%d presence events about %s, want %d", got, user, n)
		}
		return nil
	})
	return r.presences(user)[n-1]
}

func TestPresenceIsToldLateOnPurpose(t *testing.T) {
	p := presencePlatform(t, 2)
	befriend(t, p, "wanda", "ulla")
	w, wrec := dial(t, p, "wanda", []int{0}, dialOpts{})
	if err := w.Watch([]string{"ulla"}); err != nil {
		t.Fatal(err)
	}
	snap := wrec.waitPresence(t, "ulla", 1)
	if snap.Status != "offline" {
		t.Fatalf("snapshot %+v", snap)
	}
	connected := time.Now()
	u, _ := dial(t, p, "ulla", []int{1}, dialOpts{})
	on := wrec.waitPresence(t, "ulla", 2)
	if took := time.Since(connected); on.Status != "online" || took < onlineDelay || took > onlineDelay+time.Second {
		t.Fatalf("online told after %v (delay %v): %+v", took, onlineDelay, on)
	}
	_ = u.Close()
	left := time.Now()
	off := wrec.waitPresence(t, "ulla", 3)
	if took := time.Since(left); off.Status != "offline" || took < offlineDelay || took > offlineDelay+time.Second {
		t.Fatalf("offline told after %v (delay %v): %+v", took, offlineDelay, off)
	}
	if off.LastSeen < left.Add(-time.Second).UnixMilli() || off.LastSeen > time.Now().UnixMilli() {
		t.Fatalf("last_seen %d, left at %d", off.LastSeen, left.UnixMilli())
	}
	// A bulk pull answers as watchers were told: offline with last_seen; the
	// caller sees itself online.
	var pr struct {
		Users []struct {
			User     string `json:"user"`
			Status   string `json:"status"`
			LastSeen int64  `json:"last_seen"`
		} `json:"users"`
	}
	api(t, "GET", p.HTTP(1)+"/v1/presence?users=ulla,wanda", p.Token("wanda"), nil, &pr)
	if len(pr.Users) != 2 || pr.Users[0].Status != "offline" || pr.Users[0].LastSeen != off.LastSeen || pr.Users[1].Status != "online" {
		t.Fatalf("bulk pull: %+v", pr)
	}
}

func TestFlappingTellsNothing(t *testing.T) {
	// Longer delays than the other tests: a flap must stay well inside them
	// even on a loaded machine.
	const onlineDelay, offlineDelay = 1500 * time.Millisecond, 1500 * time.Millisecond
	p := platformtest.Start(t, platformtest.Options{
		Presence: presence.Config{OnlineDelay: onlineDelay, OfflineDelay: offlineDelay, EdgeTimeout: 5 * time.Second},
		Edge: edgeConfig(func(c *edgeCfg) {
			c.PresenceHeartbeat, c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst = 300*time.Millisecond, 1e4, 1e4, 1e4, 1e4
		}),
	})
	befriend(t, p, "vera", "fred")
	v, vrec := dial(t, p, "vera", []int{0}, dialOpts{})
	_ = v.Watch([]string{"fred"})
	vrec.waitPresence(t, "fred", 1)
	// Connections that never last the online delay.
	for i := 0; i < 5; i++ {
		f, _ := dial(t, p, "fred", []int{0}, dialOpts{})
		time.Sleep(onlineDelay / 10)
		_ = f.Close()
	}
	time.Sleep(onlineDelay + offlineDelay + 300*time.Millisecond)
	if n := len(vrec.presences("fred")); n != 1 {
		t.Fatalf("flapping told %d changes: %+v", n-1, vrec.presences("fred"))
	}
	// Online for real, then a reconnect within the offline delay: only "online".
	f, _ := dial(t, p, "fred", []int{0}, dialOpts{})
	vrec.waitPresence(t, "fred", 2)
	_ = f.Close()
	time.Sleep(offlineDelay / 10)
	dial(t, p, "fred", []int{0}, dialOpts{})
	time.Sleep(offlineDelay + 500*time.Millisecond)
	if evs := vrec.presences("fred"); len(evs) != 2 || evs[1].Status != "online" {
		t.Fatalf("reconnect told: %+v", evs)
	}
}

func TestPresenceMultiDevice(t *testing.T) {
	p := presencePlatform(t, 2)
	befriend(t, p, "gail", "hugo")
	g, grec := dial(t, p, "gail", []int{0}, dialOpts{})
	_ = g.Watch([]string{"hugo"})
	phone, _ := dial(t, p, "hugo", []int{0}, dialOpts{device: "phone"})
	laptop, _ := dial(t, p, "hugo", []int{1}, dialOpts{device: "laptop"})
	grec.waitPresence(t, "hugo", 2)
	_ = phone.Close()
	time.Sleep(offlineDelay + 500*time.Millisecond)
	if n := len(grec.presences("hugo")); n != 2 {
		t.Fatalf("one device left: %d events", n)
	}
	_ = laptop.Close()
	if off := grec.waitPresence(t, "hugo", 3); off.Status != "offline" {
		t.Fatalf("%+v", off)
	}
}

// An edge that dies tells nobody anything: its users go offline by the
// presence service's edge timeout.
func TestDeadEdgeTakesItsUsersOffline(t *testing.T) {
	p := presencePlatform(t, 2)
	befriend(t, p, "iris", "jake")
	i, irec := dial(t, p, "iris", []int{0}, dialOpts{})
	_ = i.Watch([]string{"jake"})
	tok := p.Token("jake")
	if _, err := client.Dial(t.Context(), client.Config{URLs: []string{p.WS(1)}, Token: func() (string, error) { return tok, nil }}); err != nil {
		t.Fatal(err)
	}
	irec.waitPresence(t, "jake", 2)
	killed := time.Now()
	p.KillEdge(1)
	off := irec.waitPresence(t, "jake", 3)
	if off.Status != "offline" {
		t.Fatalf("%+v", off)
	}
	t.Logf("offline told %v after the edge died (edge timeout 1.5s + offline delay %v)", time.Since(killed), offlineDelay)
}

func TestPresenceVisibilityAndWatchReplaced(t *testing.T) {
	p := presencePlatform(t, 1)
	befriend(t, p, "kurt", "lola")
	befriend(t, p, "kurt", "mona")
	// "nils" shares nothing with kurt.
	dial(t, p, "nils", []int{0}, dialOpts{})
	k, krec := dial(t, p, "kurt", []int{0}, dialOpts{})
	_ = k.Watch([]string{"lola", "nils"})
	if s := krec.waitPresence(t, "nils", 1); s.Status != "offline" || s.LastSeen != 0 {
		t.Fatalf("a stranger must look offline without last_seen: %+v", s)
	}
	krec.waitPresence(t, "lola", 1)
	time.Sleep(onlineDelay + 300*time.Millisecond) // nils is online by now: kurt hears nothing of it
	if n := len(krec.presences("nils")); n != 1 {
		t.Fatalf("stranger's changes told: %d", n)
	}
	// Replace the list: lola's changes stop, mona's come.
	_ = k.Watch([]string{"mona"})
	krec.waitPresence(t, "mona", 1)
	dial(t, p, "lola", []int{0}, dialOpts{})
	dial(t, p, "mona", []int{0}, dialOpts{})
	krec.waitPresence(t, "mona", 2)
	time.Sleep(300 * time.Millisecond)
	if n := len(krec.presences("lola")); n != 1 {
		t.Fatalf("lola's change reached kurt after the list was replaced: %d events", n)
	}
	// Bad lists.
	var e apiError
	many := strings.Repeat("u,", 500) + "u"
	if code := api(t, "GET", p.HTTP(0)+"/v1/presence?users="+many, p.Token("kurt"), nil, &e); code != 400 {
		t.Fatalf("501 users: %d", code)
	}
	if code := api(t, "GET", p.HTTP(0)+"/v1/presence?users=a%20b", p.Token("kurt"), nil, &e); code != 400 {
		t.Fatalf("bad id: %d", code)
	}
}

func TestTypingReachesOnlineMembersOnlyAndIsCoalesced(t *testing.T) {
	p := presencePlatform(t, 2)
	befriend(t, p, "olga", "paul")
	var conv string
	{
		var l convList
		api(t, "GET", p.HTTP(0)+"/v1/conversations", p.Token("olga"), nil, &l)
		conv = l.Conversations[0].Conv
	}
	o, _ := dial(t, p, "olga", []int{0}, dialOpts{})
	_, prec := dial(t, p, "paul", []int{1}, dialOpts{})
	for i := 0; i < 5; i++ {
		if err := o.Typing(conv); err != nil {
			t.Fatal(err)
		}
	}
	platformtest.Eventually(t, platformtest.Patience, func() error {
		if len(prec.ofType("typing")) == 0 {
			return errors.New("no typing")
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	if ty := prec.ofType("typing"); len(ty) != 1 || ty[0].Conv != conv || ty[0].User != "olga" {
		t.Fatalf("five typing frames at once gave %+v", ty)
	}
	time.Sleep(600 * time.Millisecond)
	var e apiError
	if code := api(t, "POST", p.HTTP(0)+"/v1/typing", p.Token("olga"), map[string]string{"conv": conv}, &e); code != 200 {
		t.Fatalf("POST typing: %d %+v", code, e)
	}
	platformtest.Eventually(t, platformtest.Patience, func() error {
		if len(prec.ofType("typing")) != 2 {
			return errors.New("second typing missing")
		}
		return nil
	})
	// Not a member: forbidden. Typing is never stored: a later connection
	// replaying from the start gets none.
	if code := api(t, "POST", p.HTTP(0)+"/v1/typing", p.Token("quin"), map[string]string{"conv": conv}, &e); code != 403 {
		t.Fatalf("non-member typing: %d", code)
	}
	_, late := dial(t, p, "paul", []int{0}, dialOpts{cursor: "0"})
	late.waitMsgs(t, 1)
	time.Sleep(200 * time.Millisecond)
	if n := len(late.ofType("typing")); n != 0 {
		t.Fatalf("typing replayed: %d", n)
	}
}

// One user's connect costs NATS messages in proportion to its watchers'
// edges, not its contacts: measured with 500 contacts of whom 20 watch it.
func TestConnectCostGrowsWithWatchersNotContacts(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2,
		Presence: presence.Config{OnlineDelay: 300 * time.Millisecond, OfflineDelay: time.Second},
		// The fan-out stores the fans' summaries within 200 ms, long before
		// the measured connects.
		Fanout: fanout.Config{CheckpointEvery: 200 * time.Millisecond},
		Edge: edgeConfig(func(c *edgeCfg) {
			c.PresenceHeartbeat, c.PresenceSync = time.Hour, time.Hour
			c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst = 1e5, 1e5, 1e5, 1e5
		}),
	})
	star := "star"
	for i := 0; i < 500; i++ {
		var ack map[string]any
		if code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token(fmt.Sprintf("fan%03d", i)), map[string]any{"id": "x", "to": star, "text": "hi"}, &ack); code != 200 {
			t.Fatalf("%d %v", code, ack)
		}
	}
	// The star answers the fans that will watch it: only users who wrote
	// in a shared conversation are visible (PROTOCOL.md section 7).
	for i := 0; i < 20; i++ {
		var ack map[string]any
		if code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token(star), map[string]any{"id": fmt.Sprintf("re%03d", i), "to": fmt.Sprintf("fan%03d", i), "text": "hi"}, &ack); code != 200 {
			t.Fatalf("%d %v", code, ack)
		}
	}
	platformtest.WaitCount(t, "conversations in the star's list", 200, func() int {
		var l convList
		api(t, "GET", p.HTTP(0)+"/v1/conversations?limit=200", p.Token(star), nil, &l)
		return len(l.Conversations)
	})
	measure := func(watchers int, round int) (uint64, int) {
		var recs []*recorder
		for i := 0; i < watchers; i++ {
			c, rec := dial(t, p, fmt.Sprintf("fan%03d", i), []int{i % 2}, dialOpts{})
			_ = c.Watch([]string{star})
			rec.waitPresence(t, star, 1)
			recs = append(recs, rec)
		}
		time.Sleep(2500 * time.Millisecond) // quiet: past the fan-out's summary flush
		before, _ := p.NS.Varz(nil)
		c, _ := dial(t, p, star, []int{0}, dialOpts{device: fmt.Sprintf("d%d", round)})
		told := 0
		if watchers > 0 {
			for _, rec := range recs {
				rec.waitPresence(t, star, 2)
				told++
			}
		} else {
			time.Sleep(300*time.Millisecond + 500*time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		after, _ := p.NS.Varz(nil)
		_ = c.Close()
		time.Sleep(1500 * time.Millisecond) // offline told, quiet again
		t.Logf("watchers %d: in %d, out %d", watchers, after.InMsgs-before.InMsgs, after.OutMsgs-before.OutMsgs)
		return uint64(after.InMsgs-before.InMsgs) + uint64(after.OutMsgs-before.OutMsgs), told
	}
	alone, _ := measure(0, 0)
	watched, told := measure(20, 1)
	t.Logf("NATS messages for one connect: %d with 500 contacts and no watcher; %d with 20 watchers on 2 edges (%d presence frames delivered)", alone, watched, told)
	b, _ := json.Marshal(map[string]any{"alone": alone, "watched": watched})
	t.Logf("%s", b)
	if alone > 40 {
		t.Fatalf("a connect with 500 contacts and no watcher cost %d NATS messages: it must not grow with contacts", alone)
	}
	if watched > alone+40 || told != 20 {
		t.Fatalf("20 watchers: %d messages (%d without), %d told", watched, alone, told)
	}
}

type presenceItem struct {
	User     string `json:"user"`
	Status   string `json:"status"`
	LastSeen int64  `json:"last_seen"`
}

// pullPresence is GET /v1/presence for viewer, by user.
func pullPresence(t *testing.T, p *platformtest.Platform, viewer string, users ...string) map[string]presenceItem {
	t.Helper()
	var pr struct {
		Users []presenceItem `json:"users"`
	}
	if code := api(t, "GET", p.HTTP(0)+"/v1/presence?users="+strings.Join(users, ","), p.Token(viewer), nil, &pr); code != 200 {
		t.Fatalf("presence pull: %d", code)
	}
	out := map[string]presenceItem{}
	for _, it := range pr.Users {
		out[it.User] = it
	}
	return out
}

// waitVisible waits until viewer's pull shows user with status.
func waitVisible(t *testing.T, p *platformtest.Platform, viewer, user, status string) {
	t.Helper()
	platformtest.Eventually(t, platformtest.Patience, func() error {
		if got := pullPresence(t, p, viewer, user)[user]; got.Status != status {
			return fmt.Errorf("%s sees %s %+v, want %s", viewer, user, got, status)
		}
		return nil
	})
}

// Attack stopped: "presence is shown to anyone who writes to you". Writing
// to someone grants nothing until they answer (PROTOCOL.md section 7): in
// the pull, in the watch answer and in later changes; the one who was
// written to sees the writer at once.
func TestPresenceOnlyFromThoseWhoWrote(t *testing.T) {
	p := presencePlatform(t, 1)
	befriend(t, p, "carol", "bob")
	b, _ := dial(t, p, "bob", []int{0}, dialOpts{})
	c, crec := dial(t, p, "carol", []int{0}, dialOpts{})
	_ = c.Watch([]string{"bob"})
	waitVisible(t, p, "carol", "bob", "online") // bob is online as watchers are told it

	// alice writes to bob; bob never answers.
	var ack map[string]any
	if code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token("alice"), map[string]any{"id": "m1", "to": "bob", "text": "hi"}, &ack); code != 200 {
		t.Fatalf("send: %d %v", code, ack)
	}
	// bob sees alice at once, before the fan-out stores his summary: she
	// wrote to him (offline with no last_seen: she never connected).
	if got := pullPresence(t, p, "bob", "alice")["alice"]; got.Status != "offline" || got.LastSeen != 0 {
		t.Fatalf("bob sees alice %+v", got)
	}
	a, arec := dial(t, p, "alice", []int{0}, dialOpts{})
	waitVisible(t, p, "bob", "alice", "online")
	if got := pullPresence(t, p, "alice", "bob")["bob"]; got.Status != "offline" || got.LastSeen != 0 {
		t.Fatalf("alice wrote to bob, who never answered: she sees him %+v, want offline without last_seen", got)
	}
	if err := a.Watch([]string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if s := arec.waitPresence(t, "bob", 1); s.Status != "offline" || s.LastSeen != 0 {
		t.Fatalf("watch answer: %+v", s)
	}
	// bob's changes reach carol, not alice.
	_ = b.Close()
	if off := crec.waitPresence(t, "bob", 3); off.Status != "offline" || off.LastSeen == 0 {
		t.Fatalf("carol: %+v", off)
	}
	b2, _ := dial(t, p, "bob", []int{0}, dialOpts{})
	bobs := []*client.Client{b2}
	crec.waitPresence(t, "bob", 4)
	time.Sleep(300 * time.Millisecond) // the same publish reached alice's watch, if it follows bob
	if evs := arec.presences("bob"); len(evs) != 1 {
		t.Fatalf("alice was told bob's changes: %+v", evs)
	}
	// bob answers: alice sees him at once, and her watch list, unchanged,
	// now follows him.
	if code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token("bob"), map[string]any{"id": "r1", "to": "alice", "text": "hello"}, &ack); code != 200 {
		t.Fatalf("answer: %d %v", code, ack)
	}
	if got := pullPresence(t, p, "alice", "bob")["bob"]; got.Status != "online" {
		t.Fatalf("after bob answered alice sees him %+v", got)
	}
	if s := arec.waitPresence(t, "bob", 2); s.Status != "online" {
		t.Fatalf("alice's watch after bob answered: %+v", s)
	}
	for _, bc := range bobs {
		_ = bc.Close()
	}
	if s := arec.waitPresence(t, "bob", 3); s.Status != "offline" || s.LastSeen == 0 {
		t.Fatalf("alice's watch told %+v", s)
	}
}

// Attack stopped: "presence is shown to anyone who puts you in a group". A
// group's creator who never wrote there is not visible to the members it
// added; a member who wrote is visible to the others until it is removed.
func TestPresenceInGroupsOnlyFromWriters(t *testing.T) {
	p := presencePlatform(t, 1)
	var g groupView
	if code := api(t, "POST", p.HTTP(0)+"/v1/conversations", p.Token("ann"), map[string]any{"title": "t", "members": []string{"ben", "cid"}}, &g); code != 201 {
		t.Fatalf("create: %d", code)
	}
	dial(t, p, "ann", []int{0}, dialOpts{})
	cidConn, _ := dial(t, p, "cid", []int{0}, dialOpts{})
	var ack map[string]any
	if code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token("cid"), map[string]any{"id": "m1", "conv": g.Conv, "text": "hi all"}, &ack); code != 200 {
		t.Fatalf("send: %d %v", code, ack)
	}
	// cid wrote: ben sees it online. ann connected first and never wrote.
	waitVisible(t, p, "ben", "cid", "online")
	if got := pullPresence(t, p, "ben", "ann")["ann"]; got.Status != "offline" || got.LastSeen != 0 {
		t.Fatalf("ben sees the creator who never wrote: %+v", got)
	}
	ben, brec := dial(t, p, "ben", []int{0}, dialOpts{})
	_ = ben.Watch([]string{"ann", "cid"})
	if s := brec.waitPresence(t, "ann", 1); s.Status != "offline" || s.LastSeen != 0 {
		t.Fatalf("watch answer about ann: %+v", s)
	}
	if s := brec.waitPresence(t, "cid", 1); s.Status != "online" {
		t.Fatalf("watch answer about cid: %+v", s)
	}
	// cid removed: visibility through the group ends, for the pull and
	// for ben's watch list (told offline without last_seen, then nothing).
	if code := api(t, "DELETE", p.HTTP(0)+"/v1/conversations/"+g.Conv+"/members/cid", p.Token("ann"), nil, &g); code != 200 {
		t.Fatalf("remove: %d", code)
	}
	if s := brec.waitPresence(t, "cid", 2); s.Status != "offline" || s.LastSeen != 0 {
		t.Fatalf("ben's watch after the removal: %+v", s)
	}
	if got := pullPresence(t, p, "ben", "cid")["cid"]; got.Status != "offline" || got.LastSeen != 0 {
		t.Fatalf("after the removal: %+v", got)
	}
	befriend(t, p, "dee", "cid")
	d, drec := dial(t, p, "dee", []int{0}, dialOpts{})
	_ = d.Watch([]string{"cid"})
	drec.waitPresence(t, "cid", 1)
	_ = cidConn.Close()
	drec.waitPresence(t, "cid", 2) // dee is told cid left
	time.Sleep(300 * time.Millisecond)
	if evs := brec.presences("cid"); len(evs) != 2 {
		t.Fatalf("ben was told cid's changes after the removal: %+v", evs)
	}
	// cid still sees nobody of the group: ann never wrote, ben neither.
	if got := pullPresence(t, p, "cid", "ann")["ann"]; got.Status != "offline" || got.LastSeen != 0 {
		t.Fatalf("cid sees ann %+v", got)
	}
}
