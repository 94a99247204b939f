package edge_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/platformtest"
)

type groupView struct {
	Conv      string `json:"conv"`
	Kind      string `json:"kind"`
	Title     string `json:"title"`
	JoinedSeq int64  `json:"joined_seq"`
	Members   []struct {
		User string `json:"user"`
		Role string `json:"role"`
	} `json:"members"`
}

func (v groupView) roles() map[string]string {
	out := map[string]string{}
	for _, m := range v.Members {
		out[m.User] = m.Role
	}
	return out
}

func createGroup(t *testing.T, p *platformtest.Platform, creator, id, title string, members []string) (int, groupView) {
	t.Helper()
	var v groupView
	code := api(t, "POST", p.HTTP(0)+"/v1/conversations", p.Token(creator), map[string]any{"id": id, "title": title, "members": members}, &v)
	return code, v
}

var groupEdge = edgeConfig(func(c *edgeCfg) {
	c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst, c.MaxGroup = 1e4, 1e4, 1e4, 1e4, 60
})

// Fifty members on two edges all send at once: every member sees the same
// complete order.
func TestGroupOf50AllSendAtOnce(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2, Edge: groupEdge})
	var names []string
	for i := 0; i < 50; i++ {
		names = append(names, fmt.Sprintf("m%02d", i))
	}
	code, g := createGroup(t, p, names[0], "fifty", "fifty", names[1:])
	if code != 201 || g.Kind != "group" || len(g.Members) != 50 {
		t.Fatalf("create: %d %+v", code, g)
	}
	recs := make([]*recorder, 50)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, n := range names {
		c, rec := dial(t, p, n, []int{i % 2}, dialOpts{cursor: "0"})
		recs[i] = rec
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for k := 0; k < 2; k++ {
				send(t, c, "", g.Conv, fmt.Sprintf("%s-%d", n, k))
			}
		}()
	}
	close(start)
	wg.Wait()
	want := recs[0].waitMsgs(t, 101)
	for i, rec := range recs {
		got := rec.waitMsgs(t, 101)
		if len(got) != 101 {
			t.Fatalf("%s got %d", names[i], len(got))
		}
		for k := range got {
			if got[k].Seq != int64(k+1) || got[k].ID != want[k].ID {
				t.Fatalf("%s position %d: seq %d id %s, member 0 has %s", names[i], k, got[k].Seq, got[k].ID, want[k].ID)
			}
		}
	}
	if want[0].Kind != "group_created" || len(want[0].Members) != 50 || want[0].Title != "fifty" {
		t.Fatalf("seq 1: %+v", want[0])
	}
}

