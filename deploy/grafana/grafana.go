// Package grafana holds the Grafana dashboard of a sidecar's Prometheus
// metrics (allegro-sidecar.json), for generated testnets to provision.
// Every metric its queries name is checked against a running mesh's
// /metrics by node.TestGrafanaDashboardMetricsExist.
package grafana

import _ "embed"

// Dashboard is allegro-sidecar.json: a Grafana dashboard with a
// "datasource" variable (a Prometheus data source) and an "instance"
// variable (the scraped sidecars).
//
//go:embed allegro-sidecar.json
var Dashboard []byte

// DashboardFile is the dashboard's file name.
const DashboardFile = "allegro-sidecar.json"
