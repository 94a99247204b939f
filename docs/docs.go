// Package docs embeds the machine-readable descriptions kept under docs/:
// the JSON Schemas of the stored events and queue entries (schemas/,
// described in EVENTS.md) and the OpenAPI description of the HTTP API, so
// that the edge serves them and tests validate real traffic against the
// very files others read. It holds data only.
package docs

import "embed"

// Schemas holds schemas/*.schema.json (JSON Schema draft 2020-12).
//
//go:embed schemas/*.schema.json
var Schemas embed.FS

// OpenAPI is openapi.json, the OpenAPI 3.1 description of the HTTP API,
// served by the edge at GET /v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte
