package projector

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"messenger/services/event"
)

// The conversations table holds each conversation as it is now. A direct
// conversation's row comes from its first message (toRows). A group's row is
// folded, with event.Meta.Fold (the platform's own fold), from all of the
// group's membership rows in ClickHouse, which project inserts before it:
// the row is the same however often and in whatever order it is made (a
// redelivery, a gap filled late, rebuild-history), and its version is the
// stream sequence of the group's last membership event.

const conversationsInsert = "INSERT INTO conversations (conv, kind, title, creator, created_ts, created_seq, members, updated_ts, updated_seq, part, stream_seq)"

// directConversation is the conversations row of a direct conversation's
// first message m.
func directConversation(base row, m *event.Msg, part int, streamSeq uint64) row {
	members := []string{m.From, m.To}
	slices.Sort(members)
	r := base
	r.table = "conversations"
	r.values = []any{m.Conv, event.ConvDirect, "", m.From, uint64(m.TS), m.Seq, members, uint64(m.TS), m.Seq, uint16(part), streamSeq}
	return r
}

// foldChunk bounds the groups folded by one query.
const foldChunk = 500

// groupConversations folds the conversations rows of groups convs from
// their membership rows in ClickHouse.
func (p *Projector) groupConversations(ctx context.Context, convs []string) ([]row, error) {
	var out []row
	for len(convs) > 0 {
		chunk := convs[:min(len(convs), foldChunk)]
		convs = convs[len(chunk):]
		rows, err := p.ch.Query(ctx, `SELECT conv, seq, ts, kind, actor, user, members, title, part, stream_seq
			FROM membership WHERE conv IN (SELECT arrayJoin(?))
			ORDER BY conv, seq, stream_seq DESC LIMIT 1 BY conv, seq`, chunk)
		if err != nil {
			return nil, fmt.Errorf("projector: fold conversations: %w", err)
		}
		var (
			cur     string
			meta    *event.Meta
			created event.Msg
			last    event.Msg
			lastPS  [2]uint64 // part, stream_seq of last
		)
		flush := func() {
			if meta == nil {
				return
			}
			members := slices.Clone(meta.Members)
			if members == nil {
				members = []string{}
			}
			out = append(out, row{table: "conversations", streamSeq: lastPS[1], values: []any{
				cur, event.ConvGroup, meta.Title, created.From, uint64(created.TS), created.Seq, members,
				uint64(last.TS), last.Seq, uint16(lastPS[0]), lastPS[1]}})
		}
		for rows.Next() {
			var (
				m         event.Msg
				ts        uint64
				part      uint16
				streamSeq uint64
			)
			if err := rows.Scan(&m.Conv, &m.Seq, &ts, &m.Kind, &m.From, &m.User, &m.Members, &m.Title, &part, &streamSeq); err != nil {
				rows.Close()
				return nil, fmt.Errorf("projector: fold conversations: %w", err)
			}
			m.TS = int64(ts)
			if m.Conv != cur {
				flush()
				cur, meta, created = m.Conv, &event.Meta{}, event.Msg{}
			}
			if m.Kind == event.KindGroupCreated {
				created = m
			}
			meta.Fold(&m, streamSeq)
			last, lastPS = m, [2]uint64{uint64(part), streamSeq}
		}
		flush()
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("projector: fold conversations: %w", err)
		}
	}
	return out, nil
}

// changedGroups is the conversations rows of the groups of membership rows
// mrows, retried like an insert while ClickHouse is away.
func (p *Projector) changedGroups(ctx context.Context, part int, mrows []row) ([]row, error) {
	var convs []string
	byConv := map[string]row{}
	for _, r := range mrows {
		conv := r.values[0].(string)
		if _, ok := byConv[conv]; !ok {
			convs = append(convs, conv)
		}
		byConv[conv] = r
	}
	if len(convs) == 0 {
		return nil, nil
	}
	backoff := 100 * time.Millisecond
	for {
		rows, err := p.groupConversations(ctx, convs)
		if err == nil {
			for i := range rows {
				// For a dead letter: the group's last event in this batch.
				src := byConv[rows[i].values[0].(string)]
				rows[i].subject, rows[i].data = src.subject, src.data
			}
			return rows, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.m.insertErrors.Inc()
		p.log.Warn("fold conversations, retrying", zap.Int("partition", part), zap.Int("groups", len(convs)), zap.Error(err))
		if !sleep(ctx, backoff) {
			return nil, ctx.Err()
		}
		backoff = min(backoff*2, p.cfg.MaxBackoff)
	}
}
