package main

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// readProjection is every text message of the run's database, collapsed
// (FINAL: one row per (conv, seq), as history and analysts read it).
func readProjection(ctx context.Context, ch driver.Conn, db string) ([]CHRow, error) {
	rows, err := ch.Query(ctx, "SELECT conv, seq, id FROM `"+db+"`.messages FINAL WHERE kind = 'text'")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []CHRow
	for rows.Next() {
		var r CHRow
		var seq uint64
		if err := rows.Scan(&r.Conv, &seq, &r.ID); err != nil {
			return nil, err
		}
		r.Seq = int64(seq)
		out = append(out, r)
	}
	return out, rows.Err()
}

// waitProjection reads the projection until it holds every acked message,
// or it stopped growing for 30 s, or ctx ends; it returns the last read and
// how long the wait took.
func waitProjection(ctx context.Context, ch driver.Conn, db string, h History) ([]CHRow, time.Duration, error) {
	start := time.Now()
	acked := map[convSeq]bool{}
	for _, s := range h.Sends {
		if s.Acked {
			acked[convSeq{s.Conv, s.Seq}] = true
		}
	}
	var rows []CHRow
	var err error
	lastN, lastChange := -1, time.Now()
	for {
		rows, err = readProjection(ctx, ch, db)
		if err == nil {
			have := 0
			for _, r := range rows {
				if acked[convSeq{r.Conv, r.Seq}] {
					have++
				}
			}
			if have >= len(acked) {
				return rows, time.Since(start), nil
			}
			if len(rows) != lastN {
				lastN, lastChange = len(rows), time.Now()
			} else if time.Since(lastChange) > 30*time.Second {
				return rows, time.Since(start), nil
			}
		}
		if sleep(ctx, 2*time.Second) != nil {
			if err == nil {
				err = ctx.Err()
			}
			return rows, time.Since(start), err
		}
	}
}
