package event_test

import (
	"slices"
	"testing"

	"messenger/services/event"
)

func TestFoldGroupMembership(t *testing.T) {
	var m event.Meta
	evs := []event.Msg{
		{Seq: 1, Kind: event.KindGroupCreated, From: "ann", Title: "t", Members: []string{"ann", "bob", "cy"}},
		{Seq: 2, Kind: event.KindText, From: "bob"},
		{Seq: 3, Kind: event.KindMemberAdded, From: "ann", User: "dee"},
		{Seq: 4, Kind: event.KindMemberRemoved, From: "ann", User: "bob"},
		{Seq: 5, Kind: event.KindTitleChanged, From: "ann", Title: "u"},
		{Seq: 6, Kind: event.KindMemberRemoved, From: "ann", User: "ann"}, // the last admin leaves
	}
	for i := range evs {
		m.Fold(&evs[i], uint64(100+i))
		m.Fold(&evs[i], uint64(100+i)) // twice: no change
	}
	if !slices.Equal(m.Members, []string{"cy", "dee"}) || m.Title != "u" || m.Applied != 6 || m.AppliedStream != 105 {
		t.Fatalf("meta %+v", m)
	}
	if !m.IsAdmin("cy") || m.IsAdmin("dee") {
		t.Fatal("the longest-standing member must become admin")
	}
	if m.JoinedSeq("dee") != 3 || m.JoinedSeq("cy") != 1 {
		t.Fatal("joined seqs")
	}
	for seq, want := range map[uint64][]string{
		2: {"ann", "bob", "cy"},
		3: {"ann", "bob", "cy", "dee"},
		4: {"ann", "bob", "cy", "dee"}, // bob gets his own removal
		5: {"ann", "cy", "dee"},
	} {
		kind, subject := event.KindText, ""
		if seq == 4 {
			kind, subject = event.KindMemberRemoved, "bob"
		}
		if got := m.Recipients(seq, kind, subject); !slices.Equal(got, want) {
			t.Errorf("recipients at %d: %v, want %v", seq, got, want)
		}
	}
	if event.GroupConv("ann", "x") != event.GroupConv("ann", "x") || event.GroupConv("ann", "x") == event.GroupConv("bob", "x") {
		t.Fatal("group ids")
	}
}

// Membership events stored before 2026-12-05 carry the whole group in
// member_added; those stored since carry only the user. Both fold to the
// same metadata, and both give a joiner's summary the whole group.
func TestOldAndNewMemberAddedFoldAlike(t *testing.T) {
	created := event.Msg{Conv: "g1", Seq: 1, Kind: event.KindGroupCreated, From: "ann", Title: "t", Members: []string{"ann", "bob"}}
	removed := event.Msg{Conv: "g1", Seq: 2, Kind: event.KindMemberRemoved, From: "ann", User: "bob"}
	oldAdd := event.Msg{Conv: "g1", Seq: 3, Kind: event.KindMemberAdded, From: "ann", User: "cy", Title: "t", Members: []string{"ann", "cy"}}
	newAdd := event.Msg{Conv: "g1", Seq: 3, Kind: event.KindMemberAdded, From: "ann", User: "cy"}
	var metas [2]event.Meta
	for i, add := range []event.Msg{oldAdd, newAdd} {
		for j, ev := range []event.Msg{created, removed, add} {
			metas[i].Fold(&ev, uint64(10+j))
		}
		if !slices.Equal(metas[i].Members, []string{"ann", "cy"}) || metas[i].JoinedSeq("cy") != 3 || !metas[i].IsAdmin("ann") {
			t.Fatalf("fold with add %d: %+v", i, metas[i])
		}
		var joiner event.Summary
		joiner.ApplyMsg("cy", &add, []byte(`{}`), 12, &metas[i])
		if joiner.Kind != event.ConvGroup || joiner.Title != "t" || !slices.Equal(joiner.Members, []string{"ann", "cy"}) || joiner.Src != 12 {
			t.Fatalf("joiner's summary with add %d: %+v", i, joiner)
		}
	}
	if got := metas[1].MembersAt(1); !slices.Equal(got, []string{"ann", "bob"}) {
		t.Fatalf("members at 1: %v", got)
	}
	// A member that was there all along adds the user to what it has.
	var ann event.Summary
	for _, ev := range []event.Msg{created, removed, newAdd} {
		ann.ApplyMsg("ann", &ev, []byte(`{}`), 0, &metas[1])
	}
	if !slices.Equal(ann.Members, []string{"ann", "cy"}) {
		t.Fatalf("ann's members %v", ann.Members)
	}
}

// Visible follows PROTOCOL.md section 7: only members who wrote, while both
// are members.
func TestSummaryVisibleWriters(t *testing.T) {
	direct := func(seq uint64, from, to string) *event.Msg {
		return &event.Msg{Conv: "d1", Seq: seq, From: from, To: to, Kind: event.KindText}
	}
	var alice, bob event.Summary
	alice.ApplyMsg("alice", direct(1, "alice", "bob"), []byte(`{}`), 1, nil)
	bob.ApplyMsg("bob", direct(1, "alice", "bob"), []byte(`{}`), 1, nil)
	if v := alice.Visible("alice"); len(v) != 0 {
		t.Fatalf("alice wrote, bob never did: alice sees %v", v)
	}
	if v := bob.Visible("bob"); !slices.Equal(v, []string{"alice"}) {
		t.Fatalf("bob sees %v", v)
	}
	alice.ApplyMsg("alice", direct(2, "bob", "alice"), []byte(`{}`), 2, nil)
	if v := alice.Visible("alice"); !slices.Equal(v, []string{"bob"}) {
		t.Fatalf("after bob's answer alice sees %v", v)
	}

	meta := &event.Meta{}
	evs := []event.Msg{
		{Conv: "g1", Seq: 1, Kind: event.KindGroupCreated, From: "ann", Members: []string{"ann", "bob", "cy"}},
		{Conv: "g1", Seq: 2, Kind: event.KindText, From: "bob"},
		{Conv: "g1", Seq: 3, Kind: event.KindMemberRemoved, From: "ann", User: "bob"},
		{Conv: "g1", Seq: 4, Kind: event.KindMemberAdded, From: "ann", User: "bob"},
	}
	var cy event.Summary
	for i := range evs {
		meta.Fold(&evs[i], uint64(i+1))
		cy.ApplyMsg("cy", &evs[i], []byte(`{}`), uint64(i+1), meta)
		want := map[uint64][]string{1: nil, 2: {"bob"}, 3: nil, 4: nil}[evs[i].Seq]
		if v := cy.Visible("cy"); !slices.Equal(v, want) {
			t.Fatalf("after seq %d cy sees %v, want %v (the creator never wrote)", evs[i].Seq, v, want)
		}
	}
}
