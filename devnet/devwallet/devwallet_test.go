package devwallet

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
	"github.com/allegro-mesh/allegro/validator"
)

func TestParseDollars(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  string
	}{
		{"10", 10 * devkit.Dollar, ""},
		{" 0.5 ", 500_000, ""},
		{"1.000001", 1_000_001, ""},
		{"1000000", 1_000_000 * devkit.Dollar, ""},
		{"0", 0, "must be positive"},
		{"0.000000", 0, "must be positive"},
		{"1000000.01", 0, "at most 1000000 dollars"},
		{"", 0, "not a dollar amount"},
		{"1.", 0, "not a dollar amount"},
		{".5", 0, "not a dollar amount"},
		{"1.0000001", 0, "not a dollar amount"},
		{"-1", 0, "not a dollar amount"},
		{"1e3", 0, "not a dollar amount"},
		{"12345678", 0, "not a dollar amount"},
		{"1,5", 0, "not a dollar amount"},
	} {
		got, err := ParseDollars(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseDollars(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseDollars(%q) error %v, want one containing %q", tc.in, err, tc.err)
		}
	}
}

func testWallet(t *testing.T, chainURL string) (*DevWallet, *tempo.MemChain) {
	t.Helper()
	chain := tempo.NewMemChain()
	chain.SetHead(7)
	for _, a := range devkit.DemoAccounts() {
		chain.SetBalance(devkit.TokenAddress, a.Address, new(big.Int).SetUint64(a.Tokens))
	}
	// The committee only verifies QCs, which these tests never reach.
	c, err := qc.NewCommittee(qc.Domain{ChainID: 1337, Epoch: 1}, []qc.Member{{Name: "v0", ID: qc.ValidatorID{1}}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewDevWallet(DevWalletParams{Committee: c, Chain: chain, ChainURL: chainURL, APIAddr: func() string { return "127.0.0.1:1" }})
	if err != nil {
		t.Fatal(err)
	}
	return w, chain
}

func serve(w *DevWallet) *http.ServeMux {
	mux := http.NewServeMux()
	w.Register(mux.Handle)
	return mux
}

func do(mux http.Handler, method, path, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec
}

// TestDevPayRejectsBadRequests: a valid request, changed one field at a
// time, is refused with 400 naming the field (before anything is signed).
func TestDevPayRejectsBadRequests(t *testing.T) {
	w, _ := testWallet(t, "")
	mux := serve(w)
	valid := func() map[string]any { return map[string]any{"from": "alice", "to": "bob", "amount": "1.5"} }
	if _, _, amount, err := w.parsePay(DevPayRequest{From: "alice", To: "BOB", Amount: "1.5"}); err != nil || amount != 1_500_000 {
		t.Fatalf("the valid fixture: amount %d, %v", amount, err)
	}
	if _, to, _, err := w.parsePay(DevPayRequest{From: "alice", To: devkit.DemoAccounts()[2].Address.Hex(), Amount: "1"}); err != nil || to.Name != "carol" {
		t.Fatalf("an address as recipient: %v %v", to.Name, err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(map[string]any)
		want   string
	}{
		{"unknown sender", func(m map[string]any) { m["from"] = "mallory" }, `from: "mallory" is not a demo account`},
		{"unknown recipient", func(m map[string]any) { m["to"] = "0x0000000000000000000000000000000000000001" }, "to: "},
		{"self payment", func(m map[string]any) { m["to"] = "alice" }, "to: must differ from from"},
		{"zero amount", func(m map[string]any) { m["amount"] = "0" }, "amount: must be positive"},
		{"bad amount", func(m map[string]any) { m["amount"] = "ten" }, "amount: "},
		{"amount as a number", func(m map[string]any) { m["amount"] = 10 }, "body: "},
		{"unknown field", func(m map[string]any) { m["nonce"] = "3" }, `body: json: unknown field "nonce"`},
		{"too large", func(m map[string]any) { m["from"] = strings.Repeat("a", maxDevBody) }, "request body exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.mutate(m)
			b, _ := json.Marshal(m)
			rec := do(mux, http.MethodPost, RouteDevPay, string(b))
			var e apiserver.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
			}
			if rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d (%s), want 400 or 413", rec.Code, rec.Body)
			}
			if !strings.Contains(e.Error.Message, tc.want) {
				t.Fatalf("error %q, want it to contain %q", e.Error.Message, tc.want)
			}
		})
	}
}

func TestDevAccounts(t *testing.T) {
	w, chain := testWallet(t, "ws://127.0.0.1:1")
	mux := serve(w)
	rec := do(mux, http.MethodGet, RouteDevAccounts, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var r DevAccountsResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.BlockHeight != 7 || !r.DemoEnabled || len(r.Accounts) != 3 || r.Accounts[0].Name != "alice" ||
		r.Accounts[0].Balance != apiserver.U64(devkit.AliceTokens) || r.Accounts[2].Address != devkit.DemoAccounts()[2].Address.Hex() {
		t.Fatalf("accounts: %+v", r)
	}

	chain.FailWith(errors.New("node down"))
	if rec := do(mux, http.MethodGet, RouteDevAccounts, ""); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("chain down: %d %s", rec.Code, rec.Body)
	}
	if rec := do(mux, http.MethodPost, RouteDevAccounts, ""); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST accounts: %d", rec.Code)
	}
}

