package p2p

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Publishing queues objects on their topic's publisher loop (framer.go) and
// returns at once: an error means the object was not queued (not a member,
// not started, queue full, too large), never that a peer refused it.
// Objects queued are not validated again locally: publishing an invalid
// one gets this node penalised by its peers.

// waitOutbound applies publish back-pressure (see
// Config.PublishBackpressureTimeout).
func (m *Mesh) waitOutbound(ctx context.Context) error {
	start := time.Now()
	stalled, err := m.outbound.wait(ctx, m.cfg.PublishBackpressureTimeout)
	if waited := time.Since(start); waited > time.Millisecond {
		m.metrics.publishWaits.Inc()
		m.metrics.publishWaitSecs.Add(waited.Seconds())
	}
	for _, p := range stalled {
		m.metrics.stalledPeers.Inc()
		name := ""
		if mem, ok := m.host.committee.member(p); ok {
			name = mem.Name
		}
		m.logger.Warn("p2p: committee peer not draining its queue; no longer waiting for it", "peer", p, "name", name, "waited", m.cfg.PublishBackpressureTimeout)
	}
	return err
}

// PublishTx queues a request for the tx topic. The caller has validated
// it. Validators only.
func (m *Mesh) PublishTx(_ context.Context, req *fastpayv1.SubmitFastPayRequest) error {
	if !m.member {
		return ErrNotCommitteeMember
	}
	h, err := TxHash(req)
	if err != nil {
		return fmt.Errorf("p2p: publish tx: %w", err)
	}
	o, err := queuedTx(&TxMessage{Request: req, TxHash: h})
	if err != nil {
		return fmt.Errorf("p2p: publish tx: %w", err)
	}
	if len(o.enc) > MaxTxSize {
		return fmt.Errorf("p2p: publish tx: %w: %d bytes, limit %d", ErrTooLarge, len(o.enc), MaxTxSize)
	}
	f, err := m.framerFor(KindTx, m.topics.tx)
	if err != nil {
		return fmt.Errorf("p2p: publish tx: %w", err)
	}
	return f.enqueue(o)
}

// PublishCertificate queues one of this node's own certificates for the
// bulletin (a bulletin frame carries only its publisher's certificates;
// another signer's travel inside QCs and equivocation pairs). Validators
// only.
func (m *Mesh) PublishCertificate(_ context.Context, cert qc.Certificate) error {
	if !m.member {
		return ErrNotCommitteeMember
	}
	if cert.Signer != m.selfID {
		return fmt.Errorf("p2p: publish certificate: signed by %s, not by this node: frames carry their publisher's own certificates", cert.Signer.Hex())
	}
	f, err := m.framerFor(KindBulletin, m.topics.bull)
	if err != nil {
		return fmt.Errorf("p2p: publish certificate: %w", err)
	}
	// Our own signature needs no verification when it comes back inside a QC.
	m.pipes.verifier.Remember(&cert)
	return f.enqueue(queuedCert(&cert))
}

// PublishEquivocation queues proof that another member equivocated for the
// bulletin, so every member learns it even when the equivocator showed each
// of them only one side. e must verify (Committee.VerifyEquivocation).
// Validators only.
func (m *Mesh) PublishEquivocation(_ context.Context, e *qc.Equivocation) error {
	if !m.member {
		return ErrNotCommitteeMember
	}
	if e == nil {
		return errors.New("p2p: publish equivocation: nil evidence")
	}
	if err := e.CheckShape(); err != nil {
		return fmt.Errorf("p2p: publish equivocation: %w", err)
	}
	f, err := m.framerFor(KindBulletin, m.topics.bull)
	if err != nil {
		return fmt.Errorf("p2p: publish equivocation: %w", err)
	}
	return f.enqueue(queuedPair(e))
}

// PublishQC queues a QC for the bulletin and for its recipient's QC shard.
// q must be valid (built by qc.Assembler or checked with
// Committee.VerifyQC). Both are attempted; the error joins their failures.
// Validators only: every frame names its publisher, and peers reject frames
// whose publisher is not a member, so a light client's frame would only get
// it penalised.
func (m *Mesh) PublishQC(_ context.Context, q *qc.QC) error {
	if !m.member {
		return ErrNotCommitteeMember
	}
	if q == nil || len(q.Certs) == 0 {
		return errors.New("p2p: publish qc: no certificates")
	}
	o := queuedQC(q)
	var errs []error
	f, err := m.framerFor(KindBulletin, m.topics.bull)
	if err == nil {
		err = f.enqueue(o)
	}
	errs = append(errs, err)
	f, err = m.framerFor(KindQC, m.topics.qcTopicFor(q.Effects().Recipient))
	if err == nil {
		err = f.enqueue(o)
	}
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("p2p: publish qc: %w", err)
	}
	return nil
}

// PublishRawFrame sends data as it is on one of this mesh's topics,
// without validating it locally: peers judge it as they judge any frame.
// It exists for test networks and tools that probe how a mesh treats
// malformed or forged frames (build them with EncodeTxFrame,
// EncodeBulletinFrame and EncodeQCFrame); a node never needs it to take
// part in the protocol.
func (m *Mesh) PublishRawFrame(ctx context.Context, topic string, data []byte) error {
	info, ok := m.topics.lookup(topic)
	if !ok {
		return fmt.Errorf("p2p: publish raw frame: unknown topic %q", topic)
	}
	if info.Kind.ValidatorsOnly() && !m.member {
		return ErrNotCommitteeMember
	}
	m.mu.Lock()
	var err error
	switch m.state {
	case stateNew:
		err = ErrNotStarted
	case stateStopped:
		err = ErrStopped
	default:
		err = m.joinLocked(topic, false)
	}
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("p2p: publish raw frame: %w", err)
	}
	return m.publishFrame(ctx, info.Kind, topic, data, &frameObjects{local: true}, 0)
}

// EncodeTxFrame returns the wire bytes of a tx frame.
func EncodeTxFrame(h FrameHeader, reqs ...*fastpayv1.SubmitFastPayRequest) ([]byte, error) {
	return proto.Marshal(&fastpayv1.TxFrame{Header: wireHeader(h), Txs: reqs})
}

// EncodeBulletinFrame returns the wire bytes of a bulletin frame.
func EncodeBulletinFrame(h FrameHeader, certs []qc.Certificate, qcs []*qc.QC, pairs []qc.Equivocation) ([]byte, error) {
	var objs []queued
	for i := range certs {
		objs = append(objs, queuedCert(&certs[i]))
	}
	for _, q := range qcs {
		objs = append(objs, queuedQC(q))
	}
	for i := range pairs {
		objs = append(objs, queuedPair(&pairs[i]))
	}
	return encodeFrame(KindBulletin, h, objs)
}

// EncodeQCFrame returns the wire bytes of a QC frame.
func EncodeQCFrame(h FrameHeader, qcs ...*qc.QC) ([]byte, error) {
	objs := make([]queued, len(qcs))
	for i, q := range qcs {
		objs[i] = queuedQC(q)
	}
	return encodeFrame(KindQC, h, objs)
}

func wireHeader(h FrameHeader) *fastpayv1.FrameHeader {
	return &fastpayv1.FrameHeader{Publisher: h.Publisher[:], Seq: h.Seq}
}
