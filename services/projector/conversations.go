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

// staleConversations are the conversations whose conversations row is
// missing or older than their events projected in the checked ranges
// (stream sequences firsts[part]..floors[part], every one of them acked, so
// inserted with its conversations row): the groups by their membership
// rows, the direct conversations by their first message. A deployment that
// projected before the table existed has none of them: its first check
// finds them all, and the repair writes them.
func (p *Projector) staleConversations(ctx context.Context, firsts, floors []uint64) (groups, direct []string, err error) {
	const (
		inRange = " stream_seq >= arrayElement(?, part + 1) AND stream_seq <= arrayElement(?, part + 1)"
		have    = " ANY LEFT JOIN (SELECT conv, max(stream_seq) AS have FROM conversations GROUP BY conv) USING (conv) WHERE have < want"
	)
	for _, q := range []struct {
		sql string
		out *[]string
	}{
		{"SELECT conv FROM (SELECT conv, max(stream_seq) AS want FROM membership WHERE" + inRange + " GROUP BY conv)" + have, &groups},
		{"SELECT conv FROM (SELECT conv, max(stream_seq) AS want FROM messages WHERE seq = 1 AND kind = 'text' AND recipient != '' AND" +
			inRange + " GROUP BY conv)" + have, &direct},
	} {
		rows, err := p.ch.Query(ctx, q.sql, firsts, floors)
		if err != nil {
			return nil, nil, fmt.Errorf("projector: conversations check: %w", err)
		}
		for rows.Next() {
			var conv string
			if err := rows.Scan(&conv); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("projector: conversations check: %w", err)
			}
			*q.out = append(*q.out, conv)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("projector: conversations check: %w", err)
		}
	}
	return groups, direct, nil
}

// directConversations are the conversations rows of direct conversations
// convs, from their first message in ClickHouse.
func (p *Projector) directConversations(ctx context.Context, convs []string) ([]row, error) {
	var out []row
	for len(convs) > 0 {
		chunk := convs[:min(len(convs), foldChunk)]
		convs = convs[len(chunk):]
		rows, err := p.ch.Query(ctx, `SELECT conv, seq, ts, sender, recipient, part, stream_seq
			FROM messages WHERE conv IN (SELECT arrayJoin(?)) AND seq = 1
			ORDER BY conv, stream_seq DESC LIMIT 1 BY conv`, chunk)
		if err != nil {
			return nil, fmt.Errorf("projector: direct conversations: %w", err)
		}
		for rows.Next() {
			var (
				m         event.Msg
				ts        uint64
				part      uint16
				streamSeq uint64
			)
			if err := rows.Scan(&m.Conv, &m.Seq, &ts, &m.From, &m.To, &part, &streamSeq); err != nil {
				rows.Close()
				return nil, fmt.Errorf("projector: direct conversations: %w", err)
			}
			m.TS = int64(ts)
			out = append(out, directConversation(row{streamSeq: streamSeq}, &m, int(part), streamSeq))
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("projector: direct conversations: %w", err)
		}
	}
	return out, nil
}

// repairConversations writes the rows of groups and direct conversations
// again, folded from what ClickHouse holds.
func (p *Projector) repairConversations(ctx context.Context, groups, direct []string) (int, error) {
	g, err := p.groupConversations(ctx, groups)
	if err != nil {
		return 0, err
	}
	d, err := p.directConversations(ctx, direct)
	if err != nil {
		return 0, err
	}
	rows := append(g, d...)
	for len(rows) > 0 {
		chunk := rows[:min(len(rows), p.cfg.BatchSize)]
		rows = rows[len(chunk):]
		if err := p.insert(ctx, "conversations", chunk); err != nil {
			return 0, fmt.Errorf("projector: repair conversations: %w", err)
		}
	}
	return len(g) + len(d), nil
}
