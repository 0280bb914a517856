package client_test

import (
	"context"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

const chainID = 1337

var (
	aliceKey = nodetest.Key("client-alice")
	bobKey   = nodetest.Key("client-bob")
	carolKey = nodetest.Key("client-carol")
	daveKey  = nodetest.Key("client-dave")
	erinKey  = nodetest.Key("client-erin")
	frankKey = nodetest.Key("client-frank")
	token    = devkit.TokenAddress
)

const dollar = 1_000_000

// eventLog records a payment's events; safe for concurrent use.
type eventLog struct {
	mu     sync.Mutex
	events []client.Event
}

func (l *eventLog) add(ev client.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *eventLog) count(kind client.EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.events {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func (l *eventLog) of(kind client.EventKind) []client.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []client.Event
	for _, ev := range l.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCluster runs the client against an in-process cluster of four real
// sidecars.
func TestCluster(t *testing.T) {
	chain := tempo.NewMemChain()
	chain.SetBalance(token, nodetest.Address(aliceKey), big.NewInt(100*dollar))
	chain.SetBalance(token, nodetest.Address(bobKey), big.NewInt(5*dollar))
	chain.SetBalance(token, nodetest.Address(carolKey), big.NewInt(1*dollar))
	chain.SetBalance(token, nodetest.Address(daveKey), big.NewInt(50*dollar))
	chain.SetBalance(token, nodetest.Address(erinKey), big.NewInt(50*dollar))
	chain.SetBalance(token, nodetest.Address(frankKey), big.NewInt(1*dollar))
	chain.SetHead(10)
	cl := nodetest.New(t, 4, chainID, chain)
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	committee, err := cl.Committee.Committee()
	if err != nil {
		t.Fatal(err)
	}
	eps := make([]string, len(cl.Nodes))
	for i, n := range cl.Nodes {
		eps[i] = n.API.Addr().String()
	}
	bob, carol := nodetest.Address(bobKey), nodetest.Address(carolKey)

	// Alice pays Bob 10 dollars through sidecar 0; then Bob, who holds 5
	// dollars on chain, spends 12 through sidecar 2 with Alice's QC as
	// parent, in a Tempo 0x76 transaction on nonce key 5.
	var first *client.Result
	var firstReq *fastpayv1.SubmitFastPayRequest
	t.Run("pay", func(t *testing.T) {
		c := newClient(t, client.Config{Endpoints: eps, Committee: committee})
		req, err := client.NewEVMPayment(aliceKey, chainID, 0, token, bob, 10*dollar)
		if err != nil {
			t.Fatal(err)
		}
		var log eventLog
		res, err := c.Pay(ctxFor(t, 30*time.Second), req, log.add)
		if err != nil {
			t.Fatal(err)
		}
		if err := committee.VerifyQC(res.QC); err != nil {
			t.Fatalf("returned QC does not verify: %v", err)
		}
		if want, _, _ := client.Expected(req); res.TxHash != want || res.QC.TxHash != want {
			t.Fatalf("QC for %s, want %s", res.QC.TxHash, want)
		}
		if e := res.QC.Effects(); e.Amount != 10*dollar || e.Recipient != qc.Address(bob) {
			t.Fatalf("QC effects %+v", e)
		}
		certs := log.of(client.EventCertificate)
		if len(certs) < committee.Quorum() || len(res.Certs) < committee.Quorum() {
			t.Fatalf("callback saw %d certificates (result %d), want at least %d", len(certs), len(res.Certs), committee.Quorum())
		}
		for i, ev := range certs {
			if ev.Cert == nil || !strings.HasPrefix(ev.SignerName, "v") || ev.Certs != i+1 || ev.Elapsed <= 0 {
				t.Fatalf("certificate event %d: %+v", i, ev)
			}
		}
		if log.count(client.EventAccepted) != 1 || log.count(client.EventQC) != 1 || log.count(client.EventRetry) != 0 {
			t.Fatalf("events: %d accepted, %d QC, %d retries", log.count(client.EventAccepted), log.count(client.EventQC), log.count(client.EventRetry))
		}
		if res.Entry != eps[0] || res.Attempts != 1 || res.TimeToQC <= 0 {
			t.Fatalf("result: entry %s attempts %d time %s", res.Entry, res.Attempts, res.TimeToQC)
		}
		t.Logf("QC %s with %d certificates in %s", res.QC.Hash, len(res.QC.Certs), res.TimeToQC)
		first, firstReq = res, req
	})
	if first == nil {
		t.FailNow()
	}

	t.Run("chained", func(t *testing.T) {
		c := newClient(t, client.Config{Endpoints: []string{eps[2]}, Committee: committee})
		req, err := client.NewTempoPayment(bobKey, chainID, qc.NonceKey{31: 5}, 0, token, carol, 12*dollar, client.WithParent(first.QC))
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Pay(ctxFor(t, 30*time.Second), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := committee.VerifyQC(res.QC); err != nil {
			t.Fatal(err)
		}
		if e := res.QC.Effects(); e.Sender != qc.Address(nodetest.Address(bobKey)) || e.Amount != 12*dollar || e.NonceKey != (qc.NonceKey{31: 5}) {
			t.Fatalf("chained QC effects %+v", e)
		}
	})

	t.Run("reject", func(t *testing.T) {
		c := newClient(t, client.Config{Endpoints: eps, Committee: committee})
		req, err := client.NewEVMPayment(carolKey, chainID, 0, token, bob, 1000*dollar)
		if err != nil {
			t.Fatal(err)
		}
		var log eventLog
		res, err := c.Pay(ctxFor(t, 30*time.Second), req, log.add)
		var rej *client.RejectError
		if !errors.As(err, &rej) || rej.Code != fastpayv1.RejectCode_INSUFFICIENT_FUNDS || res != nil {
			t.Fatalf("overspend: %v %v", res, err)
		}
		if rej.Endpoint != eps[0] || log.count(client.EventRetry) != 0 {
			t.Fatalf("reject from %s after %d retries; want %s and none", rej.Endpoint, log.count(client.EventRetry), eps[0])
		}
		// Frank's whole balance: the transaction's maximum fee no longer
		// fits, and the error says so.
		req, err = client.NewEVMPayment(frankKey, chainID, 0, token, bob, dollar)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Pay(ctxFor(t, 30*time.Second), req, nil)
		if !errors.As(err, &rej) || rej.Code != fastpayv1.RejectCode_INSUFFICIENT_FUNDS || !strings.Contains(err.Error(), "maximum fee") {
			t.Fatalf("fee shortfall: %v", err)
		}
		// A nonce beyond the next expected one.
		req, err = client.NewEVMPayment(carolKey, chainID, 7, token, bob, dollar)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Pay(ctxFor(t, 30*time.Second), req, nil)
		if !errors.As(err, &rej) || rej.Code != fastpayv1.RejectCode_NONCE_SEQ_TOO_HIGH {
			t.Fatalf("nonce gap: %v", err)
		}
	})

	t.Run("fallback", func(t *testing.T) {
		dead := deadAddr(t)
		c := newClient(t, client.Config{Endpoints: []string{dead, eps[1]}, Committee: committee})
		req, err := client.NewEVMPayment(daveKey, chainID, 0, token, carol, dollar)
		if err != nil {
			t.Fatal(err)
		}
		id := req.Tx.ClientRequestId
		var log eventLog
		res, err := c.Pay(ctxFor(t, 30*time.Second), req, log.add)
		if err != nil {
			t.Fatal(err)
		}
		retries := log.of(client.EventRetry)
		if len(retries) != 1 || retries[0].Endpoint != dead || retries[0].Err == nil {
			t.Fatalf("retries %+v", retries)
		}
		if res.Entry != eps[1] || res.Attempts != 2 || req.Tx.ClientRequestId != id {
			t.Fatalf("entry %s attempts %d id %q (was %q)", res.Entry, res.Attempts, req.Tx.ClientRequestId, id)
		}
		if err := committee.VerifyQC(res.QC); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("fallback after timeout", func(t *testing.T) {
		// The first sidecar takes the request and never answers: after the
		// attempt timeout the client sends the SAME request to the next.
		hole := newFakeSidecar(chainID, fakeBlackHole)
		holeAddr, stop, err := hole.serve()
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		c := newClient(t, client.Config{Endpoints: []string{holeAddr, eps[3]}, Committee: committee, Timeout: 2 * time.Second})
		req, err := client.NewEVMPayment(erinKey, chainID, 0, token, carol, dollar)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Pay(ctxFor(t, 30*time.Second), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := hole.received()
		if len(got) != 1 || got[0].Tx.ClientRequestId != req.Tx.ClientRequestId || res.Entry != eps[3] || res.Attempts != 2 {
			t.Fatalf("black hole saw %d requests; entry %s after %d attempts", len(got), res.Entry, res.Attempts)
		}
		if wantHash, _, _ := client.Expected(got[0]); wantHash != res.TxHash {
			t.Fatal("the retry carried another transaction")
		}
	})

	t.Run("resubmit is idempotent", func(t *testing.T) {
		c := newClient(t, client.Config{Endpoints: []string{eps[3]}, Committee: committee})
		res, err := c.Pay(ctxFor(t, 30*time.Second), firstReq, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.TxHash != first.TxHash || committee.VerifyQC(res.QC) != nil {
			t.Fatalf("resubmission gave %s, first %s", res.TxHash, first.TxHash)
		}
	})

	t.Run("fanout", func(t *testing.T) {
		req, err := client.NewEVMPayment(aliceKey, chainID, 1, token, carol, 2*dollar)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.FanOut(ctxFor(t, 30*time.Second), eps, committee, req)
		if err != nil {
			t.Fatal(err)
		}
		if err := committee.VerifyQC(res.QC); err != nil {
			t.Fatal(err)
		}
		if len(res.QC.Certs) != committee.Quorum() || len(res.Certs) < committee.Quorum() {
			t.Fatalf("fan-out QC with %d certificates", len(res.QC.Certs))
		}
		// A fan-out of an overspend reports the validators' reject.
		bad, err := client.NewEVMPayment(carolKey, chainID, 0, token, bob, 500*dollar)
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.FanOut(ctxFor(t, 30*time.Second), eps, committee, bad)
		var rej *client.RejectError
		if !errors.As(err, &rej) || rej.Code != fastpayv1.RejectCode_INSUFFICIENT_FUNDS {
			t.Fatalf("fan-out overspend: %v", err)
		}
	})

	t.Run("status", func(t *testing.T) {
		c := newClient(t, client.Config{Endpoints: []string{deadAddr(t), eps[0]}, Committee: committee, PollInterval: 20 * time.Millisecond})
		testkit.Eventually(t, 10*time.Second, "sidecar 0 reports the QC", func() bool {
			st, err := c.Status(context.Background(), first.TxHash)
			return err == nil && st.QCFormed && st.Stage >= fastpayv1.TxLifecycleUpdate_CERTIFIED && st.Endpoint == eps[0]
		})
		if _, err := c.Status(context.Background(), qc.Hash{1}); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("status of an unknown tx: %v", err)
		}
		// The in-memory chain never settles: WaitSettled ends with ctx.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := c.WaitSettled(ctx, first.TxHash); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitSettled without settlement: %v", err)
		}
	})
}

// TestForgedQC: a sidecar that serves a QC which does not verify never gets
// it returned, whatever else it makes consistent.
func TestForgedQC(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode fakeMode
	}{{"tampered signature", fakeForgeSignature}, {"signers outside the committee", fakeForgeSigner}} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeSidecar(chainID, tc.mode)
			addr, stop, err := fake.serve()
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			c := newClient(t, client.Config{Endpoints: []string{addr}, Committee: fake.committee, Retries: 1})
			req, err := client.NewEVMPayment(aliceKey, chainID, 0, token, nodetest.Address(bobKey), dollar)
			if err != nil {
				t.Fatal(err)
			}
			var log eventLog
			res, err := c.Pay(ctxFor(t, 10*time.Second), req, log.add)
			if res != nil || !errors.Is(err, client.ErrUnverifiedQC) {
				t.Fatalf("forged QC: result %v, err %v", res, err)
			}
			if log.count(client.EventQC) != 0 {
				t.Fatal("a forged QC was reported to the callback")
			}
			// The forged certificates were not reported either.
			for _, ev := range log.of(client.EventCertificate) {
				if err := fake.committee.VerifyCertificate(ev.Cert); err != nil {
					t.Fatalf("reported a certificate that does not verify: %v", err)
				}
			}
			if n := len(fake.received()); n != 2 {
				t.Fatalf("%d attempts, want 2 (one retry)", n)
			}
		})
	}
	// The same fake, honest, is accepted: the test above fails for the
	// forgery, not for the fake.
	fake := newFakeSidecar(chainID, fakeHonest)
	addr, stop, err := fake.serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := newClient(t, client.Config{Endpoints: []string{addr}, Committee: fake.committee})
	req, _ := client.NewEVMPayment(aliceKey, chainID, 0, token, nodetest.Address(bobKey), dollar)
	if _, err := c.Pay(ctxFor(t, 10*time.Second), req, nil); err != nil {
		t.Fatalf("honest fake: %v", err)
	}
}

// TestRejectRetries: TEMPORARY_UNAVAILABLE is retried with the same
// request; other rejects are returned at once.
func TestRejectRetries(t *testing.T) {
	fake := newFakeSidecar(chainID, fakeUnavailable, fakeHonest)
	addr, stop, err := fake.serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := newClient(t, client.Config{Endpoints: []string{addr}, Committee: fake.committee})
	req, err := client.NewEVMPayment(aliceKey, chainID, 0, token, nodetest.Address(bobKey), dollar)
	if err != nil {
		t.Fatal(err)
	}
	var log eventLog
	res, err := c.Pay(ctxFor(t, 10*time.Second), req, log.add)
	if err != nil {
		t.Fatal(err)
	}
	got := fake.received()
	if res.Attempts != 2 || len(got) != 2 || got[1].Tx.ClientRequestId != req.Tx.ClientRequestId {
		t.Fatalf("attempts %d, sidecar saw %d", res.Attempts, len(got))
	}
	var rej *client.RejectError
	if retries := log.of(client.EventRetry); len(retries) != 1 || !errors.As(retries[0].Err, &rej) || !rej.Temporary() {
		t.Fatalf("retry events %+v", retries)
	}

	always := newFakeSidecar(chainID, fakeUnavailable)
	addr2, stop2, err := always.serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	c2 := newClient(t, client.Config{Endpoints: []string{addr2}, Committee: always.committee, Retries: 1})
	if _, err := c2.Pay(ctxFor(t, 10*time.Second), req, nil); !errors.As(err, &rej) || !rej.Temporary() || len(always.received()) != 2 {
		t.Fatalf("always unavailable: %v after %d attempts", err, len(always.received()))
	}

	final := newFakeSidecar(chainID, fakeReject)
	addr3, stop3, err := final.serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop3()
	c3 := newClient(t, client.Config{Endpoints: []string{addr3, addr}, Committee: final.committee})
	if _, err := c3.Pay(ctxFor(t, 10*time.Second), req, nil); !errors.As(err, &rej) || rej.Code != fastpayv1.RejectCode_INSUFFICIENT_FUNDS || len(final.received()) != 1 {
		t.Fatalf("final reject: %v after %d attempts", err, len(final.received()))
	}
}

// TestAllEndpointsDown: the error after the last attempt says why.
func TestAllEndpointsDown(t *testing.T) {
	committee, _ := newFakeCommittee(4, qc.Domain{ChainID: chainID, Epoch: 1}, "down")
	c := newClient(t, client.Config{Endpoints: []string{deadAddr(t), deadAddr(t)}, Committee: committee})
	req, _ := client.NewEVMPayment(aliceKey, chainID, 0, token, nodetest.Address(bobKey), dollar)
	_, err := c.Pay(ctxFor(t, 20*time.Second), req, nil)
	if err == nil || !strings.Contains(err.Error(), "3 attempts failed") {
		t.Fatalf("all down: %v", err)
	}
	// A cancelled context ends Pay at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Pay(ctx, req, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	committee, _ := newFakeCommittee(1, qc.Domain{ChainID: chainID, Epoch: 1}, "cfg")
	for _, cfg := range []client.Config{
		{Committee: committee},
		{Endpoints: []string{"127.0.0.1:1"}},
		{Endpoints: []string{"no-port"}, Committee: committee},
	} {
		if _, err := client.New(cfg); err == nil {
			t.Fatalf("config %+v accepted", cfg)
		}
	}
}

// TestWaitSettled polls the status API until FINALIZED.
func TestWaitSettled(t *testing.T) {
	txHash := qc.Hash{0xab}
	var mu sync.Mutex
	polls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/tx/"+txHash.Hex()+"/status" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		polls++
		n := polls
		mu.Unlock()
		stage, height := "CERTIFIED", `"0"`
		switch {
		case n == 1:
			http.Error(w, `{"error":{"code":"NOT_FOUND"}}`, http.StatusNotFound)
			return
		case n == 3:
			stage, height = "INCLUDED", `"41"`
		case n >= 4:
			stage, height = "FINALIZED", `"41"`
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"tx_hash":"` + txHash.Hex() + `","stage":"` + stage + `","cert_count":3,"quorum":3,"qc_formed":true,"block_height":` + height + `}`))
	}))
	defer srv.Close()
	committee, _ := newFakeCommittee(1, qc.Domain{ChainID: chainID, Epoch: 1}, "settle")
	c := newClient(t, client.Config{Endpoints: []string{strings.TrimPrefix(srv.URL, "http://")}, Committee: committee, PollInterval: 10 * time.Millisecond})
	st, err := c.WaitSettled(ctxFor(t, 10*time.Second), txHash)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stage != fastpayv1.TxLifecycleUpdate_FINALIZED || st.BlockHeight != 41 || !st.QCFormed || st.Quorum != 3 {
		t.Fatalf("status %+v", st)
	}
}

func TestQCEncoding(t *testing.T) {
	fake := newFakeSidecar(chainID)
	addr, stop, err := fake.serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := newClient(t, client.Config{Endpoints: []string{addr}, Committee: fake.committee})
	req, _ := client.NewEVMPayment(aliceKey, chainID, 0, token, common.Address{1}, dollar)
	res, err := c.Pay(ctxFor(t, 10*time.Second), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	text, err := client.EncodeQCHex(res.QC)
	if err != nil {
		t.Fatal(err)
	}
	back, err := client.DecodeQCHex("0x"+text, fake.committee)
	if err != nil || back.Hash != res.QC.Hash {
		t.Fatalf("round trip: %v", err)
	}
	// Another committee does not accept it.
	other, _ := newFakeCommittee(4, qc.Domain{ChainID: chainID, Epoch: 1}, "other")
	if _, err := client.DecodeQCHex(text, other); !errors.Is(err, client.ErrUnverifiedQC) {
		t.Fatalf("QC under another committee: %v", err)
	}
	if _, err := client.DecodeQCHex("zz", fake.committee); err == nil {
		t.Fatal("non-hex accepted")
	}
}

// TestFanOutByzantine: certificates that do not verify are not counted; one
// forger of four still leaves a quorum, two do not.
func TestFanOutByzantine(t *testing.T) {
	start := func(modes ...fakeMode) ([]string, *qc.Committee) {
		var eps []string
		var committee *qc.Committee
		for i, m := range modes {
			f := newFakeSidecar(chainID, m)
			f.self = i
			addr, stop, err := f.serve()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			eps, committee = append(eps, addr), f.committee
		}
		return eps, committee
	}
	req, _ := client.NewEVMPayment(aliceKey, chainID, 0, token, nodetest.Address(bobKey), dollar)

	eps, committee := start(fakeForgeSignature, fakeHonest, fakeHonest, fakeHonest)
	res, err := client.FanOut(ctxFor(t, 10*time.Second), eps, committee, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := committee.VerifyQC(res.QC); err != nil {
		t.Fatal(err)
	}
	for _, c := range res.QC.Certs {
		if c.SignerName == "v0" {
			t.Fatal("the forger's certificate is in the QC")
		}
	}

	eps, committee = start(fakeForgeSignature, fakeForgeSigner, fakeHonest, fakeHonest)
	if res, err := client.FanOut(ctxFor(t, 10*time.Second), eps, committee, req); err == nil || res != nil {
		t.Fatalf("two forgers of four: %v %v", res, err)
	}
}

// TestQCOfAnotherEpoch: a payment certified after an epoch boundary carries
// a QC of the new epoch, verified against that epoch's committee
// (Config.CommitteeOf); without it, or with another committee for that
// epoch, the QC is refused.
func TestQCOfAnotherEpoch(t *testing.T) {
	d1, d2 := qc.Domain{ChainID: chainID, Epoch: 1}, qc.Domain{ChainID: chainID, Epoch: 2}
	epoch1, _ := newFakeCommittee(4, d1, "fake-validator")
	epoch2, signers2 := newFakeCommittee(4, d2, "fake-validator")
	others2, _ := newFakeCommittee(4, d2, "fake-outsider")
	fake := &fakeSidecar{committee: epoch2, signers: signers2, modes: []fakeMode{fakeHonest}}
	addr, stop, err := fake.serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, tc := range []struct {
		name        string
		committeeOf func(uint64) *qc.Committee
		ok          bool
	}{
		{"the next epoch's committee", func(e uint64) *qc.Committee {
			if e == 2 {
				return epoch2
			}
			return nil
		}, true},
		{"no committee of other epochs", nil, false},
		{"another committee for the epoch", func(uint64) *qc.Committee { return others2 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, client.Config{Endpoints: []string{addr}, Committee: epoch1, CommitteeOf: tc.committeeOf, Retries: -1})
			req, err := client.NewEVMPayment(aliceKey, chainID, 0, token, nodetest.Address(bobKey), dollar)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Pay(ctxFor(t, 10*time.Second), req, nil)
			switch {
			case tc.ok && (err != nil || res.QC.Epoch != 2):
				t.Fatalf("QC of epoch 2: %v", err)
			case !tc.ok && !errors.Is(err, client.ErrUnverifiedQC):
				t.Fatalf("want ErrUnverifiedQC, got %v", err)
			}
		})
	}
}
