// Package docs embeds the machine-readable descriptions kept under docs/:
// the JSON Schemas of the stored events and queue entries (schemas/,
// described in EVENTS.md), so that tests validate real traffic against the
// very files internal services read. It holds data only.
package docs

import "embed"

// Schemas holds schemas/*.schema.json (JSON Schema draft 2020-12).
//
//go:embed schemas/*.schema.json
var Schemas embed.FS
