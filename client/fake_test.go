package client_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/qc"
)

// fakeMode says how a fake sidecar answers SubmitFastPayStream.
type fakeMode int

const (
	fakeHonest         fakeMode = iota // certificates from a quorum, then the QC
	fakeForgeSignature                 // a QC whose first signature is tampered with
	fakeForgeSigner                    // a QC signed by keys outside the committee
	fakeBlackHole                      // accept the stream, never answer
	fakeUnavailable                    // reject TEMPORARY_UNAVAILABLE
	fakeReject                         // reject INSUFFICIENT_FUNDS
)

// fakeSidecar is a stand-in sidecar holding the keys of a whole committee:
// it signs certificates itself instead of running the mesh, which lets tests
// make it lie.
type fakeSidecar struct {
	fastpayv1.UnimplementedFastPaySidecarServer
	committee *qc.Committee
	signers   []*qc.Signer
	outsiders []*qc.Signer // keys outside the committee, same names
	self      int          // the validator SubmitFastPay signs as

	mu       sync.Mutex
	modes    []fakeMode // mode of call i; the last repeats
	requests []*fastpayv1.SubmitFastPayRequest
}

// newFakeCommittee returns a committee of n validators with deterministic
// keys, and their signers.
func newFakeCommittee(n int, domain qc.Domain, seedPrefix string) (*qc.Committee, []*qc.Signer) {
	var members []qc.Member
	var signers []*qc.Signer
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, fmt.Sprintf("%s-%d", seedPrefix, i))
		key := ed25519.NewKeyFromSeed(seed)
		s := qc.NewSigner(key, fmt.Sprintf("v%d", i), domain)
		signers = append(signers, s)
		members = append(members, qc.Member{Name: s.Name(), ID: s.ID()})
	}
	c, err := qc.NewCommittee(domain, members)
	if err != nil {
		panic(err)
	}
	return c, signers
}

func newFakeSidecar(chainID uint64, modes ...fakeMode) *fakeSidecar {
	domain := qc.Domain{ChainID: chainID, Epoch: 1}
	committee, signers := newFakeCommittee(4, domain, "fake-validator")
	_, outsiders := newFakeCommittee(4, domain, "fake-outsider")
	if len(modes) == 0 {
		modes = []fakeMode{fakeHonest}
	}
	return &fakeSidecar{committee: committee, signers: signers, outsiders: outsiders, modes: modes}
}

// serve runs f on a loopback port until stop is called.
func (f *fakeSidecar) serve() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer()
	fastpayv1.RegisterFastPaySidecarServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), srv.Stop, nil
}

func (f *fakeSidecar) received() []*fastpayv1.SubmitFastPayRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fastpayv1.SubmitFastPayRequest(nil), f.requests...)
}

func (f *fakeSidecar) nextMode(req *fastpayv1.SubmitFastPayRequest) fakeMode {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := min(len(f.requests), len(f.modes)-1)
	f.requests = append(f.requests, req)
	return f.modes[i]
}

// SubmitFastPay signs as validator f.self (forging its signature in the
// forging modes).
func (f *fakeSidecar) SubmitFastPay(_ context.Context, req *fastpayv1.SubmitFastPayRequest) (*fastpayv1.SubmitFastPayResponse, error) {
	mode := f.nextMode(req)
	txHash, effects, err := client.Expected(req)
	if err != nil {
		return &fastpayv1.SubmitFastPayResponse{Result: &fastpayv1.SubmitFastPayResponse_Reject{Reject: fastpayv1.Reject(fastpayv1.RejectCode_INVALID_FORMAT, "%v", err)}}, nil
	}
	signer := f.signers[f.self]
	if mode == fakeForgeSigner {
		signer = f.outsiders[f.self]
	}
	cert := signer.Sign(txHash, effects, uint64(time.Now().UnixMilli()))
	if mode == fakeForgeSignature {
		cert.Signature[0] ^= 0x01
	}
	return &fastpayv1.SubmitFastPayResponse{Result: &fastpayv1.SubmitFastPayResponse_Cert{Cert: fastpayv1.NewValidatorCertificate(&cert)}}, nil
}

func (f *fakeSidecar) SubmitFastPayStream(req *fastpayv1.SubmitFastPayRequest, stream grpc.ServerStreamingServer[fastpayv1.SubmitFastPayEvent]) error {
	mode := f.nextMode(req)
	send := func(ev *fastpayv1.SubmitFastPayEvent) error { return stream.Send(ev) }
	reject := func(code fastpayv1.RejectCode, msg string) error {
		return send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Reject{Reject: fastpayv1.Reject(code, "%s", msg)}})
	}
	txHash, effects, err := client.Expected(req)
	if err != nil {
		return reject(fastpayv1.RejectCode_INVALID_FORMAT, err.Error())
	}
	switch mode {
	case fakeBlackHole:
		<-stream.Context().Done()
		return stream.Context().Err()
	case fakeUnavailable:
		return reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, "chain node unreachable")
	case fakeReject:
		return reject(fastpayv1.RejectCode_INSUFFICIENT_FUNDS, "available 0, need more")
	}
	now := uint64(time.Now().UnixMilli())
	if err := send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Lifecycle{Lifecycle: &fastpayv1.TxLifecycleUpdate{
		TxHash: txHash[:], Stage: fastpayv1.TxLifecycleUpdate_ACCEPTED, UnixMillis: now}}}); err != nil {
		return err
	}
	signers := f.signers
	if mode == fakeForgeSigner {
		signers = f.outsiders
	}
	q := &qc.QC{TxHash: txHash, EffectsHash: effects.Hash(), Threshold: uint32(f.committee.Quorum()), Epoch: f.committee.Domain().Epoch}
	for _, s := range signers[:f.committee.Quorum()] {
		cert := s.Sign(txHash, effects, now)
		if mode == fakeForgeSignature && len(q.Certs) == 0 {
			cert.Signature[0] ^= 0x01
		}
		q.Certs = append(q.Certs, cert)
		if err := send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Cert{Cert: fastpayv1.NewValidatorCertificate(&cert)}}); err != nil {
			return err
		}
	}
	// The forger makes everything else consistent: only the signature (or
	// the signers' membership) is wrong.
	q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
	if err := send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Qc{Qc: fastpayv1.NewQuorumCertificate(q)}}); err != nil {
		return err
	}
	return send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Lifecycle{Lifecycle: &fastpayv1.TxLifecycleUpdate{
		TxHash: txHash[:], Stage: fastpayv1.TxLifecycleUpdate_CERTIFIED, UnixMillis: now}}})
}