func TestGroupMembershipRules(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst, c.MaxGroup = 1e4, 1e4, 1e4, 1e4, 5
	})})
	tok := func(u string) string { return p.Token(u) }
	url := p.HTTP(0) + "/v1/conversations"
	// Over the limit at creation.
	var e apiError
	if code, _ := createGroup(t, p, "ava", "big", "big", []string{"b1", "b2", "b3", "b4", "b5"}); code != 409 {
		t.Fatalf("6 members: %d", code)
	}
	code, g := createGroup(t, p, "ava", "team", "team", []string{"ben", "cal"})
	if code != 201 || g.roles()["ava"] != "admin" || g.roles()["ben"] != "member" || g.JoinedSeq != 1 {
		t.Fatalf("create: %d %+v", code, g)
	}
	// A retried create is the same group.
	if code, again := createGroup(t, p, "ava", "team", "other title", []string{"zed"}); code != 200 || again.Conv != g.Conv || again.Title != "team" {
		t.Fatalf("retried create: %d %+v", code, again)
	}
	ava, _ := dial(t, p, "ava", []int{0}, dialOpts{})
	_, calRec := dial(t, p, "cal", []int{0}, dialOpts{cursor: "0"})
	send(t, ava, "", g.Conv, "before dan") // seq 2
	// Non-admins may not add, remove others or rename.
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/" + g.Conv + "/members", map[string]string{"user": "dan"}},
		{"DELETE", "/" + g.Conv + "/members/cal", nil},
		{"PATCH", "/" + g.Conv, map[string]string{"title": "mine"}},
	} {
		if code := api(t, tc.method, url+tc.path, tok("ben"), tc.body, &e); code != 403 || e.Error.Code != "forbidden" {
			t.Fatalf("ben %s %s: %d %+v", tc.method, tc.path, code, e)
		}
	}
	// Outsiders get forbidden too; an existing member is a conflict.
	if code := api(t, "POST", url+"/"+g.Conv+"/members", tok("eve"), map[string]string{"user": "eve"}, &e); code != 403 {
		t.Fatalf("outsider add: %d", code)
	}
	if code := api(t, "POST", url+"/"+g.Conv+"/members", tok("ava"), map[string]string{"user": "ben"}, &e); code != 409 {
		t.Fatalf("add a member again: %d", code)
	}
	// Dan joins at seq 3: he sees history from 3 on.
	var v groupView
	if code := api(t, "POST", url+"/"+g.Conv+"/members", tok("ava"), map[string]string{"user": "dan"}, &v); code != 200 || len(v.Members) != 4 {
		t.Fatalf("add dan: %d %+v", code, v)
	}
	api(t, "GET", url+"/"+g.Conv, tok("dan"), nil, &v)
	if v.JoinedSeq != 3 {
		t.Fatalf("dan's joined_seq %d", v.JoinedSeq)
	}
	_, danRec := dial(t, p, "dan", []int{0}, dialOpts{cursor: "0"})
	send(t, ava, "", g.Conv, "after dan") // seq 4
	if ms := danRec.waitMsgs(t, 2); ms[0].Kind != "member_added" || ms[0].Seq != 3 || ms[1].Seq != 4 {
		t.Fatalf("dan's events: %+v", ms)
	}
	_, pg := getPage(t, p, 0, "dan", g.Conv, "")
	if len(pg.Messages) != 2 || pg.Messages[0].Seq != 3 || pg.HasMore {
		t.Fatalf("dan's history: %v has_more %v", seqs(pg), pg.HasMore)
	}
	// His conversation list knows the group though he never saw its creation.
	platformtest.Eventually(t, platformtest.Patience, func() error {
		var l convList
		api(t, "GET", url, tok("dan"), nil, &l)
		if len(l.Conversations) != 1 || l.Conversations[0].Kind != "group" || l.Conversations[0].Title != "team" || len(l.Conversations[0].Members) != 4 {
			return fmt.Errorf("dan's list: %+v", l)
		}
		return nil
	})
	// Full group (limit 5 in this test: ava ben cal dan + one).
	api(t, "POST", url+"/"+g.Conv+"/members", tok("ava"), map[string]string{"user": "eli"}, &v)
	if code := api(t, "POST", url+"/"+g.Conv+"/members", tok("ava"), map[string]string{"user": "fay"}, &e); code != 409 {
		t.Fatalf("add to a full group: %d", code)
	}
	// Rename.
	if code := api(t, "PATCH", url+"/"+g.Conv, tok("ava"), map[string]string{"title": "the team"}, &v); code != 200 || v.Title != "the team" {
		t.Fatalf("rename: %d %+v", code, v)
	}
	// Cal is removed: gets its own member_removed, then nothing; can no
	// longer read or send.
	if code := api(t, "DELETE", url+"/"+g.Conv+"/members/cal", tok("ava"), nil, &v); code != 200 {
		t.Fatalf("remove cal: %d", code)
	}
	send(t, ava, "", g.Conv, "cal is gone")
	ms := calRec.waitMsgs(t, 7)
	time.Sleep(200 * time.Millisecond)
	ms = calRec.msgs()
	if last := ms[len(ms)-1]; last.Kind != "member_removed" || last.User != "cal" {
		t.Fatalf("cal's last event: %+v (of %d)", last, len(ms))
	}
	if code, _ := getPage(t, p, 0, "cal", g.Conv, ""); code != 403 {
		t.Fatalf("removed member reads history: %d", code)
	}
	var sendErr apiError
	if code := api(t, "POST", p.HTTP(0)+"/v1/messages", tok("cal"), map[string]any{"id": "c1", "conv": g.Conv, "text": "hi"}, &sendErr); code != 403 {
		t.Fatalf("removed member sends: %d", code)
	}
	if code := api(t, "DELETE", url+"/"+g.Conv+"/members/cal", tok("ava"), nil, &e); code != 403 && code != 404 {
		t.Fatalf("remove a non-member: %d", code)
	}
	// The last admin leaves: the longest-standing member (ben) is admin.
	if code := api(t, "DELETE", url+"/"+g.Conv+"/members/ava", tok("ava"), nil, &e); code != 200 {
		t.Fatalf("ava leaves: %d %+v", code, e)
	}
	api(t, "GET", url+"/"+g.Conv, tok("dan"), nil, &v)
	if v.roles()["ben"] != "admin" || v.roles()["ava"] != "" || v.Title != "the team" {
		t.Fatalf("after the last admin left: %+v", v)
	}
	// Member operations on a direct conversation are bad requests.
	ack := send(t, ava, "ben", "", "direct")
	if code := api(t, "POST", url+"/"+ack.Conv+"/members", tok("ava"), map[string]string{"user": "zed"}, &e); code != 400 {
		t.Fatalf("add to a direct conversation: %d", code)
	}
}

