package grafana_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// defined: a metric's name where the code defines it (prometheus
	// *Opts{Name: "..."}), in any non-test Go file of the module.
	defined = regexp.MustCompile(`Name:\s*"(messenger_[a-z0-9_]+)"`)
	used    = regexp.MustCompile(`messenger_[a-z0-9_]+`)
)

// codeMetrics is every metric name the module's code defines.
func codeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	root := filepath.Join("..", "..")
	names := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range defined.FindAllSubmatch(data, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestDashboardQueriesExistingMetrics: every metric named in an expr of
// messenger.json is defined by the code (histograms by their _bucket,
// _sum and _count series), so that a renamed or removed metric fails here
// instead of leaving an empty panel.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	data, err := os.ReadFile("messenger.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("messenger.json: %v", err)
	}
	names := codeMetrics(t)
	if len(names) < 20 {
		t.Fatalf("found only %d metric definitions in the code: the scan is broken", len(names))
	}
	exprs := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			found := used.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: expr %q names no messenger metric", p.Title, tg.Expr)
			}
			for _, m := range found {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && names[b] {
						base = b
					}
				}
				if !names[base] {
					t.Errorf("panel %q queries %s, which no code defines", p.Title, m)
				}
			}
		}
	}
	if exprs == 0 {
		t.Fatal("the dashboard has no queries")
	}
}
