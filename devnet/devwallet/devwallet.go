// Package devwallet signs payments with the development chain's publicly
// known demo accounts and runs the chained-payment demo, so the dashboard of
// a local network can offer a payment form and a demo button. It is a
// development tool: devnet mounts it on its sidecars (node.WithAPIExtension)
// and only on a test network; production sidecars never link it.
package devwallet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/demo"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
	"github.com/allegro-mesh/allegro/validator"
)

// Routes of the dev wallet.
const (
	RouteDevAccounts = "/api/v1/dev/accounts"
	RouteDevPay      = "/api/v1/dev/pay"
	RouteDevDemo     = "/api/v1/dev/demo"
)

// Limits of the dev wallet.
const (
	// maxDevBody bounds a dev wallet request body.
	maxDevBody = 4 << 10
	// maxDevAmount is the largest payment the form accepts, in dollars.
	maxDevAmount = 1_000_000
	// payTimeout bounds one dev payment, from signing to its QC.
	payTimeout = 30 * time.Second
	// busyWait is how long a payment waits for the one running before it
	// (409 BUSY after that).
	busyWait = 10 * time.Second
	// demoTimeout bounds one run of the chained-payment demo.
	demoTimeout = 3 * time.Minute
	// nonceRetries bounds how often a payment is re-signed with the next
	// nonce when the validators already hold one for the current nonce (a
	// payment signed elsewhere, for example by the demo, not yet on chain).
	nonceRetries = 8
)

// DevWalletParams is what the dev wallet needs from its sidecar.
type DevWalletParams struct {
	// Committee verifies the QCs; QCShards and Bootstrap let the demo's
	// light client join the mesh.
	Committee *qc.Committee
	QCShards  int
	Bootstrap []peer.AddrInfo
	// Chain gives the demo accounts' nonces and balances.
	Chain tempo.ChainReader
	// ChainURL is the chain's JSON-RPC URL (ws:// for head updates), for the
	// demo; empty disables the demo.
	ChainURL string
	// APIAddr returns the sidecar's own API address (host:port), known once
	// the API listens: payments are submitted there.
	APIAddr func() string
	// Settled reports whether a transaction is on chain (its QC is then no
	// longer needed as a parent). Nil: never.
	Settled func(qc.Hash) bool
	// Overlay returns the sidecar's validator's pending debits and QC
	// credits of an account (node.ExtensionContext.Overlay). Nil: none.
	Overlay func(qc.Address) validator.Overlay
	// Logger (nil: discarded).
	Logger *slog.Logger
}

// DevWallet signs payments for the development chain's demo accounts and
// runs the chained-payment demo, for the dashboard. Only for test networks:
// the keys are public.
type DevWallet struct {
	p        DevWalletParams
	log      *slog.Logger
	accounts []devkit.Account

	// busy admits one payment or demo at a time, so nonces do not race.
	busy chan struct{}

	mu sync.Mutex
	// next is the next nonce to use per account, after this wallet's own
	// certified payments (the chain's nonce lags until they settle).
	next map[common.Address]uint64
	// credit is, per account, the QC of the newest payment this wallet made
	// to it: the parent of its next payment while that is not on chain.
	credit map[common.Address]*qc.QC
}

