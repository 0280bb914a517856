package p2p

import (
	"context"
	"errors"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// topicFor returns a topic handle for publishing, joining (without
// subscribing) a QC shard a light client has not joined.
func (m *Mesh) topicFor(name string) (*pubsub.Topic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case stateNew:
		return nil, ErrNotStarted
	case stateStopped:
		return nil, ErrStopped
	}
	if err := m.joinLocked(name, false); err != nil {
		return nil, err
	}
	return m.joined[name].topic, nil
}

// publish sends data on a topic, passing obj as the message's validator
// data so the local validation accepts it without decoding or verifying.
// It first waits (bounded) for congested committee peers' outbound queues.
func (m *Mesh) publish(ctx context.Context, k TopicKind, name string, data []byte, obj any) error {
	t, err := m.topicFor(name)
	if err == nil {
		err = m.waitOutbound(ctx)
	}
	if err == nil {
		err = t.Publish(ctx, data, pubsub.WithValidatorData(obj))
	}
	m.metrics.publish(k, err)
	if err != nil {
		return fmt.Errorf("p2p: publish on %s: %w", name, err)
	}
	return nil
}

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

// PublishTx publishes a request on the tx topic. The caller has validated
// it; it is not validated again locally. Validators only.
func (m *Mesh) PublishTx(ctx context.Context, req *fastpayv1.SubmitFastPayRequest) error {
	if !m.member {
		return ErrNotCommitteeMember
	}
	h, err := TxHash(req)
	if err != nil {
		return fmt.Errorf("p2p: publish tx: %w", err)
	}
	data, err := encodeTx(req)
	if err != nil {
		return fmt.Errorf("p2p: publish tx: %w", err)
	}
	return m.publish(ctx, KindTx, m.topics.tx, data, &TxMessage{Request: req, TxHash: h})
}

// PublishCertificate publishes a certificate (this node's or one it relays)
// on the bulletin. It is not verified again locally: publishing an invalid
// one gets this node penalised by its peers. Validators only.
func (m *Mesh) PublishCertificate(ctx context.Context, cert qc.Certificate) error {
	if !m.member {
		return ErrNotCommitteeMember
	}
	data, err := encodeBulletin(&fastpayv1.BulletinMessage{Item: &fastpayv1.BulletinMessage_Cert{Cert: fastpayv1.NewValidatorCertificate(&cert)}})
	if err != nil {
		return fmt.Errorf("p2p: publish certificate: %w", err)
	}
	// Our own signature needs no verification when it comes back inside a QC.
	m.pipes.verifier.Remember(&cert)
	return m.publish(ctx, KindBulletin, m.topics.bull, data, &BulletinItem{Cert: &cert})
}

// PublishQC publishes a QC on the bulletin (validators only) and on its
// recipient's QC shard. q must be valid (built by qc.Assembler or checked
// with Committee.VerifyQC): it is not verified again locally. Both
// publishes are attempted; the error joins their failures.
func (m *Mesh) PublishQC(ctx context.Context, q *qc.QC) error {
	if q == nil || len(q.Certs) == 0 {
		return errors.New("p2p: publish qc: no certificates")
	}
	wire := fastpayv1.NewQuorumCertificate(q)
	var errs []error
	if m.member {
		data, err := encodeBulletin(&fastpayv1.BulletinMessage{Item: &fastpayv1.BulletinMessage_Qc{Qc: wire}})
		if err == nil {
			err = m.publish(ctx, KindBulletin, m.topics.bull, data, &BulletinItem{QC: q})
		}
		errs = append(errs, err)
	}
	data, err := encodeQC(wire)
	if err == nil {
		err = m.publish(ctx, KindQC, m.topics.qcTopicFor(q.Effects().Recipient), data, q)
	}
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("p2p: publish qc: %w", err)
	}
	return nil
}