// TestDevAccountsPending: an account's pending debits and credits are the
// overlay's token payments its chain view does not show yet, judged by the
// sender's nonce at that view, and available is the balance moved by them.
func TestDevAccountsPending(t *testing.T) {
	w, chain := testWallet(t, "")
	demo := devkit.DemoAccounts()
	alice, bob, carol := qc.Address(demo[0].Address), qc.Address(demo[1].Address), qc.Address(demo[2].Address)
	token := qc.Address(devkit.TokenAddress)
	pay := func(from, to qc.Address, amount, seq uint64) qc.Effects {
		return qc.Effects{Sender: from, Recipient: to, Amount: amount, Asset: token, NonceSeq: seq}
	}
	overlays := map[qc.Address]validator.Overlay{
		// Alice paid Bob twice; the chain shows the first.
		alice: {Debits: []qc.Effects{pay(alice, bob, 4*devkit.Dollar, 0), pay(alice, bob, 2*devkit.Dollar, 1)}},
		bob: {Credits: []qc.Effects{pay(alice, bob, 4*devkit.Dollar, 0), pay(alice, bob, 2*devkit.Dollar, 1)},
			// Another token does not count.
			Debits: []qc.Effects{{Sender: bob, Recipient: carol, Amount: 7, Asset: qc.Address{0x99}}}},
		carol: {Credits: []qc.Effects{pay(bob, carol, 1, 5)}}, // Bob's nonce 5 is far ahead: pending
	}
	w.p.Overlay = func(a qc.Address) validator.Overlay { return overlays[a] }
	chain.SetNonce(demo[0].Address, [32]byte{}, 1)

	rec := do(serve(w), http.MethodGet, RouteDevAccounts, "")
	var r DevAccountsResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &r); rec.Code != http.StatusOK || err != nil {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	for i, want := range []struct{ debit, credit uint64 }{{2 * devkit.Dollar, 0}, {0, 2 * devkit.Dollar}, {0, 1}} {
		a := r.Accounts[i]
		avail := uint64(a.Balance) + want.credit - want.debit
		if uint64(a.PendingDebit) != want.debit || uint64(a.PendingCredit) != want.credit || uint64(a.Available) != avail {
			t.Errorf("%s: %+v, want debit %d credit %d available %d", a.Name, a, want.debit, want.credit, avail)
		}
	}
}

// TestDevDemoGuards: without a chain URL the demo is unavailable, and only
// one payment or demo runs at a time.
func TestDevDemoGuards(t *testing.T) {
	w, _ := testWallet(t, "")
	if rec := do(serve(w), http.MethodPost, RouteDevDemo, ""); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("no chain URL: %d %s", rec.Code, rec.Body)
	}

	w, _ = testWallet(t, "ws://127.0.0.1:1")
	w.busy <- struct{}{} // a payment is running
	rec := do(serve(w), http.MethodPost, RouteDevDemo, "")
	<-w.busy
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "BUSY") {
		t.Fatalf("busy: %d %s", rec.Code, rec.Body)
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	lw := &lineWriter{emit: func(s string) { got = append(got, s) }}
	for _, chunk := range []string{"one\ntw", "o\n", "", "three\nfour"} {
		if _, err := io.WriteString(lw, chunk); err != nil {
			t.Fatal(err)
		}
	}
	lw.Flush()
	if strings.Join(got, "|") != "one|two|three|four" {
		t.Fatalf("lines %q", got)
	}
}

// TestDevWalletRefusesOtherOrigins: another site's page cannot make a
// visitor's browser spend the demo accounts; the sidecar's own page and
// non-browser clients (no Origin) can.
func TestDevWalletRefusesOtherOrigins(t *testing.T) {
	w, _ := testWallet(t, "")
	mux := serve(w)
	for _, route := range []string{RouteDevPay, RouteDevDemo} {
		req := httptest.NewRequest(http.MethodPost, route, strings.NewReader(`{"from":"alice","to":"mallory","amount":"1"}`))
		req.Header.Set("Origin", "http://evil.example")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Fatalf("%s from another origin: status %d (%s), want 403", route, rec.Code, rec.Body)
		}
	}
	// Same origin (and no origin) reach the handler, which then judges the
	// body: here the unknown recipient gives 400, not 403.
	for _, origin := range []string{"http://example.com", ""} {
		req := httptest.NewRequest(http.MethodPost, RouteDevPay, strings.NewReader(`{"from":"alice","to":"mallory","amount":"1"}`))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("origin %q: status %d (%s), want 400", origin, rec.Code, rec.Body)
		}
	}
}

// TestExtensionRefusesProductionNetwork: the dev wallet's keys are public,
// so a sidecar of a network not marked test_network refuses to start with
// it.
func TestExtensionRefusesProductionNetwork(t *testing.T) {
	cl := nodetest.New(t, 4, 1337, tempo.NewMemChain())
	production := *cl.Committee
	production.TestNetwork = false
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.P2P = p2p.LocalConfig()
	cfg.API.ListenAddr = "127.0.0.1:0"
	_, err := node.New(cfg, node.WithIdentity(production.Members[0].Name, cl.Keys[0]), node.WithCommittee(&production),
		node.WithChain(cl.Chain), node.WithLogger(slog.New(slog.DiscardHandler)), node.WithAPIExtension(Extension()))
	if err == nil || !strings.Contains(err.Error(), "only on a test network") {
		t.Fatalf("dev wallet on a production committee: %v", err)
	}
}
