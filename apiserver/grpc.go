package apiserver

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// sidecarService implements fastpayv1.FastPaySidecarServer over a Backend.
type sidecarService struct {
	fastpayv1.UnimplementedFastPaySidecarServer
	s *Server
}

// rejectOf converts a Submit error: a *validator.Reject keeps its code and
// message, anything else is TEMPORARY_UNAVAILABLE with the error's message.
func rejectOf(err error) *fastpayv1.RejectReason {
	var r *validator.Reject
	if errors.As(err, &r) {
		return r.Proto()
	}
	return &fastpayv1.RejectReason{Code: fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, Message: err.Error()}
}

func (g *sidecarService) SubmitFastPay(ctx context.Context, req *fastpayv1.SubmitFastPayRequest) (*fastpayv1.SubmitFastPayResponse, error) {
	cert, err := g.s.backend.Submit(ctx, req)
	if err != nil {
		rej := rejectOf(err)
		g.s.metrics.submissions.WithLabelValues("grpc", rej.Code.String()).Inc()
		return &fastpayv1.SubmitFastPayResponse{Result: &fastpayv1.SubmitFastPayResponse_Reject{Reject: rej}}, nil
	}
	g.s.metrics.submissions.WithLabelValues("grpc", "certified").Inc()
	return &fastpayv1.SubmitFastPayResponse{Result: &fastpayv1.SubmitFastPayResponse_Cert{Cert: fastpayv1.NewValidatorCertificate(&cert)}}, nil
}

// resyncInterval is how often a stream that lost board events re-reads the
// transaction's status.
const resyncInterval = time.Second

func (g *sidecarService) SubmitFastPayStream(req *fastpayv1.SubmitFastPayRequest, stream grpc.ServerStreamingServer[fastpayv1.SubmitFastPayEvent]) error {
	s := g.s
	in, err := req.GetTx().TxHashInput()
	if err != nil {
		s.metrics.submissions.WithLabelValues("grpc_stream", fastpayv1.RejectCode_INVALID_FORMAT.String()).Inc()
		return stream.Send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Reject{
			Reject: fastpayv1.Reject(fastpayv1.RejectCode_INVALID_FORMAT, "%v", err)}})
	}
	txHash := qc.TxHash(in)
	ctx, cancel := context.WithTimeout(stream.Context(), s.cfg.StreamTimeout)
	defer cancel()
	s.metrics.streams.WithLabelValues("grpc").Inc()
	defer s.metrics.streams.WithLabelValues("grpc").Dec()

	// Subscribe before submitting so nothing between the submission and the
	// replay of the board's state is lost.
	board := s.backend.Board()
	sub := board.SubscribeTx(txHash, nil)
	defer sub.Close()

	cert, err := s.backend.Submit(ctx, req)
	if err != nil {
		rej := rejectOf(err)
		s.metrics.submissions.WithLabelValues("grpc_stream", rej.Code.String()).Inc()
		return stream.Send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Reject{Reject: rej}})
	}
	s.metrics.submissions.WithLabelValues("grpc_stream", "certified").Inc()
	if cert.TxHash != txHash {
		s.log.Warn("backend certified a different tx hash than the request's", "want", txHash, "got", cert.TxHash)
	}

	st := &txStream{board: board, txHash: txHash, send: stream.Send, sent: make(map[certKey]bool)}
	if err := st.sendStage(fastpayv1.TxLifecycleUpdate_ACCEPTED, 0, uint64(time.Now().UnixMilli())); err != nil {
		return err
	}
	if err := st.sendCert(&cert); err != nil {
		return err
	}
	if done, err := st.resync(); done || err != nil {
		return err
	}

	ticker := time.NewTicker(resyncInterval)
	defer ticker.Stop()
	var dropped uint64
	for {
		select {
		case <-ctx.Done():
			if err := stream.Context().Err(); err != nil {
				return status.FromContextError(err).Err()
			}
			return status.Errorf(codes.DeadlineExceeded, "stream lifetime cap of %s reached before FINALIZED; poll GetBulletinBoard for the rest", s.cfg.StreamTimeout)
		case <-s.closing:
			return status.Error(codes.Unavailable, "server is shutting down")
		case ev, ok := <-sub.C():
			if !ok {
				return status.Error(codes.Unavailable, "board subscription closed")
			}
			if done, err := st.handle(&ev); done || err != nil {
				return err
			}
		case <-ticker.C:
		}
		if d := sub.Dropped(); d != dropped {
			s.metrics.streamDrops.WithLabelValues("grpc").Add(float64(d - dropped))
			dropped = d
			if done, err := st.resync(); done || err != nil {
				return err
			}
		}
	}
}

type certKey struct {
	signer  qc.ValidatorID
	effects qc.Hash
}

// txStream sends one transaction's progress exactly once per item, in order:
// certificates, the QC, then lifecycle stages moving forward only.
type txStream struct {
	board  *bulletin.Board
	txHash qc.Hash
	send   func(*fastpayv1.SubmitFastPayEvent) error
	sent   map[certKey]bool
	qcSent bool
	stage  bulletin.Stage
}

func (t *txStream) sendCert(c *qc.Certificate) error {
	k := certKey{c.Signer, c.EffectsHash}
	if t.sent[k] {
		return nil
	}
	t.sent[k] = true
	return t.send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Cert{Cert: fastpayv1.NewValidatorCertificate(c)}})
}

// sendQC sends q's certificates not sent yet, q, and the CERTIFIED stage.
func (t *txStream) sendQC(q *qc.QC, unixMillis uint64) error {
	if t.qcSent {
		return nil
	}
	for i := range q.Certs {
		if err := t.sendCert(&q.Certs[i]); err != nil {
			return err
		}
	}
	t.qcSent = true
	if err := t.send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Qc{Qc: fastpayv1.NewQuorumCertificate(q)}}); err != nil {
		return err
	}
	return t.sendStage(fastpayv1.TxLifecycleUpdate_CERTIFIED, 0, unixMillis)
}

