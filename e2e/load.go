package main

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/safety"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// account is a funded dev-chain account the driver pays from. Only its
// owner (one lane, the demo lane or the double-spender) touches it.
type account struct {
	name    string
	key     *ecdsa.PrivateKey
	addr    common.Address
	nonce   uint64 // next nonce to use
	retired bool   // a payment of it ended without a QC: its nonce is unusable
}

func newAccount(a devkit.Account) *account {
	return &account{name: a.Name, key: a.Key, addr: a.Address}
}

// recorder holds every payment attempted, as safety.Payment records.
type recorder struct {
	mu        sync.Mutex
	payments  []safety.Payment
	phase     string
	transient map[string]int // rejects retried elsewhere, by code
	retired   []string
}

func newRecorder() *recorder { return &recorder{transient: map[string]int{}} }

func (r *recorder) setPhase(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phase = name
}

// add records p (its Phase is the current phase) and returns its index.
func (r *recorder) add(p safety.Payment) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.Phase = r.phase
	r.payments = append(r.payments, p)
	return len(r.payments) - 1
}

func (r *recorder) update(i int, f func(p *safety.Payment)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.payments[i])
}

func (r *recorder) countTransient(code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.transient[code]++
}

func (r *recorder) retire(a *account, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a.retired = true
	r.retired = append(r.retired, fmt.Sprintf("%s (%s)", a.name, why))
}

// snapshot returns a copy of the payments.
func (r *recorder) snapshot() []safety.Payment {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]safety.Payment(nil), r.payments...)
}

// counts returns payments sent and with a QC seen by the driver.
func (r *recorder) counts() (sent, withQC int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.payments {
		sent++
		if !p.QCAt.IsZero() {
			withQC++
		}
	}
	return sent, withQC
}

// transientRejects are reject codes another sidecar, or the same one a
// little later, may answer differently: a sidecar that lags (it missed the
// previous nonce or a parent QC) or cannot reach its chain.
var transientRejects = map[fastpayv1.RejectCode]bool{
	fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE: true,
	fastpayv1.RejectCode_NONCE_SEQ_TOO_HIGH:    true,
	fastpayv1.RejectCode_MISSING_PARENT_QC:     true,
}

// driver sends the load: lanes of steady payments (some chained), the demo
// chain alice → bob → carol → alice, and double-spends.
type driver struct {
	cfg       Config
	log       *slog.Logger
	committee *qc.Committee
	// committeeOf gives another epoch's committee (nil without epochs).
	committeeOf func(uint64) *qc.Committee
	chainID     uint64
	token       common.Address
	topo        *topology
	rec         *recorder
	names       []string          // sidecar names, committee order
	byAPI       map[string]string // API host:port -> sidecar name
	clients     map[string]*client.Client
	single      map[string]*client.Client // no fallback: double-spends
	recipient   []common.Address
	chainRPC    string

	// stopLoad is closed when no new payment may start; hardStop is when
	// retries of outstanding payments give up.
	stopLoad chan struct{}
	mu       sync.Mutex
	hardStop time.Time
}

func newDriver(cfg Config, log *slog.Logger, committee *qc.Committee, committeeOf func(uint64) *qc.Committee, names, apis []string, topo *topology, rec *recorder) (*driver, error) {
	d := &driver{cfg: cfg, log: log, committee: committee, committeeOf: committeeOf, chainID: committee.Domain().ChainID, token: devkit.TokenAddress,
		topo: topo, rec: rec, names: names, byAPI: map[string]string{}, clients: map[string]*client.Client{},
		single: map[string]*client.Client{}, stopLoad: make(chan struct{}), hardStop: time.Now().Add(cfg.Timeout)}
	for i, name := range names {
		d.byAPI[apis[i]] = name
		rotated := append(append([]string(nil), apis[i:]...), apis[:i]...)
		c, err := client.New(client.Config{Endpoints: rotated, Committee: committee, CommitteeOf: committeeOf, Timeout: cfg.AttemptTimeout, Retries: len(apis) - 1})
		if err != nil {
			return nil, err
		}
		d.clients[name] = c
		s, err := client.New(client.Config{Endpoints: []string{apis[i]}, Committee: committee, CommitteeOf: committeeOf, Timeout: cfg.AttemptTimeout, Retries: -1})
		if err != nil {
			return nil, err
		}
		d.single[name] = s
	}
	return d, nil
}