// The members lookup rebuilt from the stream gives the same members.
func TestGroupLookupRebuiltFromStream(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: groupEdge})
	_, g := createGroup(t, p, "gia", "g1", "g", []string{"hal", "ivy"})
	url := p.HTTP(0) + "/v1/conversations/" + g.Conv
	var v groupView
	api(t, "POST", url+"/members", p.Token("gia"), map[string]string{"user": "jay"}, &v)
	api(t, "DELETE", url+"/members/hal", p.Token("gia"), nil, &v)
	var before groupView
	api(t, "GET", url, p.Token("ivy"), nil, &before)
	ctx := context.Background()
	_, h := p.Handles()
	if err := h.Convs.Purge(ctx, g.Conv); err != nil {
		t.Fatal(err)
	}
	// A fresh edge has nothing cached: it rebuilds the lookup from the stream.
	i := p.StartEdge(groupEdge)
	var after groupView
	if code := api(t, "GET", p.HTTP(i)+"/v1/conversations/"+g.Conv, p.Token("ivy"), nil, &after); code != 200 {
		t.Fatalf("GET after purge: %d", code)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("rebuilt lookup differs:\n%+v\n%+v", before, after)
	}
	// And the fan-out still delivers by it.
	_, jrec := dial(t, p, "jay", []int{i}, dialOpts{})
	gia, _ := dial(t, p, "gia", []int{i}, dialOpts{})
	send(t, gia, "", g.Conv, "still here")
	if ms := jrec.waitMsgs(t, 1); ms[0].Text != "still here" {
		t.Fatalf("%+v", ms)
	}
}