// NewDevWallet returns a dev wallet for the sidecar described by p.
func NewDevWallet(p DevWalletParams) (*DevWallet, error) {
	switch {
	case p.Committee == nil:
		return nil, errors.New("dev wallet: committee is nil")
	case p.Chain == nil:
		return nil, errors.New("dev wallet: chain is nil")
	case p.APIAddr == nil:
		return nil, errors.New("dev wallet: APIAddr is nil")
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Settled == nil {
		p.Settled = func(qc.Hash) bool { return false }
	}
	return &DevWallet{
		p: p, log: p.Logger.With("component", "devwallet"), accounts: devkit.DemoAccounts(),
		busy: make(chan struct{}, 1), next: map[common.Address]uint64{}, credit: map[common.Address]*qc.QC{},
	}, nil
}

// Register mounts the dev wallet's routes with handle (for example
// apiserver.Server.Handle).
func (d *DevWallet) Register(handle func(pattern string, h http.Handler)) {
	handle("GET "+RouteDevAccounts, http.HandlerFunc(d.handleAccounts))
	handle("POST "+RouteDevPay, sameOrigin(http.HandlerFunc(d.handlePay)))
	handle("POST "+RouteDevDemo, sameOrigin(http.HandlerFunc(d.handleDemo)))
}

// sameOrigin refuses a browser request sent by another site's page: the
// API allows every origin for reads, and a cross-site POST without a
// preflight would otherwise spend the demo accounts. Requests without an
// Origin header (curl, programs) are not from a browser page and pass.
func sameOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			u, err := url.Parse(origin)
			if err != nil || u.Host != r.Host {
				writeError(w, http.StatusForbidden, "FORBIDDEN", "dev wallet requests must come from this sidecar's own page, not "+origin)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// account finds a demo account by name or address.
func (d *DevWallet) account(s string) (devkit.Account, bool) {
	s = strings.TrimSpace(s)
	for _, a := range d.accounts {
		if strings.EqualFold(s, a.Name) || strings.EqualFold(s, a.Address.Hex()) {
			return a, true
		}
	}
	return devkit.Account{}, false
}

// ---- accounts ----

// DevAccount is a demo account in GET /api/v1/dev/accounts. Amounts are
// token units. Pending payments are those this sidecar's validator holds
// in its overlay (payments it signed from the account, QCs paying it) that
// the chain does not show at BlockHeight; Available is what the validators
// let the account spend: Balance - PendingDebit + PendingCredit.
type DevAccount struct {
	Name          string        `json:"name"`
	Address       string        `json:"address"`
	Balance       apiserver.U64 `json:"balance"` // on chain at BlockHeight
	PendingDebit  apiserver.U64 `json:"pending_debit"`
	PendingCredit apiserver.U64 `json:"pending_credit"`
	Available     apiserver.U64 `json:"available"`
}

// DevAccountsResponse is the body of GET /api/v1/dev/accounts.
type DevAccountsResponse struct {
	Token       string        `json:"token"`
	Decimals    int           `json:"decimals"`
	BlockHeight apiserver.U64 `json:"block_height"`
	Accounts    []DevAccount  `json:"accounts"`
	DemoEnabled bool          `json:"demo_enabled"`
}

func (d *DevWallet) handleAccounts(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	view, err := d.p.Chain.Latest(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "chain: "+err.Error())
		return
	}
	resp := DevAccountsResponse{Token: devkit.TokenAddress.Hex(), Decimals: devkit.TokenDecimals,
		BlockHeight: apiserver.U64(view.Head().Number), DemoEnabled: d.p.ChainURL != ""}
	nonces := tempo.NewNonceReads(view)
	for _, a := range d.accounts {
		b, err := view.BalanceOf(ctx, devkit.TokenAddress, a.Address)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "balance of "+a.Name+": "+err.Error())
			return
		}
		acct := DevAccount{Name: a.Name, Address: a.Address.Hex(), Balance: apiserver.U64(b.Uint64())}
		if d.p.Overlay != nil {
			debit, credit, err := pendingAt(ctx, nonces, d.p.Overlay(qc.Address(a.Address)))
			if err != nil {
				writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "nonces for "+a.Name+": "+err.Error())
				return
			}
			acct.PendingDebit, acct.PendingCredit = apiserver.U64(debit), apiserver.U64(credit)
		}
		avail := uint64(acct.Balance) + uint64(acct.PendingCredit)
		acct.Available = apiserver.U64(avail - min(avail, uint64(acct.PendingDebit)))
		resp.Accounts = append(resp.Accounts, acct)
	}
	writeJSON(w, http.StatusOK, resp)
}

