// Package web holds the web client, embedded in the binary and served by
// the edge at /. It speaks only the public protocol (PROTOCOL.md), like any
// other client.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the web client's files.
func Handler() http.Handler {
	sub, _ := fs.Sub(static, "static")
	return http.FileServer(http.FS(sub))
}
