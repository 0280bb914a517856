package apiserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/validator"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const testChainID = 1337

var (
	testDomain = qc.Domain{ChainID: testChainID, Epoch: 1}
	alice      = qc.Address{0xa1, 0x1c, 0xe0}
	bob        = qc.Address{0xb0, 0xb0}
	testAsset  = qc.Address{0x20, 0xc0, 19: 0x01}
)

// Amounts the fake backend treats specially.
const (
	amountTooMuch     = 1_000_001 // INSUFFICIENT_FUNDS
	amountUnavailable = 666       // a non-reject error: TEMPORARY_UNAVAILABLE
)

// fakeBackend is a sidecar stand-in: a real bulletin board and committee
// with deterministic ed25519 keys, and a scripted Submit that signs with
// member self (or rejects) and records the certificate on the board.
type fakeBackend struct {
	board     *bulletin.Board
	committee *qc.Committee
	signers   []*qc.Signer // by creation index, v0…v(n-1)
	self      int
	reg       *prometheus.Registry

	mu         sync.Mutex
	headErr    error
	headAge    time.Duration   // age of the head ChainHead returns
	headNoTS   bool            // the head has no timestamp
	away       map[string]bool // members (by name) shown as not connected
	storeErr   error
	signingErr error
	chainErr   error // ChainHealth's answer
	peersSign  bool  // after a submission, the other members sign (the mesh)
	lastReq    *fastpayv1.SubmitFastPayRequest
	submits    int
	// epochLen is Committee's EpochLength (0: one epoch).
	epochLen uint64

	peers sync.WaitGroup
}

func newFake(t testing.TB, n int, mutate ...func(*bulletin.Config)) *fakeBackend {
	t.Helper()
	f := &fakeBackend{reg: prometheus.NewRegistry()}
	var members []qc.Member
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(i+1), 0xa7
		s := qc.NewSigner(ed25519.NewKeyFromSeed(seed), fmt.Sprintf("v%d", i), testDomain)
		f.signers = append(f.signers, s)
		members = append(members, qc.Member{Name: s.Name(), ID: s.ID()})
	}
	var err error
	if f.committee, err = qc.NewCommittee(testDomain, members); err != nil {
		t.Fatal(err)
	}
	cfg := bulletin.DefaultConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	if f.board, err = bulletin.New(cfg, f.committee, f.signers[0].ID(), nil, f.reg, quiet); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.peers.Wait()
		_ = f.board.Stop(context.Background())
	})
	return f
}

func (f *fakeBackend) setHeadErr(err error) {
	f.mu.Lock()
	f.headErr = err
	f.mu.Unlock()
}

func (f *fakeBackend) setPeersSign(v bool) {
	f.mu.Lock()
	f.peersSign = v
	f.mu.Unlock()
}

func (f *fakeBackend) last() (*fastpayv1.SubmitFastPayRequest, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastReq, f.submits
}

// effectsOf derives the effects the fake certifies from the request intent.
func effectsOf(req *fastpayv1.SubmitFastPayRequest) (qc.Hash, qc.Effects, error) {
	in, err := req.GetTx().TxHashInput()
	if err != nil {
		return qc.Hash{}, qc.Effects{}, &validator.Reject{Code: fastpayv1.RejectCode_INVALID_FORMAT, Message: err.Error()}
	}
	intent := req.GetTx().GetIntent()
	if intent == nil {
		return qc.Hash{}, qc.Effects{}, &validator.Reject{Code: fastpayv1.RejectCode_INVALID_FORMAT, Message: "the fake needs an intent"}
	}
	var e qc.Effects
	if e.Sender, err = intent.Sender.ToAddress("intent.sender"); err == nil {
		if e.Recipient, err = intent.Recipient.ToAddress("intent.recipient"); err == nil {
			e.Asset, err = intent.Asset.ToAddress("intent.asset")
		}
	}
	if err != nil {
		return qc.Hash{}, qc.Effects{}, &validator.Reject{Code: fastpayv1.RejectCode_INVALID_FORMAT, Message: err.Error()}
	}
	e.Amount, e.NonceKey, e.NonceSeq = intent.Amount, in.NonceKey, in.NonceSeq
	return qc.TxHash(in), e, nil
}

