package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// dashboardFile is the Grafana dashboard of the sidecar's metrics.
const dashboardFile = "../deploy/grafana/allegro-sidecar.json"

// scrape returns the body of GET url and its status.
func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, b := testkit.Get(t, ctx, url)
	return resp.StatusCode, string(b)
}

// TestMetricsListenAddress: with [api] metrics_listen_addr set, /metrics is
// served there and no longer on the API address; without it, on the API
// address as before.
func TestMetricsListenAddress(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithConfig(func(i int, cfg *node.Config) {
		if i == 0 {
			cfg.API.MetricsListenAddr = "127.0.0.1:0"
		}
	}))
	cl.StartAll()
	sep := cl.Nodes[0]
	if sep.API.MetricsAddr() == nil {
		t.Fatal("node 0 has no metrics address")
	}
	code, body := scrape(t, "http://"+sep.API.MetricsAddr().String()+"/metrics")
	// The node's metrics and the API server's own, merged as on the API
	// address.
	for _, want := range []string{"allegro_build_info{", "allegro_p2p_duplicates_total{", "allegro_api_connections_open "} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("metrics address: status %d, no %q in:\n%.2000s", code, want, body)
		}
	}
	if code, _ := scrape(t, "http://"+sep.API.Addr().String()+"/metrics"); code != http.StatusNotFound {
		t.Errorf("API address /metrics with a metrics address set: status %d, want 404", code)
	}
	if code, _ := scrape(t, "http://"+sep.API.Addr().String()+"/readyz"); code == http.StatusNotFound {
		t.Error("API address lost /readyz")
	}
	if code, _ := scrape(t, "http://"+sep.API.MetricsAddr().String()+"/readyz"); code != http.StatusNotFound {
		t.Errorf("metrics address serves /readyz (status %d): it serves /metrics only", code)
	}
	if cl.Nodes[1].API.MetricsAddr() != nil {
		t.Error("node 1 has a metrics address without setting one")
	}
	if code, body := scrape(t, "http://"+cl.Nodes[1].API.Addr().String()+"/metrics"); code != http.StatusOK || !strings.Contains(body, "allegro_build_info{") {
		t.Errorf("default: API address /metrics status %d", code)
	}
}

// TestMetricNamesOfQueries: the extraction the dashboard test relies on
// finds metric names and nothing else in PromQL.
func TestMetricNamesOfQueries(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`histogram_quantile(0.99, sum by (le) (rate(allegro_bulletin_time_to_qc_seconds_bucket{source="formed", instance=~"$instance"}[$__rate_interval])))`,
			"allegro_bulletin_time_to_qc_seconds_bucket"},
		{`sum without (instance) (rate(a_total[5m])) / ignoring(x) group_left(y) b offset 1m > bool 0 and on (job) c{d="e(f)"}`, "a_total b c"},
		{`label_values(allegro_build_info, instance)`, "allegro_build_info"},
		{`max(allegro_p2p_committee_peer_score{member!=""}) by (member)`, "allegro_p2p_committee_peer_score"},
		{`1 - 2e3`, ""},
	} {
		if got := strings.Join(metricNames(tc.expr), " "); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// TestGrafanaDashboardMetricsExist: every metric named by a query of the
// Grafana dashboard is in the /metrics of the real sidecars of a mesh that
// certified and settled a payment on a dev chain, so renaming a metric
// without the dashboard fails here.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	exprs := dashboardQueries(t)
	names := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricNames(e) {
			names[n] = true
		}
	}
	if len(exprs) < 10 || len(names) < 10 {
		t.Fatalf("dashboard has %d queries naming %d metrics: the extraction is broken", len(exprs), len(names))
	}

	_, client := nodetest.DevChain(t, devchain.Config{BlockPeriod: 300 * time.Millisecond, LoadAccounts: -1})
	cl := devCluster(t, client, nil)
	demo := devkit.DemoAccounts()
	req := nodetest.Pay{Key: demo[0].Key, ChainID: devchain.DefaultChainID, Recipient: demo[1].Address, Amount: devkit.Dollar}.Request(t)
	q := cl.PayToQC(0, req, 20*time.Second)
	waitStage(t, cl, q.TxHash, fastpayv1.TxLifecycleUpdate_FINALIZED)

	// The entry sidecar and the others see different paths (client
	// submissions, mesh transactions): every sidecar's metrics count. Peer
	// scores come with pubsub's periodic snapshot: poll until it has come.
	var missing []string
	check := func() bool {
		exposed := map[string]bool{}
		for _, n := range cl.Nodes {
			_, body := scrape(t, "http://"+n.API.Addr().String()+"/metrics")
			for name := range exposedNames(body) {
				exposed[name] = true
			}
		}
		missing = missing[:0]
		for n := range names {
			if !exposed[n] {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0
	}
	deadline := time.Now().Add(20 * time.Second)
	for polls := 0; !check() && polls < 200 && time.Now().Before(deadline); polls++ {
		<-time.After(100 * time.Millisecond) // poll interval
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard queries %d metrics no sidecar exposes: %s", len(missing), strings.Join(missing, ", "))
	}
}

// dashboardQueries returns every PromQL expression of the dashboard: panel
// targets (rows' nested panels included) and template variable queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("%s: panel: %v", dashboardFile, err)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("panel %q has a target without expr", p.Title)
				}
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var s string
		if json.Unmarshal(v.Query, &s) != nil {
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Fatalf("%s: template query %s: %v", dashboardFile, v.Query, err)
			}
			s = q.Query
		}
		exprs = append(exprs, s)
	}
	return exprs
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchers = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promVars     = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promNumber   = regexp.MustCompile(`(^|[^A-Za-z0-9_:])\d[\w.]*`)
	labelValues  = regexp.MustCompile(`label_values\(([^,)]*)(,[^)]*)?\)`)
	promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool", "inf", "nan", "Inf", "NaN"}
)

// metricNames returns the distinct metric names an expression selects, in
// order: identifiers that are not functions, keywords, label names (inside
// matchers and grouping clauses), strings, durations or variables.
func metricNames(expr string) []string {
	s := labelValues.ReplaceAllString(expr, "$1") // Grafana's label_values(metric, label)
	s = promStrings.ReplaceAllString(s, " ")
	s = promMatchers.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = promVars.ReplaceAllString(s, " ")
	s = promNumber.ReplaceAllString(s, "$1 ")
	var out []string
	for _, m := range promIdent.FindAllStringSubmatch(s, -1) {
		id := m[0]
		if m[1] != "" || slices.Contains(promKeywords, id) || slices.Contains(out, id) {
			continue // a function call, a keyword, or seen
		}
		out = append(out, id)
	}
	return out
}

// exposedNames returns the sample names of a Prometheus text exposition
// (histograms as their _bucket, _sum and _count series).
func exposedNames(body string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}