func (d *driver) close() {
	for _, c := range d.clients {
		c.Close()
	}
	for _, c := range d.single {
		c.Close()
	}
}

func (d *driver) stopping() bool {
	select {
	case <-d.stopLoad:
		return true
	default:
		return false
	}
}

func (d *driver) deadline() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hardStop
}

// stop ends new payments; outstanding ones retry until now+drain.
func (d *driver) stop(drain time.Duration) {
	d.mu.Lock()
	d.hardStop = time.Now().Add(drain)
	d.mu.Unlock()
	close(d.stopLoad)
}

// shortError classifies a submission error for the report.
func shortError(err error) string {
	var rej *client.RejectError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &rej):
		return "rejected " + rej.Code.String()
	case errors.Is(err, client.ErrNoQC):
		return "stream ended without a QC"
	case errors.Is(err, client.ErrUnverifiedQC):
		return "unverifiable QC"
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "no QC within"):
		return "no QC in time"
	}
	if s, ok := status.FromError(errors.Unwrap(err)); ok && s.Code() != codes.Unknown {
		return "grpc " + s.Code().String()
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s, ok := status.FromError(e); ok && s.Code() != codes.Unknown && s.Code() != codes.OK {
			return "grpc " + s.Code().String()
		}
	}
	msg := err.Error()
	if len(msg) > 60 {
		msg = msg[:60]
	}
	return msg
}

// pay records and submits one payment, retrying the SAME signed request on
// other sidecars until it has a QC, a final reject, or the run's hard stop.
// entry is the first sidecar tried.
func (d *driver) pay(ctx context.Context, label string, from *account, to common.Address, amount uint64, parent *qc.QC, entry int) *qc.QC {
	return d.payAs(ctx, label, false, from, to, amount, parent, entry)
}

// newPayment signs a payment of amount from `from` at its next nonce with
// the run's fee options, and returns it with its tx hash and fee terms.
func (d *driver) newPayment(from *account, to common.Address, amount uint64, opts ...client.PaymentOption) (*fastpayv1.SubmitFastPayRequest, qc.Hash, *safety.PaymentFee, error) {
	opts = append(append([]client.PaymentOption{client.WithExpiryAt(time.Now().Add(30 * time.Minute))}, payFeeOptions()...), opts...)
	req, err := client.NewEVMPayment(from.key, d.chainID, from.nonce, d.token, to, amount, opts...)
	if err != nil {
		return nil, qc.Hash{}, nil, err
	}
	txHash, _, err := client.Expected(req)
	if err != nil {
		return nil, qc.Hash{}, nil, err
	}
	fee, err := feeTerms(req)
	if err != nil {
		return nil, qc.Hash{}, nil, err
	}
	return req, txHash, fee, nil
}

// chainTxOf returns the chain's hash of req's transaction, by which the
// safety check finds a payment that reached the chain without a QC; zero
// for a request newPayment would not have built.
func chainTxOf(req *fastpayv1.SubmitFastPayRequest) qc.Hash {
	h, err := client.ChainTxHash(req)
	if err != nil {
		return qc.Hash{}
	}
	return qc.Hash(h)
}