// pendingAt sums an overlay's token payments that the view behind nonces
// does not show yet. A payment is on chain at the view once its sender's
// nonce there has passed the payment's nonce; the overlay is pruned only
// some time after that, so reading it alone would count settled payments
// twice.
func pendingAt(ctx context.Context, nonces *tempo.NonceReads, o validator.Overlay) (debit, credit uint64, err error) {
	token := qc.Address(devkit.TokenAddress)
	for _, side := range []struct {
		effects []qc.Effects
		sum     *uint64
	}{{o.Debits, &debit}, {o.Credits, &credit}} {
		for i := range side.effects {
			e := &side.effects[i]
			if e.Asset != token {
				continue
			}
			settled, err := nonces.Included(ctx, common.Address(e.Sender), e.NonceKey, e.NonceSeq)
			if err != nil {
				return 0, 0, err
			}
			if !settled {
				*side.sum += e.Amount
			}
		}
	}
	return debit, credit, nil
}

// ---- pay ----

// DevPayRequest is the body of POST /api/v1/dev/pay. From and To are demo
// account names (alice, bob, carol) or addresses; Amount is in dollars
// with at most 6 decimals ("10", "0.25").
type DevPayRequest struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Amount string `json:"amount"`
}

// DevPayResponse is the body of a certified dev payment.
type DevPayResponse struct {
	TxHash     string        `json:"tx_hash"`
	QCHash     string        `json:"qc_hash"`
	Signers    []string      `json:"signers"`
	NonceSeq   apiserver.U64 `json:"nonce_seq"`
	ParentTx   string        `json:"parent_tx,omitempty"`
	TimeToQCMs float64       `json:"time_to_qc_ms"`
}

// parsePay checks a pay request; errors name the field.
func (d *DevWallet) parsePay(req DevPayRequest) (from, to devkit.Account, amount uint64, err error) {
	var ok bool
	if from, ok = d.account(req.From); !ok {
		return from, to, 0, fmt.Errorf("from: %q is not a demo account (alice, bob, carol)", truncate(req.From, 60))
	}
	if to, ok = d.account(req.To); !ok {
		return from, to, 0, fmt.Errorf("to: %q is not a demo account (alice, bob, carol)", truncate(req.To, 60))
	}
	if from.Address == to.Address {
		return from, to, 0, errors.New("to: must differ from from")
	}
	if amount, err = ParseDollars(req.Amount); err != nil {
		return from, to, 0, fmt.Errorf("amount: %w", err)
	}
	return from, to, amount, nil
}

// ParseDollars parses a positive dollar amount with at most 6 decimals
// ("10", "0.5", "1.000001") into token units.
func ParseDollars(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && frac == "") || len(frac) > devkit.TokenDecimals || len(whole) > 7 {
		return 0, fmt.Errorf("%q is not a dollar amount with at most %d decimals", truncate(s, 40), devkit.TokenDecimals)
	}
	for _, c := range whole + frac {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a dollar amount with at most %d decimals", truncate(s, 40), devkit.TokenDecimals)
		}
	}
	w, _ := strconv.ParseUint(whole, 10, 64) // at most 7 digits
	f, _ := strconv.ParseUint((frac + "000000")[:devkit.TokenDecimals], 10, 64)
	units := w*devkit.Dollar + f
	switch {
	case units == 0:
		return 0, errors.New("must be positive")
	case units > maxDevAmount*devkit.Dollar:
		return 0, fmt.Errorf("at most %d dollars", maxDevAmount)
	}
	return units, nil
}

