package apiserver

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

func TestGRPCSubmitFastPay(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f)
	client := grpcClient(t, s)
	ctx := testCtx(t)

	req := testRequest(0, 10)
	resp, err := client.SubmitFastPay(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := resp.GetCert().ToCertificate()
	if err != nil {
		t.Fatalf("response %v: %v", resp, err)
	}
	h, _ := mustEffects(t, req)
	if cert.TxHash != h || cert.SignerName != "v0" || cert.Signer != f.signers[0].ID() {
		t.Fatalf("certificate %+v", cert)
	}
	if err := f.committee.VerifyCertificate(&cert); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		amount uint64
		code   fastpayv1.RejectCode
	}{
		{amountTooMuch, fastpayv1.RejectCode_INSUFFICIENT_FUNDS},
		{amountUnavailable, fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE},
	} {
		resp, err := client.SubmitFastPay(ctx, testRequest(1, c.amount))
		if err != nil {
			t.Fatalf("a reject must not be a gRPC error: %v", err)
		}
		if resp.GetReject().GetCode() != c.code || resp.GetReject().GetMessage() == "" {
			t.Fatalf("amount %d: %v, want %s", c.amount, resp, c.code)
		}
	}
	// A request without a transaction is a reject too, not a gRPC error.
	resp, err = client.SubmitFastPay(ctx, &fastpayv1.SubmitFastPayRequest{})
	if err != nil || resp.GetReject().GetCode() != fastpayv1.RejectCode_INVALID_FORMAT {
		t.Fatalf("empty request: %v %v", resp, err)
	}
}

// recvKind names a stream event for failure messages.
func recvKind(ev *fastpayv1.SubmitFastPayEvent) string {
	switch e := ev.GetEvent().(type) {
	case *fastpayv1.SubmitFastPayEvent_Cert:
		return "cert " + e.Cert.GetSigner().GetName()
	case *fastpayv1.SubmitFastPayEvent_Qc:
		return "qc"
	case *fastpayv1.SubmitFastPayEvent_Lifecycle:
		return "lifecycle " + e.Lifecycle.GetStage().String()
	case *fastpayv1.SubmitFastPayEvent_Reject:
		return "reject " + e.Reject.GetCode().String()
	}
	return "empty"
}

func TestGRPCSubmitFastPayStream(t *testing.T) {
	f := newFake(t, 7) // quorum 5
	s := startServer(t, f)
	client := grpcClient(t, s)
	ctx := testCtx(t)

	req := testRequest(3, 25)
	h, e := mustEffects(t, req)
	// A certificate already on the board before the stream subscribes: it
	// must be replayed.
	f.board.AddCertificate(f.sign(1, h, e))

	stream, err := client.SubmitFastPayStream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if lc := ev.GetLifecycle(); lc.GetStage() != fastpayv1.TxLifecycleUpdate_ACCEPTED || !bytes.Equal(lc.GetTxHash(), h[:]) {
		t.Fatalf("first event %s, want lifecycle ACCEPTED", recvKind(ev))
	}

	// Certificates arriving from the mesh after the submission.
	added := make(chan struct{})
	go func() {
		defer close(added)
		for i := 2; i <= 4; i++ {
			f.board.AddCertificate(f.sign(i, h, e))
		}
	}()

	certs := map[string]bool{}
	var gotQC *fastpayv1.QuorumCertificate
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("before CERTIFIED: %v", err)
		}
		switch x := ev.GetEvent().(type) {
		case *fastpayv1.SubmitFastPayEvent_Cert:
			name := x.Cert.GetSigner().GetName()
			if certs[name] {
				t.Fatalf("certificate of %s sent twice", name)
			}
			if gotQC != nil {
				t.Fatalf("certificate of %s after the QC although the QC needs only 5", name)
			}
			certs[name] = true
		case *fastpayv1.SubmitFastPayEvent_Qc:
			if gotQC != nil {
				t.Fatal("QC sent twice")
			}
			gotQC = x.Qc
		case *fastpayv1.SubmitFastPayEvent_Lifecycle:
			if x.Lifecycle.GetStage() != fastpayv1.TxLifecycleUpdate_CERTIFIED {
				t.Fatalf("unexpected %s", recvKind(ev))
			}
			if gotQC == nil {
				t.Fatal("CERTIFIED before the QC")
			}
		default:
			t.Fatalf("unexpected %s", recvKind(ev))
		}
		if ev.GetLifecycle() != nil {
			break
		}
	}
	<-added
	for _, name := range []string{"v0", "v1", "v2", "v3", "v4"} {
		if !certs[name] {
			t.Errorf("no certificate from %s (got %v)", name, certs)
		}
	}
	q, err := gotQC.ToQC()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.committee.VerifyQC(q); err != nil {
		t.Fatalf("streamed QC does not verify: %v", err)
	}

	// Settlement stages, then the stream ends.
	f.board.SetStage(h, fastpayv1.TxLifecycleUpdate_QUEUED_ONCHAIN, 0)
	f.board.SetStage(h, fastpayv1.TxLifecycleUpdate_INCLUDED, 77)
	f.board.SetStage(h, fastpayv1.TxLifecycleUpdate_FINALIZED, 77)
	for _, want := range []fastpayv1.TxLifecycleUpdate_Stage{
		fastpayv1.TxLifecycleUpdate_QUEUED_ONCHAIN, fastpayv1.TxLifecycleUpdate_INCLUDED, fastpayv1.TxLifecycleUpdate_FINALIZED,
	} {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		lc := ev.GetLifecycle()
		if lc.GetStage() != want {
			t.Fatalf("got %s, want lifecycle %s", recvKind(ev), want)
		}
		if want >= fastpayv1.TxLifecycleUpdate_INCLUDED && lc.GetBlockHeight() != 77 {
			t.Fatalf("%s block height %d", want, lc.GetBlockHeight())
		}
	}
	if ev, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after FINALIZED: %v %v, want EOF", ev, err)
	}
}

