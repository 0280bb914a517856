package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/devnet"
	"github.com/allegro-mesh/allegro/devnet/devwallet"
	"github.com/allegro-mesh/allegro/internal/testkit"
)

// TestDashboardOnDevnet runs an in-process devnet (dev chain and four
// sidecars, the dev wallet on) and checks the dashboard's API over HTTP, then
// drives the page in a real Chromium: the chained-payment demo from its
// button, and the unreachable-sidecar banner and recovery.
func TestDashboardOnDevnet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), BlockPeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Stop(stopCtx); err != nil {
			t.Errorf("stop devnet: %v", err)
		}
	}()
	base := "http://" + d.APIAddrs()[0]

	t.Run("http", func(t *testing.T) { testDevnetHTTP(ctx, t, base) })
	exe := findChromium()
	t.Run("browser", func(t *testing.T) {
		if exe == "" {
			if os.Getenv("CI") != "" {
				t.Fatal("chromium not found; on CI .ci/run installs Debian's chromium")
			}
			t.Skip("chromium not found: apt-get install chromium to run the browser test")
		}
		testBrowser(ctx, t, base, exe)
	})
	if exe == "" {
		// Without a browser, at least run the demo endpoint itself.
		t.Run("demo-endpoint", func(t *testing.T) { testDemoEndpoint(ctx, t, base) })
	}
}

