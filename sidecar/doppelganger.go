package sidecar

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// Doppelganger protection. Two sidecars running with one validator key
// (a machine moved without stopping the old one, a failover that fired
// twice) each keep their own signing history, so together they can sign
// two conflicting certificates. For DoppelgangerWindow after start the
// sidecar signs nothing and watches what the mesh brings (certificates,
// QCs, anti-entropy answers) for certificates by its own key that its
// durable state does not account for (Validator.SignedBefore): its own
// earlier certificates, which peers send back after a restart, are
// accounted for; a certificate for a contention key it never signed, or
// for another transaction than the one it signed, came from another
// process. Then it never signs: it logs an ERROR naming the risk and the
// fix, readiness reports it, and Fatal delivers the error so the command
// exits non-zero (as Lighthouse does).

// MaxDoppelgangerWindow bounds Config.DoppelgangerWindow.
const MaxDoppelgangerWindow = 10 * time.Minute

// ErrDoppelganger is the error a tripped doppelganger check reports.
var ErrDoppelganger = fmt.Errorf("another process is signing with this validator's key")

type doppelganger struct {
	window time.Duration
	until  atomic.Int64 // the window's end, unix nanoseconds

	mu      sync.Mutex
	tripped error
	fatal   chan error // receives the trip, once
}

// newDoppelganger opens the window now; start opens it again when the
// sidecar starts.
func newDoppelganger(window time.Duration) *doppelganger {
	d := &doppelganger{window: window, fatal: make(chan error, 1)}
	d.start()
	return d
}

func (d *doppelganger) start() {
	if d.window > 0 {
		d.until.Store(time.Now().Add(d.window).UnixNano())
	}
}

// open reports whether the watch window is still open at now.
func (d *doppelganger) open(now time.Time) bool { return now.UnixNano() < d.until.Load() }

// left is how long the window stays open after now.
func (d *doppelganger) left(now time.Time) time.Duration {
	return time.Duration(d.until.Load() - now.UnixNano()).Round(time.Millisecond)
}

// end is when the window closes.
func (d *doppelganger) end() time.Time { return time.Unix(0, d.until.Load()) }

// signingErr is nil when the sidecar may sign now, otherwise a retryable
// reject saying why not.
func (s *Sidecar) signingErr() error {
	d := s.dg
	d.mu.Lock()
	tripped := d.tripped
	d.mu.Unlock()
	if tripped != nil {
		return &validator.Reject{Code: fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, Message: "this validator has stopped signing: " + tripped.Error(), Cause: tripped}
	}
	if now := time.Now(); d.open(now) {
		return &validator.Reject{Code: fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE,
			Message: fmt.Sprintf("doppelganger check after start: not signing for another %s; retry then", d.left(now))}
	}
	return nil
}

// SigningHealth returns nil while the sidecar signs, otherwise why not:
// the doppelganger window is open, or another process signs with its key.
func (s *Sidecar) SigningHealth() error {
	d := s.dg
	d.mu.Lock()
	tripped := d.tripped
	d.mu.Unlock()
	if tripped != nil {
		return tripped
	}
	if now := time.Now(); d.open(now) {
		return fmt.Errorf("doppelganger window open: watching the mesh for this key's signatures for another %s before signing", d.left(now))
	}
	return nil
}

// Fatal delivers the error that stops this sidecar for good: another
// process signing with its key. The command running the sidecar exits on
// it.
func (s *Sidecar) Fatal() <-chan error { return s.dg.fatal }

// watchOwn checks certificates arriving from the mesh while the window is
// open: one by this validator's key that its state does not account for
// trips the check.
func (s *Sidecar) watchOwn(certs ...qc.Certificate) {
	d := s.dg
	if !d.open(time.Now()) {
		return
	}
	self := s.v.Signer().ID()
	for i := range certs {
		c := &certs[i]
		if c.Signer != self || s.v.SignedBefore(c) {
			continue
		}
		d.mu.Lock()
		first := d.tripped == nil
		if first {
			k := c.Effects.ContentionKey()
			d.tripped = fmt.Errorf("%w: the mesh holds its certificate for tx %s (sender %s, nonce_seq %d) that this sidecar's data directory never signed", ErrDoppelganger, c.TxHash, k.Sender.Hex(), k.NonceSeq)
			d.fatal <- d.tripped
		}
		d.mu.Unlock()
		if first {
			s.metrics.doppelganger.Set(1)
			s.log.Error("DOPPELGANGER: another process is signing with this validator's key; this sidecar will not sign. Two signers with one key can certify conflicting payments. Fix: stop the other sidecar using this key (or this one) so exactly one runs; if this data directory replaced the one that signed, import its signing history (allegro history import) instead",
				"tx", c.TxHash, "sender", c.Effects.Sender.Hex(), "nonce_seq", c.Effects.NonceSeq, "validator", s.v.Signer().Name())
		}
		return
	}
}