func TestGRPCSubmitFastPayStreamRejects(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f)
	client := grpcClient(t, s)
	ctx := testCtx(t)

	for name, c := range map[string]struct {
		req         *fastpayv1.SubmitFastPayRequest
		code        fastpayv1.RejectCode
		reachesFake bool
	}{
		"insufficient funds": {testRequest(0, amountTooMuch), fastpayv1.RejectCode_INSUFFICIENT_FUNDS, true},
		"unhashable":         {&fastpayv1.SubmitFastPayRequest{Tx: &fastpayv1.FastPayTx{}}, fastpayv1.RejectCode_INVALID_FORMAT, false},
		"no tx":              {&fastpayv1.SubmitFastPayRequest{}, fastpayv1.RejectCode_INVALID_FORMAT, false},
	} {
		t.Run(name, func(t *testing.T) {
			_, before := f.last()
			stream, err := client.SubmitFastPayStream(ctx, c.req)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if ev.GetReject().GetCode() != c.code {
				t.Fatalf("got %s, want reject %s", recvKind(ev), c.code)
			}
			if ev, err := stream.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the reject: %v %v, want EOF", ev, err)
			}
			if _, after := f.last(); (after > before) != c.reachesFake {
				t.Fatalf("backend called %d times, reachesFake %v", after-before, c.reachesFake)
			}
		})
	}
}

func TestGRPCSubmitFastPayStreamEnds(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f, func(c *Config) {
		c.StreamTimeout = 300 * time.Millisecond
		c.DefaultWaitTimeout = 100 * time.Millisecond
	})
	client := grpcClient(t, s)
	ctx := testCtx(t)

	drain := func(stream interface {
		Recv() (*fastpayv1.SubmitFastPayEvent, error)
	}) error {
		for {
			if _, err := stream.Recv(); err != nil {
				return err
			}
		}
	}

	// Lifetime cap.
	stream, err := client.SubmitFastPayStream(ctx, testRequest(0, 5))
	if err != nil {
		t.Fatal(err)
	}
	if err := drain(stream); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("at the lifetime cap: %v, want DeadlineExceeded", err)
	}

	// Settlement failure.
	req := testRequest(1, 5)
	h, _ := mustEffects(t, req)
	stream, err = client.SubmitFastPayStream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetLifecycle() == nil {
		t.Fatalf("first event %v %v", ev, err)
	}
	f.board.ReportSettlementFailure(h, "reverted in block 9")
	err = drain(stream)
	if status.Code(err) != codes.Aborted || !bytes.Contains([]byte(status.Convert(err).Message()), []byte("reverted in block 9")) {
		t.Fatalf("after a settlement failure: %v, want Aborted with the reason", err)
	}
}