// payAs is pay, recording whether the payment is a fee-tight one.
func (d *driver) payAs(ctx context.Context, label string, feeTight bool, from *account, to common.Address, amount uint64, parent *qc.QC, entry int) *qc.QC {
	var opts []client.PaymentOption
	var parentTx qc.Hash
	if parent != nil {
		opts = append(opts, client.WithParent(parent))
		parentTx = parent.TxHash
	}
	req, txHash, fee, err := d.newPayment(from, to, amount, opts...)
	if err != nil {
		d.log.Error("build payment", "label", label, "err", err)
		return nil
	}
	idx := d.rec.add(safety.Payment{Name: label, TxHash: txHash, ChainTx: chainTxOf(req), Sender: qc.Address(from.addr), ParentTx: parentTx,
		SubmittedTo: d.names[entry%len(d.names)], QuorumSide: d.topo.QuorumSide(d.names[entry%len(d.names)]), Sent: time.Now(),
		Fee: fee, FeeTight: feeTight})
	accepted := false
	onEvent := func(ev client.Event) {
		if ev.Kind != client.EventAccepted {
			return
		}
		name := d.byAPI[ev.Endpoint]
		qs := d.topo.QuorumSide(name)
		d.rec.update(idx, func(p *safety.Payment) {
			if !accepted || (qs && !p.QuorumSide) {
				p.SubmittedTo, p.QuorumSide = name, qs
			}
			p.Outcome = safety.OutcomeCertified
		})
		accepted = true
	}
	certified := func(q *qc.QC, entry string) *qc.QC {
		d.rec.update(idx, func(p *safety.Payment) {
			p.QCAt = time.Now()
			if p.Outcome == "" {
				p.Outcome = safety.OutcomeCertified
				if entry != "" {
					p.SubmittedTo = entry
				}
			}
		})
		from.nonce++
		return q
	}
	var last string
	for attempt := 0; ; attempt++ {
		stopAt := d.deadline()
		if time.Now().After(stopAt) || ctx.Err() != nil {
			break
		}
		actx, cancel := context.WithDeadline(ctx, stopAt)
		name := d.names[(entry+attempt)%len(d.names)]
		res, err := d.clients[name].Pay(actx, req, onEvent)
		cancel()
		if err == nil {
			return certified(res.QC, d.byAPI[res.Entry])
		}
		// A sidecar may have answered for a payment certified meanwhile (a
		// settled nonce is "too low"; a Byzantine entry serves a QC that
		// does not verify): the QC, if any, is on the honest boards.
		if q := d.lookupQC(ctx, txHash); q != nil {
			return certified(q, "")
		}
		var rej *client.RejectError
		if errors.As(err, &rej) && !transientRejects[rej.Code] {
			code := rej.Code.String()
			d.log.Warn("payment rejected", "label", label, "tx", txHash, "by", d.byAPI[rej.Endpoint], "code", code, "message", rej.Message)
			d.rec.update(idx, func(p *safety.Payment) {
				if p.Outcome == "" {
					p.Outcome = safety.OutcomeRejectedPrefix + code
				}
			})
			d.rec.retire(from, "rejected "+code)
			return nil
		}
		if errors.As(err, &rej) {
			d.rec.countTransient(rej.Code.String())
		}
		last = shortError(err)
		// Wait a little before the next round of sidecars: the fault that
		// stops the payment lasts seconds.
		if err := sleepCtx(ctx, time.Duration(min(attempt+1, 4))*250*time.Millisecond); err != nil {
			break
		}
	}
	d.rec.update(idx, func(p *safety.Payment) {
		if p.Outcome == "" {
			p.Outcome = safety.OutcomeErrorPrefix + "no QC before the run ended (last: " + last + ")"
		}
	})
	d.rec.retire(from, "no QC for "+label)
	return nil
}

// await blocks until the pacer hands out a token; false once the load stops.
func (d *driver) await(ctx context.Context, tokens <-chan struct{}) bool {
	select {
	case <-d.stopLoad:
		return false
	case <-ctx.Done():
		return false
	case <-tokens:
	}
	return !d.stopping()
}

// amount returns a random payment of 0.01 to 1 dollar.
func amount(rng *rand.Rand) uint64 { return uint64(1+rng.IntN(100)) * 10_000 }

// lane pays from its accounts, one payment at a time, when a token comes.
func (d *driver) lane(ctx context.Context, id int, accts []*account, tokens <-chan struct{}, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	for k := 1; ; k++ {
		if !d.await(ctx, tokens) {
			return
		}
		var live []*account
		for _, a := range accts {
			if !a.retired {
				live = append(live, a)
			}
		}
		if len(live) == 0 {
			d.log.Warn("lane has no usable account left", "lane", id)
			return
		}
		entry := rng.IntN(len(d.names))
		if d.cfg.ChainEvery > 0 && k%d.cfg.ChainEvery == 0 && len(live) >= 2 {
			i := rng.IntN(len(live))
			j := (i + 1 + rng.IntN(len(live)-1)) % len(live)
			a, b := live[i], live[j]
			label := fmt.Sprintf("lane%d#%d", id, k)
			parent := d.pay(ctx, label+"/parent", a, b.addr, amount(rng), nil, entry)
			if parent != nil {
				d.pay(ctx, label+"/child", b, d.pick(rng, b.addr), amount(rng), parent, entry+1)
			}
			continue
		}
		a := live[k%len(live)]
		d.pay(ctx, fmt.Sprintf("lane%d#%d", id, k), a, d.pick(rng, a.addr), amount(rng), nil, entry)
	}
}

