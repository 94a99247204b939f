package edge_test

import (
	"fmt"
	"testing"
	"time"

	"messenger/infra/platformtest"
	"messenger/services/fanout"
)

type convList struct {
	Conversations []struct {
		Conv    string   `json:"conv"`
		Kind    string   `json:"kind"`
		Title   string   `json:"title"`
		Members []string `json:"members"`
		Last    *struct {
			Type string `json:"type"`
			Seq  int64  `json:"seq"`
			From string `json:"from"`
			Text string `json:"text"`
		} `json:"last"`
		Unread       int   `json:"unread"`
		DeliveredSeq int64 `json:"delivered_seq"`
		ReadSeq      int64 `json:"read_seq"`
	} `json:"conversations"`
}

func TestConversationList(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: historyEdge})
	lea, _ := dial(t, p, "lea", []int{0}, dialOpts{})
	mx, _ := dial(t, p, "max", []int{0}, dialOpts{})
	ned, _ := dial(t, p, "ned", []int{0}, dialOpts{})
	withMax := send(t, mx, "lea", "", "from max 1").Conv
	send(t, mx, "lea", "", "from max 2")
	withNed := send(t, ned, "lea", "", "from ned").Conv
	send(t, lea, "ned", "", "lea answers ned")
	time.Sleep(5 * time.Millisecond)
	send(t, mx, "lea", "", "from max 3") // max's conversation is the newest now

	var l convList
	platformtest.Eventually(t, platformtest.Patience, func() error {
		l = convList{}
		api(t, "GET", p.HTTP(0)+"/v1/conversations", p.Token("lea"), nil, &l)
		if len(l.Conversations) != 2 || l.Conversations[0].Last == nil || l.Conversations[0].Last.Text != "from max 3" ||
			l.Conversations[1].Last == nil || l.Conversations[1].Last.Text != "lea answers ned" {
			return fmt.Errorf("list %+v", l)
		}
		return nil
	})
	first, second := l.Conversations[0], l.Conversations[1]
	if first.Conv != withMax || first.Kind != "direct" || first.Unread != 3 || first.Last.Seq != 3 || len(first.Members) != 2 {
		t.Fatalf("max's conversation: %+v", first)
	}
	if second.Conv != withNed || second.Unread != 1 {
		t.Fatalf("ned's conversation: %+v", second)
	}
	// Reading clears the unread count; limit cuts the list.
	if err := lea.Receipt(withMax, 2, "read"); err != nil {
		t.Fatal(err)
	}
	platformtest.Eventually(t, platformtest.Patience, func() error {
		l = convList{}
		api(t, "GET", p.HTTP(0)+"/v1/conversations?limit=1", p.Token("lea"), nil, &l)
		if len(l.Conversations) != 1 || l.Conversations[0].Unread != 1 || l.Conversations[0].ReadSeq != 2 || l.Conversations[0].DeliveredSeq != 2 {
			return fmt.Errorf("after reading: %+v", l)
		}
		return nil
	})
	// The sender's own list counts none of its own messages as unread.
	var ml convList
	platformtest.Eventually(t, platformtest.Patience, func() error {
		ml = convList{}
		api(t, "GET", p.HTTP(0)+"/v1/conversations", p.Token("max"), nil, &ml)
		if len(ml.Conversations) != 1 || ml.Conversations[0].Unread != 0 || ml.Conversations[0].Last == nil || ml.Conversations[0].Last.Seq != 3 {
			return fmt.Errorf("max's list: %+v", ml)
		}
		return nil
	})
	var e apiError
	if code := api(t, "GET", p.HTTP(0)+"/v1/conversations?limit=abc", p.Token("lea"), nil, &e); code != 400 {
		t.Fatalf("bad limit: %d", code)
	}
	var empty convList
	if code := api(t, "GET", p.HTTP(0)+"/v1/conversations", p.Token("nobody"), nil, &empty); code != 200 || empty.Conversations == nil || len(empty.Conversations) != 0 {
		t.Fatalf("empty list: %d %+v", code, empty)
	}
}

// The list shows every event the fan-out has handled, however long its
// flush interval: reading it asks the fan-out to store the reader's
// summaries first.
func TestConversationListAsksTheFanoutToFlush(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2, Edge: historyEdge, Fanout: fanout.Config{CheckpointEvery: time.Hour}})
	amy, arec := dial(t, p, "amy", []int{0}, dialOpts{})
	_, brec := dial(t, p, "ben", []int{1}, dialOpts{})
	ack := send(t, amy, "ben", "", "first words")
	brec.waitMsgs(t, 1)
	arec.waitMsgs(t, 1)
	for _, c := range []struct {
		user   string
		unread int
	}{{"ben", 1}, {"amy", 0}} {
		var l convList
		if code := api(t, "GET", p.HTTP(0)+"/v1/conversations", p.Token(c.user), nil, &l); code != 200 {
			t.Fatalf("%s: GET /v1/conversations: %d", c.user, code)
		}
		if len(l.Conversations) != 1 || l.Conversations[0].Conv != ack.Conv || l.Conversations[0].Last == nil ||
			l.Conversations[0].Last.Seq != int64(ack.Seq) || l.Conversations[0].Unread != c.unread {
			t.Fatalf("%s's list right after the message: %+v", c.user, l.Conversations)
		}
	}
}