func TestGRPCGetBulletinBoard(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f)
	client := grpcClient(t, s)
	ctx := testCtx(t)

	// Five transactions of alice with two certificates each; the first one
	// reaches quorum (3).
	var hashes []qc.Hash
	for seq := range uint64(5) {
		h, e := mustEffects(t, testRequest(seq, 7))
		hashes = append(hashes, h)
		f.board.AddCertificate(f.sign(0, h, e))
		f.board.AddCertificate(f.sign(1, h, e))
		if seq == 0 {
			f.board.AddCertificate(f.sign(2, h, e))
		}
	}

	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		resp, err := client.GetBulletinBoard(ctx, &fastpayv1.GetBulletinBoardRequest{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.GetCerts()) > 3 {
			t.Fatalf("page of %d certificates with limit 3", len(resp.GetCerts()))
		}
		for _, c := range resp.GetCerts() {
			k := string(c.GetTxHash()) + c.GetSigner().GetName()
			if seen[k] {
				t.Fatal("certificate repeated across pages")
			}
			seen[k] = true
		}
		if cursor = resp.GetNextCursor(); cursor == "" {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 11 || pages != 4 {
		t.Fatalf("%d certificates in %d pages, want 11 in 4", len(seen), pages)
	}

	resp, err := client.GetBulletinBoard(ctx, &fastpayv1.GetBulletinBoardRequest{Filter: &fastpayv1.GetBulletinBoardRequest_TxHash{TxHash: hashes[0][:]}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetCerts()) != 3 || len(resp.GetQcs()) != 1 || !bytes.Equal(resp.GetQcs()[0].GetTxHash(), hashes[0][:]) {
		t.Fatalf("by tx: %d certs, %d qcs", len(resp.GetCerts()), len(resp.GetQcs()))
	}
	resp, err = client.GetBulletinBoard(ctx, &fastpayv1.GetBulletinBoardRequest{Filter: &fastpayv1.GetBulletinBoardRequest_Address{Address: fastpayv1.NewAddress(bob)}, Limit: 100})
	if err != nil || len(resp.GetCerts()) != 11 {
		t.Fatalf("by recipient: %d certs, %v", len(resp.GetCerts()), err)
	}
	resp, err = client.GetBulletinBoard(ctx, &fastpayv1.GetBulletinBoardRequest{SinceUnixMillis: uint64(time.Now().Add(time.Hour).UnixMilli())})
	if err != nil || len(resp.GetCerts()) != 0 {
		t.Fatalf("since the future: %d certs, %v", len(resp.GetCerts()), err)
	}

	for name, req := range map[string]*fastpayv1.GetBulletinBoardRequest{
		"short tx hash":  {Filter: &fastpayv1.GetBulletinBoardRequest_TxHash{TxHash: []byte{1, 2}}},
		"empty tx hash":  {Filter: &fastpayv1.GetBulletinBoardRequest_TxHash{}},
		"short address":  {Filter: &fastpayv1.GetBulletinBoardRequest_Address{Address: &fastpayv1.Address{Data: []byte{1}}}},
		"nil address":    {Filter: &fastpayv1.GetBulletinBoardRequest_Address{}},
		"foreign cursor": {Cursor: "not-a-cursor!"},
	} {
		if _, err := client.GetBulletinBoard(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}

func TestGRPCInfoAndChainHead(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f)
	client := grpcClient(t, s)
	ctx := testCtx(t)

	info, err := client.GetValidatorInfo(ctx, &fastpayv1.GetValidatorInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := f.signers[0].ID()
	want := &fastpayv1.GetValidatorInfoResponse{Validator: &fastpayv1.ValidatorId{Name: "v0", Id: id[:], Pubkey: id[:]},
		GossipPeers: []string{"12D3KooWfake1", "12D3KooWfake2"}}
	if !proto.Equal(info, want) {
		t.Fatalf("info %v, want %v", info, want)
	}

	head, err := client.GetChainHead(ctx, &fastpayv1.GetChainHeadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if head.GetBlockHeight() != 4242 || len(head.GetBlockHash()) != 32 || head.GetBlockHash()[0] != 0xbe || head.GetUnixMillis() == 0 {
		t.Fatalf("head %v", head)
	}
	f.setHeadErr(errors.New("node down"))
	if _, err := client.GetChainHead(ctx, &fastpayv1.GetChainHeadRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("head with the chain down: %v, want Unavailable", err)
	}
}

func TestStopEndsOpenStreams(t *testing.T) {
	f := newFake(t, 4)
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	s, err := New(cfg, f, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	client := grpcClient(t, s)
	stream, err := client.SubmitFastPayStream(testCtx(t), testRequest(0, 5))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	start := time.Now()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop with an open stream: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Stop took %s", time.Since(start))
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if c := status.Code(err); c != codes.Unavailable {
				t.Fatalf("stream ended with %v, want Unavailable", err)
			}
			break
		}
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