func (f *fakeBackend) Submit(ctx context.Context, req *fastpayv1.SubmitFastPayRequest) (qc.Certificate, error) {
	f.mu.Lock()
	f.lastReq, f.submits = req, f.submits+1
	peersSign := f.peersSign
	f.mu.Unlock()
	h, e, err := effectsOf(req)
	if err != nil {
		return qc.Certificate{}, err
	}
	switch e.Amount {
	case amountTooMuch:
		return qc.Certificate{}, &validator.Reject{Code: fastpayv1.RejectCode_INSUFFICIENT_FUNDS, Message: "available 1000000 < amount 1000001"}
	case amountUnavailable:
		return qc.Certificate{}, errors.New("chain node unreachable")
	}
	cert := f.signers[f.self].Sign(h, e, uint64(time.Now().UnixMilli()))
	f.board.AddCertificate(cert)
	f.board.SetStage(h, fastpayv1.TxLifecycleUpdate_ACCEPTED, 0)
	if peersSign {
		f.peers.Add(1)
		go func() {
			defer f.peers.Done()
			for i := range f.signers {
				if i != f.self {
					f.board.AddCertificate(f.signers[i].Sign(h, e, uint64(time.Now().UnixMilli())))
				}
			}
		}()
	}
	return cert, nil
}

func (f *fakeBackend) Board() *bulletin.Board { return f.board }

func (f *fakeBackend) ChainHead(context.Context) (tempo.Head, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.headErr != nil {
		return tempo.Head{}, f.headErr
	}
	h := tempo.Head{Number: 4242, Hash: common.Hash{0xbe, 0xef}, UnixMillis: uint64(time.Now().Add(-f.headAge).UnixMilli())}
	if f.headNoTS {
		h.UnixMillis = 0
	}
	return h, nil
}

func (f *fakeBackend) ChainHealth() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.chainErr
}

func (f *fakeBackend) SigningHealth() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.signingErr
}

func (f *fakeBackend) StoreHealth() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.storeErr
}

// edit changes the fake's scripted state.
func (f *fakeBackend) edit(fn func(f *fakeBackend)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeBackend) Info() NodeInfo {
	s := f.signers[f.self]
	return NodeInfo{Name: s.Name(), ID: s.ID(), PeerID: "12D3KooWfake0", ListenAddrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWfake0"},
		GossipPeers: []string{"12D3KooWfake1", "12D3KooWfake2"}, ChainID: testChainID, Epoch: 1}
}

func (f *fakeBackend) Committee() CommitteeInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := CommitteeInfo{ChainID: testChainID, Epoch: 1, N: f.committee.N(), F: f.committee.F(), Quorum: f.committee.Quorum(),
		Hash: f.committee.Hash(), QCShards: 16, EpochLength: f.epochLen}
	for i, m := range f.committee.Members() {
		self := m.ID == f.signers[f.self].ID()
		c.Members = append(c.Members, MemberInfo{Name: m.Name, ID: m.ID, PeerID: fmt.Sprintf("12D3KooWfake%d", i),
			Addrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 4001+i)}, Self: self, Connected: !self && !f.away[m.Name], Score: float64(i)})
	}
	return c
}

func (f *fakeBackend) Gatherer() prometheus.Gatherer { return f.reg }

// sign makes member i's certificate for (h, e).
func (f *fakeBackend) sign(i int, h qc.Hash, e qc.Effects) qc.Certificate {
	return f.signers[i].Sign(h, e, uint64(time.Now().UnixMilli()))
}

// testRequest builds a submission the fake certifies (or rejects by amount).
func testRequest(seq, amount uint64) *fastpayv1.SubmitFastPayRequest {
	intent := &fastpayv1.PaymentIntent{Sender: fastpayv1.NewAddress(alice), Recipient: fastpayv1.NewAddress(bob),
		Amount: amount, Asset: fastpayv1.NewAssetId(testAsset)}
	return &fastpayv1.SubmitFastPayRequest{Tx: &fastpayv1.FastPayTx{
		ChainId:       &fastpayv1.ChainId{Value: testChainID},
		TempoTx:       &fastpayv1.TempoTxBytes{Data: []byte{0x02, 0xf8, byte(seq), byte(seq >> 8), byte(amount)}},
		Intent:        intent,
		Nonce:         &fastpayv1.Nonce2D{NonceKeyBe: make([]byte, 32), NonceSeq: seq},
		Expiry:        fastpayv1.NewExpiry(qc.Expiry{Kind: qc.ExpiryUnixMillis, Value: 4_000_000_000_000}),
		TempoTxFormat: fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1,
		Overlay:       &fastpayv1.OverlayMetadata{Payment: intent},
	}}
}

func mustEffects(t testing.TB, req *fastpayv1.SubmitFastPayRequest) (qc.Hash, qc.Effects) {
	t.Helper()
	h, e, err := effectsOf(req)
	if err != nil {
		t.Fatal(err)
	}
	return h, e
}

func startServer(t testing.TB, b Backend, mutate ...func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := New(cfg, b, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return startBuilt(t, s)
}

func startBuilt(t testing.TB, s *Server) *Server {
	t.Helper()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

func grpcClient(t testing.TB, s *Server) fastpayv1.FastPaySidecarClient {
	t.Helper()
	conn, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return fastpayv1.NewFastPaySidecarClient(conn)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
