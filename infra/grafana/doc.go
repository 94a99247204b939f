// Package grafana holds the Grafana dashboard of the platform
// (messenger.json, README "Dashboards") and its test: every metric the
// dashboard queries is one the code defines. No Go code besides.
package grafana
