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