// sendStage sends stage if it moves the stream forward. A settlement stage
// is preceded by the QC when the stream has not sent it yet.
func (t *txStream) sendStage(stage bulletin.Stage, height, unixMillis uint64) error {
	if stage <= t.stage {
		return nil
	}
	if stage >= fastpayv1.TxLifecycleUpdate_CERTIFIED && !t.qcSent {
		if q, ok := t.board.QC(t.txHash); ok {
			return t.sendQCThen(q, stage, height, unixMillis)
		}
	}
	t.stage = stage
	return t.send(&fastpayv1.SubmitFastPayEvent{Event: &fastpayv1.SubmitFastPayEvent_Lifecycle{Lifecycle: &fastpayv1.TxLifecycleUpdate{
		TxHash: append([]byte(nil), t.txHash[:]...), Stage: stage, UnixMillis: unixMillis, BlockHeight: height,
	}}})
}

func (t *txStream) sendQCThen(q *qc.QC, stage bulletin.Stage, height, unixMillis uint64) error {
	if err := t.sendQC(q, unixMillis); err != nil {
		return err
	}
	return t.sendStage(stage, height, unixMillis)
}

// handle processes one board event; done is true when the stream should end
// (with err as its status, nil for a normal end).
func (t *txStream) handle(ev *bulletin.Event) (done bool, err error) {
	switch ev.Kind {
	case bulletin.EventCertificate:
		if ev.Cert != nil {
			err = t.sendCert(ev.Cert)
		}
	case bulletin.EventQC:
		if ev.QC != nil {
			err = t.sendQC(ev.QC, ev.UnixMillis)
		}
	case bulletin.EventLifecycle:
		err = t.sendStage(ev.Stage, ev.BlockHeight, ev.UnixMillis)
	case bulletin.EventSettlementFailure:
		return true, status.Errorf(codes.Aborted, "settlement failed: %s", ev.Reason)
	}
	if err != nil {
		return true, err
	}
	return t.stage >= fastpayv1.TxLifecycleUpdate_FINALIZED, nil
}

// resync sends what the board holds for the transaction that the stream has
// not sent yet.
func (t *txStream) resync() (done bool, err error) {
	st, ok := t.board.Status(t.txHash)
	if !ok {
		return false, nil
	}
	for i := range st.Certs {
		if err := t.sendCert(&st.Certs[i]); err != nil {
			return true, err
		}
	}
	if st.QC != nil {
		if err := t.sendQC(st.QC, millisOf(st.QCAt)); err != nil {
			return true, err
		}
	}
	if err := t.sendStage(st.Stage, st.BlockHeight, millisOf(st.StageAt[st.Stage])); err != nil {
		return true, err
	}
	return t.stage >= fastpayv1.TxLifecycleUpdate_FINALIZED, nil
}

func millisOf(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixMilli())
}

func (g *sidecarService) GetBulletinBoard(ctx context.Context, req *fastpayv1.GetBulletinBoardRequest) (*fastpayv1.GetBulletinBoardResponse, error) {
	q := bulletin.Query{SinceUnixMillis: req.GetSinceUnixMillis(), Limit: int(req.GetLimit()), Cursor: req.GetCursor()}
	switch f := req.GetFilter().(type) {
	case *fastpayv1.GetBulletinBoardRequest_TxHash:
		h, err := qc.HashFromBytes(f.TxHash)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "tx_hash: %v", err)
		}
		q.TxHash = &h
	case *fastpayv1.GetBulletinBoardRequest_Address:
		a, err := f.Address.ToAddress("address")
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%v", err)
		}
		q.Address = &a
	}
	if len(q.Cursor) > 64 {
		return nil, status.Error(codes.InvalidArgument, "cursor: too long")
	}
	page, err := g.s.backend.Board().Query(q)
	if err != nil {
		if errors.Is(err, bulletin.ErrBadCursor) {
			return nil, status.Errorf(codes.InvalidArgument, "cursor: %v", err)
		}
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	resp := &fastpayv1.GetBulletinBoardResponse{NextCursor: page.NextCursor,
		Certs: make([]*fastpayv1.ValidatorCertificate, len(page.Certs)), Qcs: make([]*fastpayv1.QuorumCertificate, len(page.QCs))}
	for i := range page.Certs {
		resp.Certs[i] = fastpayv1.NewValidatorCertificate(&page.Certs[i])
	}
	for i, q := range page.QCs {
		resp.Qcs[i] = fastpayv1.NewQuorumCertificate(q)
	}
	return resp, nil
}

func (g *sidecarService) GetValidatorInfo(context.Context, *fastpayv1.GetValidatorInfoRequest) (*fastpayv1.GetValidatorInfoResponse, error) {
	info := g.s.backend.Info()
	return &fastpayv1.GetValidatorInfoResponse{
		Validator:   &fastpayv1.ValidatorId{Name: info.Name, Id: append([]byte(nil), info.ID[:]...), Pubkey: append([]byte(nil), info.ID[:]...)},
		GossipPeers: append([]string(nil), info.GossipPeers...),
	}, nil
}

func (g *sidecarService) GetChainHead(ctx context.Context, _ *fastpayv1.GetChainHeadRequest) (*fastpayv1.GetChainHeadResponse, error) {
	head, err := g.s.backend.ChainHead(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "chain head: %v", err)
	}
	return &fastpayv1.GetChainHeadResponse{BlockHeight: head.Number, BlockHash: append([]byte(nil), head.Hash[:]...), UnixMillis: head.UnixMillis}, nil
}