// Receipts in a group: the reader's other devices get it stored; other
// online members get a live receipt without a cursor; watermarks show for all.
func TestGroupReceipts(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: groupEdge})
	_, g := createGroup(t, p, "kai", "g2", "g", []string{"lee", "mo"})
	kai, _ := dial(t, p, "kai", []int{0}, dialOpts{})
	leePhone, _ := dial(t, p, "lee", []int{0}, dialOpts{device: "phone"})
	_, leeLaptop := dial(t, p, "lee", []int{0}, dialOpts{device: "laptop"})
	_, moRec := dial(t, p, "mo", []int{0}, dialOpts{})
	ack := send(t, kai, "", g.Conv, "read me")
	if err := leePhone.Receipt(g.Conv, ack.Seq, "read"); err != nil {
		t.Fatal(err)
	}
	platformtest.Eventually(t, platformtest.Patience, func() error {
		for _, r := range leeLaptop.ofType("receipt") {
			if r.User == "lee" && r.Status == "read" && r.Cursor != "" {
				return nil
			}
		}
		return fmt.Errorf("lee's laptop has no stored receipt")
	})
	platformtest.Eventually(t, platformtest.Patience, func() error {
		for _, r := range moRec.ofType("receipt") {
			if r.User == "lee" && r.Status == "read" && r.Cursor == "" {
				return nil
			}
		}
		return fmt.Errorf("mo has no live receipt")
	})
	var v struct {
		Members []struct {
			User    string `json:"user"`
			ReadSeq int64  `json:"read_seq"`
		} `json:"members"`
	}
	platformtest.Eventually(t, platformtest.Patience, func() error {
		api(t, "GET", p.HTTP(0)+"/v1/conversations/"+g.Conv, p.Token("mo"), nil, &v)
		for _, m := range v.Members {
			if m.User == "lee" && m.ReadSeq == ack.Seq {
				return nil
			}
		}
		return fmt.Errorf("%+v", v)
	})
}

// Attack stopped: "every membership event carries the whole member list:
// one create of 255 members, a remove and a re-add grew the streams by
// 18 MB". A remove and an add store only who changed: the conversation
// stream grows by two small events and the queues by one small entry per
// member, not by the group per member. Every member's view is still right,
// the re-added member's conversation list too.
func TestMembershipEventsDoNotCopyTheGroup(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst = 1e4, 1e4, 1e4, 1e4
	})})
	var others []string
	for i := 1; i < 255; i++ {
		others = append(others, fmt.Sprintf("member-%03d", i))
	}
	code, g := createGroup(t, p, "member-000", "big", "big", others)
	if code != 201 || len(g.Members) != 255 {
		t.Fatalf("create: %d, %d members", code, len(g.Members))
	}
	_, h := p.Handles()
	size := func(ss []jetstream.Stream) (bytes, msgs uint64) {
		for _, s := range ss {
			info, err := s.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			bytes, msgs = bytes+info.State.Bytes, msgs+info.State.Msgs
		}
		return bytes, msgs
	}
	queued := func(n int) { // the fan-out wrote n queue entries
		platformtest.WaitCount(t, "queue entries", n, func() int { _, m := size(h.Queue); return int(m) })
	}
	queued(255)
	convBefore, _ := size(h.Conv)
	queueBefore, _ := size(h.Queue)
	url := p.HTTP(0) + "/v1/conversations/" + g.Conv
	var v groupView
	if code := api(t, "DELETE", url+"/members/member-200", p.Token("member-000"), nil, &v); code != 200 || len(v.Members) != 254 {
		t.Fatalf("remove: %d, %d members", code, len(v.Members))
	}
	if code := api(t, "POST", url+"/members", p.Token("member-000"), map[string]string{"user": "member-200"}, &v); code != 200 || len(v.Members) != 255 {
		t.Fatalf("add back: %d, %d members", code, len(v.Members))
	}
	queued(3 * 255) // the removed member gets its own removal
	convAfter, _ := size(h.Conv)
	queueAfter, _ := size(h.Queue)
	convGrew, queueGrew := convAfter-convBefore, queueAfter-queueBefore
	t.Logf("remove and re-add in a group of 255: conversation stream +%d B, queues +%d B (%d B per entry)", convGrew, queueGrew, queueGrew/510)
	// A copy of the member list is about 3.3 KB here: one in an event
	// would pass these bounds only without it.
	if convGrew > 2000 || queueGrew > 510*1000 {
		t.Fatalf("remove and re-add grew the conversation stream by %d B and the queues by %d B", convGrew, queueGrew)
	}
	// Every member's view.
	for _, u := range []string{"member-000", "member-001", "member-200", "member-254"} {
		var v groupView
		if code := api(t, "GET", url, p.Token(u), nil, &v); code != 200 || len(v.Members) != 255 || v.Title != "big" || v.roles()["member-000"] != "admin" || v.roles()["member-200"] != "member" {
			t.Fatalf("%s's view: %d %d members %+v", u, code, len(v.Members), v.roles()["member-000"])
		}
		want := int64(1)
		if u == "member-200" {
			want = 3
		}
		if v.JoinedSeq != want {
			t.Fatalf("%s's joined_seq %d, want %d", u, v.JoinedSeq, want)
		}
	}
	// The re-added member's list has the whole group, from the add alone.
	platformtest.Eventually(t, platformtest.Patience, func() error {
		var l convList
		api(t, "GET", p.HTTP(0)+"/v1/conversations", p.Token("member-200"), nil, &l)
		if len(l.Conversations) != 1 || len(l.Conversations[0].Members) != 255 || l.Conversations[0].Title != "big" {
			return fmt.Errorf("member-200's list: %+v", l.Conversations)
		}
		return nil
	})
}

