package event

import (
	"cmp"
	"encoding/json"
	"slices"
)

// Summary is one conversation in a user's conversation list: kept by the
// fan-out in the user's inbox stream, read by GET /v1/conversations.
type Summary struct {
	Conv         string          `json:"conv"`
	Kind         string          `json:"kind"`
	Title        string          `json:"title"`
	Members      []string        `json:"members"`
	Last         json.RawMessage `json:"last"`
	LastSeq      uint64          `json:"last_seq"`
	TS           int64           `json:"ts"` // of the last event: the list's order
	Unread       int             `json:"unread"`
	DeliveredSeq uint64          `json:"delivered_seq"`
	ReadSeq      uint64          `json:"read_seq"`
	// Others holds, as [first, last] ranges, the seqs of text messages from
	// others above ReadSeq: Unread is their count.
	Others [][2]uint64 `json:"others,omitempty"`
	// Writers are the members who have sent a text in the conversation
	// since the user joined it (a removal strikes the member out): whose
	// presence the user may see (PROTOCOL.md section 7). At most the
	// group's size.
	Writers []string `json:"writers,omitempty"`
	// Src is the conversation-stream sequence of the last event folded in:
	// a reader that needs what the summary does not have yet reads the
	// stream after it.
	Src uint64 `json:"src,omitempty"`
}

// Visible are the users of the conversation whose presence user may see:
// the writers who are members now, when user is one too; user itself is
// left out.
func (s *Summary) Visible(user string) []string {
	if s.Kind == ConvGroup && !slices.Contains(s.Members, user) {
		return nil
	}
	var out []string
	for _, w := range s.Writers {
		if w != user && (s.Kind != ConvGroup || slices.Contains(s.Members, w)) {
			out = append(out, w)
		}
	}
	return out
}

// ApplyMsg folds a stored msg event, stored at src in the conversation
// stream, into user's summary; an event at or below LastSeq changes
// nothing (replays are harmless). group is the group's metadata folded at
// least up to m.Seq (nil for a direct conversation): membership events
// carry only what changed, so a member who joins, or a summary without the
// group, takes the members from it. It reports a change.
func (s *Summary) ApplyMsg(user string, m *Msg, doc []byte, src uint64, group *Meta) bool {
	if m.Seq <= s.LastSeq {
		return false
	}
	s.Conv = m.Conv
	s.LastSeq, s.TS, s.Last, s.Src = m.Seq, m.TS, append(json.RawMessage(nil), doc...), src
	switch {
	case m.To != "" && m.Kind == KindText:
		s.Kind = ConvDirect
		if len(s.Members) == 0 {
			s.Members = []string{m.From, m.To}
			slices.Sort(s.Members)
		}
	case m.Kind == KindGroupCreated:
		s.Kind, s.Title, s.Members = ConvGroup, m.Title, append([]string(nil), m.Members...)
	case m.Kind == KindTitleChanged:
		s.Kind, s.Title = ConvGroup, m.Title
	case m.Kind == KindMemberAdded:
		s.Kind = ConvGroup
		switch {
		case len(m.Members) > 0: // stored before 2026-12-05: the group as it is at the add
			s.Title, s.Members = m.Title, append([]string(nil), m.Members...)
		case m.User == user && group != nil: // the joiner never saw the group's events
			s.Title, s.Members = group.Title, group.MembersAt(m.Seq)
		case !slices.Contains(s.Members, m.User):
			s.Members = append(s.Members, m.User)
		}
		if m.User == user { // a new stint: visibility from what it sees
			s.Writers = nil
		}
	case m.Kind == KindMemberRemoved:
		s.Kind = ConvGroup
		s.Members = slices.DeleteFunc(s.Members, func(u string) bool { return u == m.User })
		s.Writers = slices.DeleteFunc(s.Writers, func(u string) bool { return u == m.User })
	}
	if m.To == "" && m.Kind != KindGroupCreated && len(s.Members) == 0 && group != nil {
		// A group event in a summary that lacks the group (lost, or never
		// stored): the group as of this event.
		s.Kind, s.Title, s.Members = ConvGroup, group.Title, group.MembersAt(m.Seq)
	}
	if m.Kind == KindText && !slices.Contains(s.Writers, m.From) {
		s.Writers = append(s.Writers, m.From)
	}
	if m.Kind == KindText && m.From != user && m.Seq > s.ReadSeq {
		if n := len(s.Others); n > 0 && s.Others[n-1][1]+1 == m.Seq {
			s.Others[n-1][1] = m.Seq
		} else {
			s.Others = append(s.Others, [2]uint64{m.Seq, m.Seq})
		}
		s.Unread++
	}
	return true
}

// ApplyReceipt folds the user's own receipt into its summary.
func (s *Summary) ApplyReceipt(seq uint64, status string) bool {
	changed := false
	if seq > s.DeliveredSeq {
		s.DeliveredSeq, changed = seq, true
	}
	if status == StatusRead && seq > s.ReadSeq {
		s.applyRead(seq)
		changed = true
	}
	return changed
}

func (s *Summary) applyRead(seq uint64) {
	s.ReadSeq = max(s.ReadSeq, seq)
	s.DeliveredSeq = max(s.DeliveredSeq, seq)
	kept := s.Others[:0]
	unread := 0
	for _, r := range s.Others {
		if r[1] <= seq {
			continue
		}
		if r[0] <= seq {
			r[0] = seq + 1
		}
		kept = append(kept, r)
		unread += int(r[1] - r[0] + 1)
	}
	s.Others, s.Unread = kept, unread
}

// Merge folds in another copy of the same summary, made from some of the
// same events (a copy stored by another writer, or stored before a
// restart): the newer last event, the higher watermarks, and as unread
// every seq either copy counts above the merged read watermark.
func (s *Summary) Merge(o *Summary) {
	if o.LastSeq > s.LastSeq {
		s.Conv, s.Kind, s.Title, s.Members = o.Conv, o.Kind, o.Title, slices.Clone(o.Members)
		s.Last, s.LastSeq, s.TS = append(json.RawMessage(nil), o.Last...), o.LastSeq, o.TS
	}
	s.Src = max(s.Src, o.Src)
	for _, w := range o.Writers {
		if !slices.Contains(s.Writers, w) {
			s.Writers = append(s.Writers, w)
		}
	}
	s.DeliveredSeq = max(s.DeliveredSeq, o.DeliveredSeq)
	ranges := append(slices.Clone(s.Others), o.Others...)
	slices.SortFunc(ranges, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	merged := ranges[:0]
	for _, r := range ranges {
		if n := len(merged); n > 0 && r[0] <= merged[n-1][1]+1 {
			merged[n-1][1] = max(merged[n-1][1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	s.Others = merged
	s.applyRead(max(s.ReadSeq, o.ReadSeq))
}
