package projector

import (
	"encoding/json"
	"errors"
	"fmt"

	"messenger/client/proto"
	"messenger/services/event"
	"messenger/subjects"
)

// row is one event ready for its table.
type row struct {
	table  string // messages, receipts, membership or conversations
	values []any
	// the event as it came, for a dead letter
	subject   string
	data      []byte
	streamSeq uint64
}

// Column lists: PrepareBatch must name its columns on 18.16.
const (
	messagesInsert   = "INSERT INTO messages (conv, seq, ts, sender, id, kind, text, title, user, members, recipient, part, stream_seq)"
	receiptsInsert   = "INSERT INTO receipts (conv, user, seq, status, ts, part, stream_seq)"
	membershipInsert = "INSERT INTO membership (conv, seq, ts, kind, actor, user, members, title, part, stream_seq)"
)

var inserts = map[string]string{
	"messages":      messagesInsert,
	"receipts":      receiptsInsert,
	"membership":    membershipInsert,
	"conversations": conversationsInsert,
}

// errMalformed marks an event that can never be projected as it is.
var errMalformed = errors.New("malformed event")

// toRows turns one stream event into the rows it projects to.
func toRows(subject string, data []byte, part int, streamSeq uint64) ([]row, error) {
	sp, err := subjects.Parse(subject)
	if err != nil {
		return nil, fmt.Errorf("%w: subject %q", errMalformed, subject)
	}
	base := row{subject: subject, data: data, streamSeq: streamSeq}
	switch sp.Prefix {
	case subjects.ConvPrefix:
		var m event.Msg
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%w: %v", errMalformed, err)
		}
		if m.Conv != sp.ID || m.Seq == 0 || !proto.ValidID(m.From) || m.Kind == "" {
			return nil, fmt.Errorf("%w: msg without conv, seq, from or kind", errMalformed)
		}
		members := m.Members
		if members == nil {
			members = []string{}
		}
		r := base
		r.table = "messages"
		r.values = []any{m.Conv, m.Seq, uint64(m.TS), m.From, m.ID, m.Kind, m.Text, m.Title, m.User, members, m.To, uint16(part), streamSeq}
		out := []row{r}
		if m.Kind == event.KindText && m.Seq == 1 && m.To != "" {
			out = append(out, directConversation(base, &m, part, streamSeq))
		}
		switch m.Kind {
		case event.KindGroupCreated, event.KindMemberAdded, event.KindMemberRemoved, event.KindTitleChanged:
			mr := base
			mr.table = "membership"
			mr.values = []any{m.Conv, m.Seq, uint64(m.TS), m.Kind, m.From, m.User, members, m.Title, uint16(part), streamSeq}
			out = append(out, mr)
		}
		return out, nil
	case subjects.ReceiptPrefix:
		var rc event.Receipt
		if err := json.Unmarshal(data, &rc); err != nil {
			return nil, fmt.Errorf("%w: %v", errMalformed, err)
		}
		if rc.Conv != sp.ID || rc.Seq == 0 || !proto.ValidID(rc.User) {
			return nil, fmt.Errorf("%w: receipt without conv, seq or user", errMalformed)
		}
		r := base
		r.table = "receipts"
		r.values = []any{rc.Conv, rc.User, rc.Seq, rc.Status, uint64(rc.TS), uint16(part), streamSeq}
		return []row{r}, nil
	}
	return nil, fmt.Errorf("%w: subject %q", errMalformed, subject)
}