// Attack stopped: "any user can put anyone in a group (103 spam groups in
// one user's list)". A user is in at most --max-groups-per-user groups: a
// create or an add past it is conflict and changes nothing; leaving one
// makes room.
func TestGroupsPerUserBounded(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst, c.MaxGroupsPerUser = 1e4, 1e4, 1e4, 1e4, 3
	})})
	var convs []string
	for i := 1; i <= 3; i++ {
		code, g := createGroup(t, p, fmt.Sprintf("spam%d", i), "x", "spam", []string{"vic"})
		if code != 201 {
			t.Fatalf("group %d: %d", i, code)
		}
		convs = append(convs, g.Conv)
	}
	// A fourth group with vic in it: refused as a whole.
	var e apiError
	if code := api(t, "POST", p.HTTP(0)+"/v1/conversations", p.Token("spam4"), map[string]any{"id": "x", "title": "spam", "members": []string{"bystander", "vic"}}, &e); code != 409 || e.Error.Code != "conflict" {
		t.Fatalf("fourth group: %d %+v", code, e)
	}
	// An add of vic to a group: refused.
	code, g5 := createGroup(t, p, "spam5", "x", "spam", []string{"bystander"})
	if code != 201 {
		t.Fatalf("spam5's group: %d", code)
	}
	url := p.HTTP(0) + "/v1/conversations/"
	if code := api(t, "POST", url+g5.Conv+"/members", p.Token("spam5"), map[string]string{"user": "vic"}, &e); code != 409 || e.Error.Code != "conflict" {
		t.Fatalf("add past the bound: %d %+v", code, e)
	}
	var v groupView
	if code := api(t, "GET", url+g5.Conv, p.Token("spam5"), nil, &v); code != 200 || len(v.Members) != 2 {
		t.Fatalf("the refused add changed the group: %d %+v", code, v)
	}
	// The refused create made nothing: the same create is new once vic
	// has room, and bystander counted it only once.
	if code := api(t, "DELETE", url+convs[0]+"/members/vic", p.Token("vic"), nil, &v); code != 200 {
		t.Fatalf("leave: %d", code)
	}
	if code, g := createGroup(t, p, "spam4", "x", "spam", []string{"bystander", "vic"}); code != 201 || len(g.Members) != 3 {
		t.Fatalf("fourth group after vic left one: %d %+v", code, g)
	}
	if code := api(t, "POST", url+g5.Conv+"/members", p.Token("spam5"), map[string]string{"user": "vic"}, &e); code != 409 {
		t.Fatalf("vic is in 3 groups again: %d", code)
	}
	// bystander is in 2 groups: one more fits, a second does not.
	if code, _ := createGroup(t, p, "spam6", "x", "spam", []string{"bystander"}); code != 201 {
		t.Fatalf("bystander's third group: %d", code)
	}
	if code, _ := createGroup(t, p, "spam7", "x", "spam", []string{"bystander"}); code != 409 {
		t.Fatalf("bystander's fourth group: %d", code)
	}
}
