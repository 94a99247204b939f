package clickhouse

import (
	"fmt"
	"regexp"
	"strings"
)

// AnalystQuery is one of the analysts' queries README.md shows.
type AnalystQuery struct {
	Name string // from its marker
	SQL  string // without the final semicolon
}

// analystRE matches a query of README.md: the marker
// <!-- analyst-query: NAME --> and the ```sql block right after it.
var analystRE = regexp.MustCompile("(?s)<!-- analyst-query: ([a-z0-9-]+) -->\\s*```sql\\n(.*?)```")

// AnalystQueries reads the analysts' queries from the text of README.md, in
// order, so that the tests run exactly what the README shows.
func AnalystQueries(readme string) ([]AnalystQuery, error) {
	var out []AnalystQuery
	seen := map[string]bool{}
	for _, m := range analystRE.FindAllStringSubmatch(readme, -1) {
		if seen[m[1]] {
			return nil, fmt.Errorf("clickhouse: analyst query %q twice", m[1])
		}
		seen[m[1]] = true
		sql := strings.TrimSuffix(strings.TrimSpace(m[2]), ";")
		if strings.Contains(sql, ";") {
			return nil, fmt.Errorf("clickhouse: analyst query %q: more than one statement", m[1])
		}
		out = append(out, AnalystQuery{Name: m[1], SQL: sql})
	}
	if n := strings.Count(readme, "<!-- analyst-query:"); n != len(out) {
		return nil, fmt.Errorf("clickhouse: %d analyst-query markers, %d followed by a sql block", n, len(out))
	}
	return out, nil
}