// pick returns a random recipient other than not.
func (d *driver) pick(rng *rand.Rand, not common.Address) common.Address {
	for range 8 {
		if r := d.recipient[rng.IntN(len(d.recipient))]; r != not {
			return r
		}
	}
	return d.recipient[0]
}

// demo runs alice → bob → carol → alice (10 dollars each) for as long as
// the load runs. Bob and Carol hold only 5 dollars on chain: each payment
// spends what the previous one brought, carrying its QC as parent.
func (d *driver) demo(ctx context.Context, accts []*account, tokens <-chan struct{}, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	if len(accts) != 3 {
		return
	}
	var parent *qc.QC
	for k := 0; ; k++ {
		if !d.await(ctx, tokens) {
			return
		}
		from, to := accts[k%3], accts[(k+1)%3]
		q := d.pay(ctx, fmt.Sprintf("chain:%s->%s#%d", from.name, to.name, k/3), from, to.addr, 10*devkit.Dollar, parent, rng.IntN(len(d.names)))
		if q == nil {
			d.log.Warn("demo chain stopped: a payment got no QC", "from", from.name)
			return
		}
		parent = q
	}
}

// doubleSpends submits, every DoubleSpendEvery, two different payments with
// the same sender and nonce to two different sidecars at once.
func (d *driver) doubleSpends(ctx context.Context, accts []*account, seed uint64) {
	if len(accts) == 0 || len(d.names) < 2 {
		return
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	t := time.NewTicker(d.cfg.DoubleSpendEvery)
	defer t.Stop()
	next := 0
	for k := 0; ; k++ {
		select {
		case <-d.stopLoad:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.stopping() {
			return
		}
		var a *account
		for range accts {
			c := accts[next%len(accts)]
			next++
			if !c.retired {
				a = c
				break
			}
		}
		if a == nil {
			continue
		}
		d.doubleSpend(ctx, k, a, rng)
	}
}

func (d *driver) doubleSpend(ctx context.Context, k int, a *account, rng *rand.Rand) {
	group := fmt.Sprintf("ds%d", k)
	// Two different members of the current committee: a sidecar outside
	// it signs nothing.
	members := d.topo.memberList()
	if len(members) < 2 {
		members = d.names
	}
	i := rng.IntN(len(members))
	j := (i + 1 + rng.IntN(len(members)-1)) % len(members)
	entries := []string{members[i], members[j]}
	r1 := d.pick(rng, a.addr)
	r2 := d.pick(rng, r1)
	if r2 == a.addr {
		r2 = d.recipient[len(d.recipient)-1]
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got []*qc.QC
	var hashes []qc.Hash
	for n, to := range []common.Address{r1, r2} {
		req, txHash, fee, err := d.newPayment(a, to, amount(rng))
		if err != nil {
			d.log.Error("build double-spend", "err", err)
			return
		}
		hashes = append(hashes, txHash)
		name := entries[n]
		idx := d.rec.add(safety.Payment{Name: fmt.Sprintf("%s/%c", group, 'a'+n), TxHash: txHash, ChainTx: chainTxOf(req), Sender: qc.Address(a.addr),
			Conflicting: true, ConflictGroup: group, SubmittedTo: name, QuorumSide: d.topo.QuorumSide(name), Sent: time.Now(), Fee: fee})
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := d.single[name].Pay(ctx, req, func(ev client.Event) {
				if ev.Kind == client.EventAccepted {
					d.rec.update(idx, func(p *safety.Payment) { p.Outcome = safety.OutcomeCertified })
				}
			})
			var rej *client.RejectError
			d.rec.update(idx, func(p *safety.Payment) {
				switch {
				case err == nil:
					p.QCAt, p.Outcome = time.Now(), safety.OutcomeCertified
				case p.Outcome != "":
				case errors.As(err, &rej):
					p.Outcome = safety.OutcomeRejectedPrefix + rej.Code.String()
				default:
					p.Outcome = safety.OutcomeErrorPrefix + shortError(err)
				}
			})
			if err == nil {
				mu.Lock()
				got = append(got, res.QC)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) == 0 {
		// A QC may form after the clients gave up (or was served only
		// unverifiably by a Byzantine entry): look on the boards.
		for _, tx := range hashes {
			if q := d.awaitQC(ctx, tx, d.cfg.AttemptTimeout); q != nil {
				got = append(got, q)
				break
			}
		}
	}
	switch len(got) {
	case 0:
		// Neither has a QC the driver saw: the nonce may be locked by a
		// split vote, as FastPay intends for an equivocating sender.
		d.rec.retire(a, group+": neither payment certified")
	case 1:
		a.nonce++
	default:
		d.log.Error("BOTH payments of a double-spend got a QC", "group", group, "sender", a.addr)
		a.nonce++
	}
}

// syncNonces sets each account's next nonce from the chain.
func (d *driver) syncNonces(ctx context.Context, accts []*account) error {
	addrs := make([]qc.Address, len(accts))
	for i, a := range accts {
		addrs[i] = qc.Address(a.addr)
	}
	n, err := safety.Nonces(ctx, d.chainRPC, addrs)
	if err != nil {
		return err
	}
	for _, a := range accts {
		a.nonce = n[qc.Address(a.addr)]
	}
	return nil
}

// pace offers a token at rate per second to whoever waits (tokens are
// dropped when every lane is busy: the rate is an upper bound).
func pace(ctx context.Context, stop <-chan struct{}, rate float64, tokens chan<- struct{}) {
	interval := time.Duration(float64(time.Second) / rate)
	t := time.NewTicker(max(interval, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			select {
			case tokens <- struct{}{}:
			default:
			}
		}
	}
}

// driverSummary describes what the driver saw (beyond the safety report).
func (r *recorder) driverSummary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	codes := make([]string, 0, len(r.transient))
	for c := range r.transient {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	fmt.Fprintf(&b, "transient rejects retried elsewhere:")
	if len(codes) == 0 {
		b.WriteString(" none")
	}
	for _, c := range codes {
		fmt.Fprintf(&b, " %s=%d", c, r.transient[c])
	}
	fmt.Fprintf(&b, "\naccounts retired (nonce unusable): %d", len(r.retired))
	for i, s := range r.retired {
		if i == 10 {
			fmt.Fprintf(&b, " ... (%d more)", len(r.retired)-10)
			break
		}
		fmt.Fprintf(&b, "\n  %s", s)
	}
	return b.String()
}

// lookupQC asks every sidecar for a QC of tx (GET /api/v1/tx/{hash}/qc)
// and returns the first that verifies against the committee for tx: a
// payment whose client gave up (an unverifiable QC from a Byzantine entry,
// a timeout) may still have been certified by the others.
func (d *driver) lookupQC(ctx context.Context, tx qc.Hash) *qc.QC {
	hc := &http.Client{Timeout: 3 * time.Second}
	for api := range d.byAPI {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/api/v1/tx/"+tx.Hex()+"/qc", nil)
		if err != nil {
			return nil
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		var doc struct {
			ProtoHex string `json:"proto_hex"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || doc.ProtoHex == "" {
			continue
		}
		q, err := client.DecodeQCHexOf(doc.ProtoHex, d.committee, d.committeeOf)
		if err == nil && q.TxHash == tx {
			return q
		}
	}
	return nil
}

// awaitQC polls lookupQC for up to wait.
func (d *driver) awaitQC(ctx context.Context, tx qc.Hash, wait time.Duration) *qc.QC {
	deadline := time.Now().Add(wait)
	for {
		if q := d.lookupQC(ctx, tx); q != nil {
			return q
		}
		if time.Now().After(deadline) || sleepCtx(ctx, 250*time.Millisecond) != nil {
			return nil
		}
	}
}