func (d *DevWallet) handlePay(w http.ResponseWriter, r *http.Request) {
	var req DevPayRequest
	if !readJSON(w, r, &req) {
		return
	}
	from, to, amount, err := d.parsePay(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	wait := time.NewTimer(busyWait)
	defer wait.Stop()
	select {
	case d.busy <- struct{}{}:
		defer func() { <-d.busy }()
	case <-wait.C:
		writeError(w, http.StatusConflict, "BUSY", "the dev wallet is busy with another payment or the demo")
		return
	case <-r.Context().Done():
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), payTimeout)
	defer cancel()
	resp, err := d.pay(ctx, from, to, amount)
	if err != nil {
		var rej *client.RejectError
		if errors.As(err, &rej) {
			writeJSON(w, http.StatusUnprocessableEntity, apiserver.SubmitRejectResponse{
				Reject: apiserver.JSONReject{Code: rej.Code.String(), Message: rej.Message}})
			return
		}
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// pay signs and submits one payment, moving to the next nonce while the
// validators say the current one is taken.
func (d *DevWallet) pay(ctx context.Context, from, to devkit.Account, amount uint64) (*DevPayResponse, error) {
	view, err := d.p.Chain.Latest(ctx)
	if err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	chainNonce, err := view.NonceOf(ctx, from.Address, [32]byte{})
	if err != nil {
		return nil, fmt.Errorf("chain nonce of %s: %w", from.Name, err)
	}
	d.mu.Lock()
	nonce := max(chainNonce, d.next[from.Address])
	parent := d.credit[from.Address]
	d.mu.Unlock()
	if parent != nil && d.p.Settled(parent.TxHash) {
		parent = nil
	}

	wallet, err := client.New(client.Config{Endpoints: []string{d.p.APIAddr()}, Committee: d.p.Committee, Retries: -1})
	if err != nil {
		return nil, err
	}
	defer wallet.Close()
	chainID := d.p.Committee.Domain().ChainID
	for attempt := 0; ; attempt++ {
		var opts []client.PaymentOption
		if parent != nil {
			opts = append(opts, client.WithParent(parent))
		}
		req, err := client.NewEVMPayment(from.Key, chainID, nonce, devkit.TokenAddress, to.Address, amount, opts...)
		if err != nil {
			return nil, err
		}
		res, err := wallet.Pay(ctx, req, nil)
		var rej *client.RejectError
		if errors.As(err, &rej) && attempt < nonceRetries {
			switch {
			case rej.Code == fastpayv1.RejectCode_NONCE_SEQ_TOO_LOW || rej.Code == fastpayv1.RejectCode_EQUIVOCATION:
				nonce++
				continue
			case rej.Code == fastpayv1.RejectCode_NONCE_SEQ_TOO_HIGH && nonce > chainNonce:
				// A payment of ours never reached the chain: start over
				// from the chain's nonce.
				nonce = chainNonce
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.next[from.Address] = nonce + 1
		d.credit[to.Address] = res.QC
		d.mu.Unlock()
		d.log.Info("dev payment certified", "from", from.Name, "to", to.Name, "amount", amount, "tx", res.TxHash, "nonce", nonce)
		out := &DevPayResponse{TxHash: res.TxHash.Hex(), QCHash: res.QC.Hash.Hex(), NonceSeq: apiserver.U64(nonce),
			TimeToQCMs: float64(res.TimeToQC.Microseconds()) / 1000}
		for _, c := range res.QC.Certs {
			out.Signers = append(out.Signers, c.SignerName)
		}
		if parent != nil {
			out.ParentTx = parent.TxHash.Hex()
		}
		return out, nil
	}
}

// ---- demo ----

// DemoLine is one line of POST /api/v1/dev/demo's newline-delimited JSON
// stream: Type "line" (Text: a timeline line), then one "result" or
// "error" (Message) line.
type DemoLine struct {
	Type    string      `json:"type"`
	Text    string      `json:"text,omitempty"`
	Message string      `json:"message,omitempty"`
	Result  *DemoResult `json:"result,omitempty"`
}

// DemoResult sums up a finished demo.
type DemoResult struct {
	Tx1            string                   `json:"tx1"`
	Tx2            string                   `json:"tx2"`
	QC1            string                   `json:"qc1"`
	QC2            string                   `json:"qc2"`
	HeightAtStart  apiserver.U64            `json:"height_at_start"`
	HeightAtQC1    apiserver.U64            `json:"height_at_qc1"`
	HeightAtQC2    apiserver.U64            `json:"height_at_qc2"`
	TimeToQC1Ms    float64                  `json:"time_to_qc1_ms"`
	TimeToQC2Ms    float64                  `json:"time_to_qc2_ms"`
	QCsBeforeBlock bool                     `json:"qcs_before_block"`
	Settled1       apiserver.U64            `json:"settled1"`
	Settled2       apiserver.U64            `json:"settled2"`
	Balances       map[string]apiserver.U64 `json:"balances"`
}

func (d *DevWallet) handleDemo(w http.ResponseWriter, r *http.Request) {
	if d.p.ChainURL == "" {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the demo needs the sidecar's chain URL ([chain] url)")
		return
	}
	select {
	case d.busy <- struct{}{}:
		defer func() { <-d.busy }()
	default:
		writeError(w, http.StatusConflict, "BUSY", "a payment or a demo is already running")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), demoTimeout)
	defer cancel()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var wmu sync.Mutex
	send := func(l DemoLine) {
		b, err := json.Marshal(l)
		if err != nil {
			return
		}
		wmu.Lock()
		defer wmu.Unlock()
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(append(b, '\n')); err == nil {
			_ = rc.Flush()
		}
	}
	lines := &lineWriter{emit: func(s string) { send(DemoLine{Type: "line", Text: s}) }}

	t := demo.Target{ChainURL: d.p.ChainURL, Sidecars: []string{d.p.APIAddr()}, Bootstrap: d.p.Bootstrap,
		Committee: d.p.Committee, QCShards: d.p.QCShards}
	d.log.Info("dev demo started")
	rep, err := demo.Run(ctx, t, lines)
	lines.Flush()
	if err != nil {
		d.log.Warn("dev demo failed", "err", err)
		send(DemoLine{Type: "error", Message: err.Error()})
		return
	}
	res := &DemoResult{
		Tx1: rep.QC1.TxHash.Hex(), Tx2: rep.QC2.TxHash.Hex(), QC1: rep.QC1.Hash.Hex(), QC2: rep.QC2.Hash.Hex(),
		HeightAtStart: apiserver.U64(rep.HeightAtStart), HeightAtQC1: apiserver.U64(rep.HeightAtQC1), HeightAtQC2: apiserver.U64(rep.HeightAtQC2),
		TimeToQC1Ms: float64(rep.TimeToQC1.Microseconds()) / 1000, TimeToQC2Ms: float64(rep.TimeToQC2.Microseconds()) / 1000,
		QCsBeforeBlock: rep.QCsBeforeBlock(), Settled1: apiserver.U64(rep.Settled1), Settled2: apiserver.U64(rep.Settled2),
		Balances: map[string]apiserver.U64{},
	}
	for name, b := range rep.Balances {
		res.Balances[name] = apiserver.U64(b)
	}
	d.log.Info("dev demo finished", "tx1", res.Tx1, "tx2", res.Tx2)
	send(DemoLine{Type: "result", Result: res})
}

// lineWriter calls emit with each complete line written to it (without the
// newline). It is safe for concurrent use.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// Flush emits a final line that has no newline.
func (l *lineWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(string(l.buf))
		l.buf = nil
	}
}

// ---- JSON helpers (the API's conventions) ----

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDevBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", "request body exceeds "+strconv.Itoa(maxDevBody)+" bytes")
			return false
		}
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "reading the body: "+err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":{"code":"INTERNAL","message":"encoding the response failed"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, apiserver.ErrorResponse{Error: apiserver.ErrorBody{Code: code, Message: message}})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Extension mounts the dev wallet on a sidecar's API. It refuses a network
// whose committee is not marked test_network: the keys are public.
func Extension() node.APIExtension {
	return func(x node.ExtensionContext) error {
		if !x.Committee.TestNetwork {
			return errors.New("the dev wallet signs with the development chain's public demo keys: only on a test network (committee file test_network = true)")
		}
		boot, err := x.Committee.Bootstrap()
		if err != nil {
			return err
		}
		c, err := x.Committee.Committee()
		if err != nil {
			return err
		}
		w, err := NewDevWallet(DevWalletParams{
			Committee: c, QCShards: x.Committee.QCShards, Bootstrap: boot, Chain: x.Chain, ChainURL: x.ChainURL,
			APIAddr: x.APIAddr,
			Settled: func(h qc.Hash) bool {
				st, ok := x.Board.Status(h)
				return ok && st.Stage >= fastpayv1.TxLifecycleUpdate_INCLUDED
			},
			Overlay: x.Overlay,
			Logger:  x.Logger,
		})
		if err != nil {
			return err
		}
		w.Register(x.Handle)
		x.Logger.Info("dev wallet enabled: this sidecar signs payments with the dev chain's public demo keys (test networks only)")
		return nil
	}
}
