package history

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"messenger/services/event"
)

// ClickHouse reads the projection (table messages, see infra/clickhouse).
type ClickHouse struct {
	Conn driver.Conn
}

var _ Store = (*ClickHouse)(nil)

// pageQuery reads one page by the primary key (conv, seq). The table is a
// ReplacingMergeTree: an event projected twice (a redelivery, a replay, a
// rebuild) has two rows until a merge, and the merge keeps the one of the
// highest stream_seq. LIMIT 1 BY seq keeps that same row here, without FINAL:
// FINAL merges every part's granules on one thread and is what bounded the
// page (see docs/BENCHMARKS.md), while this reads the parts like any query and
// sorts the page's few rows. Valid on ClickHouse 18.16 and current versions.
const pageQuery = `SELECT seq, ts, sender, id, kind, text, title, user, members, recipient, stream_seq
	FROM messages WHERE conv = ? AND seq >= ? AND seq <= ?
	ORDER BY seq, stream_seq DESC LIMIT 1 BY seq`

// Range reads one page: each seq of lo..hi that the projection holds, once.
func (c *ClickHouse) Range(ctx context.Context, conv string, lo, hi uint64) ([]Event, error) {
	rows, err := c.Conn.Query(ctx, pageQuery, conv, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("history: clickhouse page of %s: %w", conv, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		m := event.Msg{V: event.Version, Type: event.TypeMsg, Conv: conv}
		var ts, streamSeq uint64
		if err := rows.Scan(&m.Seq, &ts, &m.From, &m.ID, &m.Kind, &m.Text, &m.Title, &m.User, &m.Members, &m.To, &streamSeq); err != nil {
			return nil, fmt.Errorf("history: clickhouse row of %s: %w", conv, err)
		}
		m.TS = int64(ts)
		if len(m.Members) == 0 {
			m.Members = nil
		}
		doc, _ := json.Marshal(m)
		out = append(out, Event{Seq: m.Seq, StreamSeq: streamSeq, Doc: doc})
	}
	return out, rows.Err()
}