// testDevnetHTTP checks the page, the mesh endpoint and a dev payment over
// plain HTTP.
func testDevnetHTTP(ctx context.Context, t *testing.T, base string) {
	for _, path := range []string{"/", "/dashboard/"} {
		body, resp := get(ctx, t, base+path)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<script src="/dashboard/app.js"`) {
			t.Fatalf("GET %s: %d %q", path, resp.StatusCode, truncate(body))
		}
	}

	var mesh apiserver.MeshResponse
	getJSON(ctx, t, base+"/api/v1/mesh", &mesh)
	kinds := map[string]bool{}
	for _, tp := range mesh.Topics {
		kinds[tp.Kind] = true
	}
	for _, k := range []string{"tx", "bulletin", "qc", "other"} {
		if !kinds[k] {
			t.Fatalf("mesh topics %+v: no %q", mesh.Topics, k)
		}
	}
	members := 0
	for _, p := range mesh.Peers {
		if p.Member {
			members++
		}
	}
	if members != 3 {
		t.Fatalf("mesh peers %+v: want the 3 other committee members", mesh.Peers)
	}

	// A committee file: no epochs, so no schedule and no bindings.
	committee, _ := get(ctx, t, base+"/api/v1/committee")
	for _, field := range []string{"epoch_length", "head_height", "seats"} {
		if strings.Contains(committee, `"`+field+`"`) {
			t.Errorf("the committee of a network without epochs has %q: %s", field, truncate(committee))
		}
	}
	if body, resp := get(ctx, t, base+"/api/v1/bindings"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bindings on a network without epochs: %d %s", resp.StatusCode, truncate(body))
	}

	var accts devwallet.DevAccountsResponse
	getJSON(ctx, t, base+devwallet.RouteDevAccounts, &accts)
	if len(accts.Accounts) != 3 || accts.Accounts[0].Name != "alice" || !accts.DemoEnabled {
		t.Fatalf("dev accounts: %+v", accts)
	}

	// Carol pays Bob: neither nonce is one the demo uses later.
	body := postJSON(ctx, t, base+devwallet.RouteDevPay, `{"from":"carol","to":"bob","amount":"1.25"}`, http.StatusOK)
	var paid devwallet.DevPayResponse
	if err := json.Unmarshal([]byte(body), &paid); err != nil {
		t.Fatal(err)
	}
	if len(paid.Signers) < 3 || paid.QCHash == "" {
		t.Fatalf("dev pay: %+v", paid)
	}
	var st apiserver.TxStatusResponse
	getJSON(ctx, t, base+"/api/v1/tx/"+paid.TxHash+"/status", &st)
	if !st.QCFormed || st.QCHash != paid.QCHash {
		t.Fatalf("status of the dev payment: %+v", st)
	}
	postJSON(ctx, t, base+devwallet.RouteDevPay, `{"from":"carol","to":"carol","amount":"1"}`, http.StatusBadRequest)
}

// testDemoEndpoint runs the demo over HTTP and reads its stream.
func testDemoEndpoint(ctx context.Context, t *testing.T, base string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+devwallet.RouteDevDemo, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("demo: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	var lines int
	var res *devwallet.DemoResult
	for sc.Scan() {
		var l devwallet.DemoLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("demo line %q: %v", sc.Text(), err)
		}
		switch l.Type {
		case "line":
			lines++
		case "error":
			t.Fatalf("demo failed: %s", l.Message)
		case "result":
			res = l.Result
		}
	}
	if res == nil || lines < 5 || res.Tx1 == "" || res.Tx2 == "" || res.Settled2 < res.Settled1 {
		t.Fatalf("demo: %d lines, result %+v", lines, res)
	}
}

// ---- the browser ----

// findChromium returns the path of Debian's chromium (or another Chrome),
// or "" when there is none.
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifacts returns the folder for screenshots: $ALLEGRO_ARTIFACTS, or the
// test's temporary folder.
func artifacts(t *testing.T) string {
	dir := os.Getenv("ALLEGRO_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testBrowser(ctx context.Context, t *testing.T, api, exe string) {
	target, err := url.Parse(api)
	if err != nil {
		t.Fatal(err)
	}
	// The page goes through a proxy that can be switched off and on, to
	// play an unreachable sidecar.
	proxy := newSwitchProxy(t, target)
	page := "http://" + proxy.addr + "/"
	dir := artifacts(t)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1366, 768))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	watchPage(t, bctx, page)

	if err := chromedp.Do(bctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	type ready struct {
		Conn    string `json:"conn"`
		Members int    `json:"members"`
		Wallet  bool   `json:"wallet"`
		Demo    bool   `json:"demo"`
	}
	poll(t, bctx, "page live with the committee and the dev wallet", 30*time.Second, `({
		conn: document.getElementById("conn").textContent,
		members: document.querySelectorAll("#members tbody tr").length,
		wallet: !document.getElementById("wallet").hidden,
		demo: !document.getElementById("demo-run").disabled,
	})`, func(r ready) bool { return r.Conn == "live" && r.Members == 4 && r.Wallet && r.Demo })

	// A committee file: the committee view says the committee is fixed and
	// shows no epoch progress, seats or bindings.
	type fixed struct {
		Epochs string `json:"epochs"`
		Note   string `json:"note"`
		View   bool   `json:"view"`
		Where  bool   `json:"where"`
	}
	fx := poll(t, bctx, "the committee view of a fixed committee", 20*time.Second, `({
		epochs: document.getElementById("epochs").dataset.epochs || "",
		note: document.getElementById("epoch-fixed").hidden ? "" : document.getElementById("epoch-fixed").textContent,
		view: !document.getElementById("epoch-view").hidden, where: !document.getElementById("epoch-where").hidden,
	})`, func(f fixed) bool { return f.Epochs != "" })
	if fx.Epochs != "no" || fx.View || fx.Where || !strings.Contains(fx.Note, "committee is fixed") || !strings.Contains(fx.Note, "4 validators") {
		t.Errorf("committee view of a network without epochs: %+v", fx)
	}

	// The chained demo, from the page's button.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.ID("demo-run"))); err != nil {
		t.Fatal(err)
	}
	type card struct {
		QC    string `json:"qc"`
		Stage string `json:"stage"`
		Text  string `json:"text"`
	}
	type demoState struct {
		State  string `json:"state"`
		Status string `json:"status"`
		Tx1    string `json:"tx1"`
		Tx2    string `json:"tx2"`
		Card1  *card  `json:"card1"`
		Card2  *card  `json:"card2"`
		Log    string `json:"log"`
	}
	final := func(c *card) bool { return c != nil && c.QC == "yes" && c.Stage == "FINALIZED" }
	st := poll(t, bctx, "demo done, both payments' QCs and FINALIZED in the feed", 90*time.Second, `(() => {
		const s = document.getElementById("demo-status");
		const desc = (h) => {
			const c = h ? document.querySelector('.tx[data-tx="' + h + '"]') : null;
			return c ? { qc: c.dataset.qc, stage: c.dataset.stage, text: c.innerText } : null;
		};
		return { state: s.dataset.state || "", status: s.textContent, tx1: s.dataset.tx1 || "", tx2: s.dataset.tx2 || "",
			card1: desc(s.dataset.tx1), card2: desc(s.dataset.tx2), log: document.getElementById("demo-log").innerText };
	})()`, func(s demoState) bool {
		return s.State == "error" || (s.State == "done" && final(s.Card1) && final(s.Card2))
	})
	if st.State == "error" {
		t.Fatalf("the demo failed on the page: %s\ntimeline:\n%s", st.Status, st.Log)
	}
	t.Logf("demo on the page: %s\ntimeline:\n%s", st.Status, st.Log)
	for i, c := range []struct {
		card     *card
		from, to string
	}{{st.Card1, "alice", "bob"}, {st.Card2, "bob", "carol"}} {
		for _, want := range []string{c.from, c.to, "$10.00", "signed · quorum 3", "QC", "included", "FINALIZED"} {
			if !strings.Contains(c.card.Text, want) {
				t.Errorf("payment %d's card does not show %q:\n%s", i+1, want, c.card.Text)
			}
		}
	}
	if !strings.Contains(st.Log, "QC formed") {
		t.Errorf("the demo timeline shows no QC:\n%s", st.Log)
	}
	screenshot(t, bctx, filepath.Join(dir, "dashboard-demo.png"))

	// The sidecar becomes unreachable: the banner shows; it returns: the
	// page recovers, and new payments appear again.
	type conn struct {
		Banner bool   `json:"banner"`
		Text   string `json:"text"`
		Conn   string `json:"conn"`
	}
	connExpr := `({ banner: !document.getElementById("banner").hidden,
		text: document.getElementById("banner").textContent, conn: document.getElementById("conn").textContent })`
	proxy.stop()
	c := poll(t, bctx, "unreachable banner", 20*time.Second, connExpr, func(c conn) bool { return c.Banner && c.Conn == "unreachable" })
	if c.Text != "sidecar unreachable — retrying" {
		t.Errorf("banner text %q", c.Text)
	}
	screenshot(t, bctx, filepath.Join(dir, "dashboard-unreachable.png"))
	proxy.start(t)
	poll(t, bctx, "recovery after the sidecar returns", 30*time.Second, connExpr, func(c conn) bool { return !c.Banner && c.Conn == "live" })

	// The balances follow the chain head: never more than a block or two
	// behind the head the page shows (they were read every 5 s, 5 blocks).
	type balances struct {
		Head      int              `json:"head"`
		Height    int              `json:"height"`
		Available map[string]int64 `json:"available"`
	}
	balExpr := `(() => {
		const av = {};
		for (const s of document.querySelectorAll("#balances .bal")) av[s.dataset.account] = Number(s.dataset.available);
		return { head: Number(document.getElementById("head-height").textContent.replace("#", "")) || 0,
			height: Number(document.getElementById("balances").dataset.height || 0), available: av };
	})()`
	before := poll(t, bctx, "balances with what each account may spend", 20*time.Second, balExpr, func(b balances) bool {
		return b.Height > 0 && len(b.Available) == 3
	})
	for i := range 12 {
		b := poll(t, bctx, "a balance sample", 5*time.Second, balExpr, func(b balances) bool { return b.Head > 0 })
		if b.Head-b.Height > 2 {
			t.Errorf("sample %d: balances at #%d while the page shows head #%d", i, b.Height, b.Head)
		}
		if i < 11 {
			select {
			case <-time.After(250 * time.Millisecond): // samples spread over three blocks
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
	}

	if err := chromedp.Do(bctx,
		chromedp.SetValue(chromedp.ID("pay-from"), "carol"),
		chromedp.SetValue(chromedp.ID("pay-to"), "alice"),
		chromedp.SetValue(chromedp.ID("pay-amount"), "2"),
		chromedp.Click(chromedp.ID("pay-submit")),
	); err != nil {
		t.Fatal(err)
	}
	type paid struct {
		Result string `json:"result"`
		Card   bool   `json:"card"`
	}
	p := poll(t, bctx, "a payment from the form, certified and in the feed", 30*time.Second, `({
		result: document.getElementById("pay-result").textContent,
		card: [...document.querySelectorAll('.tx[data-qc="yes"]')].some((c) => c.innerText.includes("carol → alice")),
	})`, func(p paid) bool {
		return strings.HasPrefix(p.Result, "failed") || (strings.HasPrefix(p.Result, "QC in") && p.Card)
	})
	if !strings.HasPrefix(p.Result, "QC in") {
		t.Fatalf("payment from the form: %s", p.Result)
	}
	// The certified payment moves what both accounts may spend, pending
	// or settled.
	const two = 2_000_000
	poll(t, bctx, "carol's and alice's balances moved by the $2 payment", 30*time.Second, balExpr, func(b balances) bool {
		return b.Available["carol"] == before.Available["carol"]-two && b.Available["alice"] == before.Available["alice"]+two
	})

	// The peer score is explained: how it is made here, and each member's
	// terms on a click.
	type scoreHelp struct {
		Help    string `json:"help"`
		Tooltip string `json:"tooltip"`
		Buttons int    `json:"buttons"`
	}
	sh := poll(t, bctx, "the peer score explained", 20*time.Second, `(() => {
		const b = document.querySelectorAll("#members .score-btn");
		return { help: document.getElementById("score-help").textContent, tooltip: b.length ? b[0].title : "", buttons: b.length };
	})()`, func(s scoreHelp) bool { return s.Buttons == 3 && strings.Contains(s.Help, "invalid messages") })
	for _, want := range []string{"gossipsub score", "committee bonus +2500.00", "topics", "IP colocation", "behaviour penalty", "invalid messages"} {
		if !strings.Contains(sh.Tooltip, want) {
			t.Errorf("score tooltip does not show %q:\n%s", want, sh.Tooltip)
		}
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#members .score-btn"))); err != nil {
		t.Fatal(err)
	}
	terms := poll(t, bctx, "a member's score terms on a click", 20*time.Second,
		`(document.querySelector("#members tr.score-parts") || { innerText: "" }).innerText`,
		func(s string) bool { return strings.Contains(s, "committee bonus") })
	for _, want := range []string{"score ", "committee bonus +2500.00", "topics", "IP colocation", "behaviour penalty", "first deliveries", "invalid messages"} {
		if !strings.Contains(terms, want) {
			t.Errorf("score terms do not show %q:\n%s", want, terms)
		}
	}
	screenshot(t, bctx, filepath.Join(dir, "dashboard-score.png"))

	// After a reload the feed shows the payments the board holds: the
	// demo's two and the form's, with their QCs and settlement.
	if err := chromedp.Do(bctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	type reloaded struct {
		Conn  string `json:"conn"`
		Card1 *card  `json:"card1"`
		Card2 *card  `json:"card2"`
		Form  bool   `json:"form"`
	}
	r := poll(t, bctx, "the earlier payments listed again after a reload", 30*time.Second, `(() => {
		const desc = (h) => {
			const c = document.querySelector('.tx[data-tx="' + h + '"]');
			return c ? { qc: c.dataset.qc, stage: c.dataset.stage, text: c.innerText } : null;
		};
		return { conn: document.getElementById("conn").textContent, card1: desc("`+st.Tx1+`"), card2: desc("`+st.Tx2+`"),
			form: [...document.querySelectorAll('.tx[data-qc="yes"]')].some((c) => c.innerText.includes("carol → alice") && c.innerText.includes("$2.00")) };
	})()`, func(r reloaded) bool {
		return r.Conn == "live" && final(r.Card1) && final(r.Card2) && r.Form &&
			strings.Contains(r.Card1.Text, "alice") && strings.Contains(r.Card2.Text, "carol")
	})
	for i, c := range []*card{r.Card1, r.Card2} {
		for _, want := range []string{"$10.00", "3/4 signed · quorum 3", "included", "block #"} {
			if !strings.Contains(c.Text, want) && !(want == "3/4 signed · quorum 3" && strings.Contains(c.Text, "4/4 signed · quorum 3")) {
				t.Errorf("payment %d's card after the reload does not show %q:\n%s", i+1, want, c.Text)
			}
		}
	}
	screenshot(t, bctx, filepath.Join(dir, "dashboard-reloaded.png"))
}

// watchPage fails the test, when it ends, on requests of the browser
// behind bctx outside page's origin and on uncaught JavaScript exceptions.
func watchPage(t *testing.T, bctx context.Context, page string) {
	t.Helper()
	origin, err := url.Parse(page)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var foreign, exceptions []string
	if err := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if u, err := url.Parse(e.Request.URL); err != nil || (u.Scheme != "data" && u.Host != origin.Host) {
				foreign = append(foreign, e.Request.URL)
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			exceptions = append(exceptions, msg)
		}
	}); err != nil {
		t.Fatalf("start the browser: %v", err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if len(foreign) > 0 {
			t.Errorf("the page made requests outside its origin: %v", foreign)
		}
		if len(exceptions) > 0 {
			t.Errorf("uncaught JavaScript exceptions: %v", exceptions)
		}
	})
}

// poll evaluates expr in the page until ok accepts its value, failing the
// test after timeout.
func poll[T any](t *testing.T, ctx context.Context, what string, timeout time.Duration, expr string, ok func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last T
	for {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
		if err == nil {
			last = v
			if ok(v) {
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last state %+v (last error %v)", what, timeout, last, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		}
	}
}

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// switchProxy is a reverse proxy to a sidecar's API that can be stopped
// (connections refused, open streams cut) and started again on the same
// address.
type switchProxy struct {
	addr    string
	handler http.Handler
	srv     *http.Server
}

func newSwitchProxy(t *testing.T, target *url.URL) *switchProxy {
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1 // stream events and the demo's lines at once
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p := &switchProxy{addr: "127.0.0.1:0", handler: rp}
	p.start(t)
	t.Cleanup(p.stop)
	return p
}

func (p *switchProxy) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy listen on %s: %v", p.addr, err)
	}
	p.addr = ln.Addr().String()
	p.srv = &http.Server{Handler: p.handler, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
}

func (p *switchProxy) stop() {
	if p.srv != nil {
		_ = p.srv.Close()
		p.srv = nil
	}
}

// ---- HTTP helpers ----

func get(ctx context.Context, t *testing.T, u string) (string, *http.Response) {
	t.Helper()
	resp, b := testkit.Get(t, ctx, u)
	return string(b), resp
}

func getJSON(ctx context.Context, t *testing.T, u string, v any) {
	t.Helper()
	body, resp := get(ctx, t, u)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, truncate(body))
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

func postJSON(ctx context.Context, t *testing.T, u, body string, want int) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("POST %s %s: %d %s, want %d", u, body, resp.StatusCode, truncate(string(b)), want)
	}
	return string(b)
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
