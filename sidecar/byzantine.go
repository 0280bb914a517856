package sidecar

import (
	"fmt"
	"log/slog"
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/promreg"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// Byzantine validator modes, for test networks only. A network tester runs
// one validator of a committee in one of these modes to check that the
// honest validators cope: they keep certifying with their quorum, reject and
// penalise what is invalid, and expose what is provably malicious. The modes
// change only what this validator shares with the mesh; its own validation
// rules, durable state and equivocation guard stay honest.
const (
	// ByzantineHonest is the default: no misbehaviour.
	ByzantineHonest = ""
	// ByzantineEquivocate: for every transaction it certifies, the
	// validator also signs and publishes two certificates that conflict
	// with it for the same contention key: the same effects under another
	// tx hash (the request re-hashed with another expiry, as a client could
	// submit the same signed transaction twice), and the same tx hash with
	// other effects (the payment to another recipient). Both verify, so
	// honest boards record them as equivocation evidence.
	ByzantineEquivocate = "equivocate"
	// ByzantineInvalidSignatures: every certificate the validator publishes
	// (alone, inside the QCs it forms, and in anti-entropy batches) carries
	// a corrupted signature. Honest validators reject them, so its peers'
	// gossipsub scores of it fall.
	ByzantineInvalidSignatures = "invalid-signatures"
)

// ByzantineConfig selects a deliberate misbehaviour. Package node refuses
// any mode but the honest one unless the committee file marks the network
// with test_network = true.
type ByzantineConfig struct {
	// Mode is "" (honest, the default), "equivocate" or
	// "invalid-signatures" (see the constants above).
	Mode string `toml:"mode"`
}

// Validate checks that the mode is known.
func (c ByzantineConfig) Validate() error {
	switch c.Mode {
	case ByzantineHonest, ByzantineEquivocate, ByzantineInvalidSignatures:
		return nil
	}
	return fmt.Errorf("[byzantine] mode %q is unknown (want %q, %q or empty for an honest validator)", c.Mode, ByzantineEquivocate, ByzantineInvalidSignatures)
}

// byzantine replaces the sidecar's handling of its own certificates when a
// Byzantine mode is on. A nil *byzantine is an honest sidecar.
type byzantine struct {
	mode      string
	log       *slog.Logger
	published *prometheus.CounterVec
}

// newByzantine returns the misbehaviour of mode (not ByzantineHonest).
func newByzantine(mode string, reg prometheus.Registerer, log *slog.Logger) (*byzantine, error) {
	b := &byzantine{
		mode: mode,
		log:  log.With("subsystem", "byzantine", "mode", mode),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "byzantine_certificates_total",
			Help: "Certificates published by a Byzantine test validator: corrupted (bad signature) or conflicting (equivocation).",
		}, []string{"kind"}),
	}
	if _, err := promreg.Register("sidecar", reg, b.published); err != nil {
		return nil, err
	}
	return b, nil
}

// addOwnCertificate records and publishes a certificate this validator
// signed for p, misbehaving as the mode says.
func (b *byzantine) addOwnCertificate(s *Sidecar, p *validator.Payment, cert qc.Certificate) {
	switch b.mode {
	case ByzantineInvalidSignatures:
		// The corrupted certificate goes on this node's board too, so the
		// QCs it forms and its anti-entropy batches carry it as well.
		bad := corruptSignature(cert)
		s.addCertificate(bad)
		b.publish(s, bad, "corrupted")
	case ByzantineEquivocate:
		s.addCertificate(cert)
		b.publish(s, cert, "")
		for _, c := range b.conflicting(s.v.Signer(), p, cert) {
			b.publish(s, c, "conflicting")
		}
	}
}

func (b *byzantine) publish(s *Sidecar, cert qc.Certificate, kind string) {
	if err := s.mesh.PublishCertificate(s.ctx, cert); err != nil {
		if s.ctx.Err() == nil {
			b.log.Warn("publish certificate", "tx", cert.TxHash, "err", err)
		}
		return
	}
	if kind != "" {
		b.published.WithLabelValues(kind).Inc()
	}
}

// corruptSignature returns cert with a signature that does not verify
// (one flipped bit of R).
func corruptSignature(cert qc.Certificate) qc.Certificate {
	cert.Signature[0] ^= 0x01
	return cert
}

// conflicting signs the two certificates that conflict with cert for p's
// contention key. Each is a valid certificate: together with cert, each
// pair passes Committee.VerifyEquivocation.
func (b *byzantine) conflicting(signer *qc.Signer, p *validator.Payment, cert qc.Certificate) []qc.Certificate {
	var out []qc.Certificate
	if in, err := p.Request.GetTx().TxHashInput(); err == nil {
		if in.Expiry.Value < math.MaxUint64 {
			in.Expiry.Value++
		} else {
			in.Expiry.Value--
		}
		if h := qc.TxHash(in); h != cert.TxHash {
			out = append(out, signer.Sign(h, cert.Effects, cert.CreatedUnixMillis))
		}
	}
	other := cert.Effects
	other.Recipient[len(other.Recipient)-1] ^= 0xff
	out = append(out, signer.Sign(cert.TxHash, other, cert.CreatedUnixMillis))
	return out
}
