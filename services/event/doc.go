// Package event defines the stored event schema, version 1: the JSON
// documents kept in the conversation streams and in the user queues. Internal
// services may read them without importing this package (PROTOCOL.md section
// 11); this package only gives the project's own code one definition.
//
// Everything here is plain data and pure functions, safe for concurrent use.
package event
