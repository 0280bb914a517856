package validator

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// ErrEpochStopped is wrapped by the refusal of a payment after this
// validator stopped signing in its epoch: the client should retry, with the
// next epoch's committee.
var ErrEpochStopped = errors.New("validator: stopped signing in this epoch")

// Stopped reports whether the validator stopped signing in its epoch
// (CloseEpoch).
func (v *Validator) Stopped() bool {
	v.stopMu.RLock()
	defer v.stopMu.RUnlock()
	return v.epochStopped
}

func (v *Validator) stoppedReject() error {
	return reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, ErrEpochStopped, "epoch %d is over for this validator; retry with the next epoch's committee", v.signer.Domain().Epoch)
}

// CloseEpoch ends this validator's epoch (SPEC §5a): it durably stops
// signing in it (from then on every new payment is refused with a
// retryable error), then lists every contention key it signed that is
// unsettled at the chain's latest head, with the stored request and its
// own certificate, adds the entries carried (what it adopted entering this
// epoch, still listed), signs the close with its key and stores it. A
// second call returns the stored close. Signed requests recorded before
// requests were stored cannot be listed and are logged.
func (v *Validator) CloseEpoch(ctx context.Context, carried []qc.CloseEntry) (*qc.Close, error) {
	epoch := v.signer.Domain().Epoch
	v.stopMu.Lock()
	if !v.epochStopped {
		if err := v.store.RecordEpochStopped(epoch); err != nil {
			v.stopMu.Unlock()
			return nil, err
		}
		v.epochStopped = true
	}
	v.stopMu.Unlock()
	// Every signature made before the stop is in the guard now: signing
	// holds stopMu for reading from its check to its guard entry.
	if _, stored, err := v.store.EpochClose(epoch); err != nil || stored != nil {
		if err != nil {
			return nil, err
		}
		return stored.ToClose()
	}

	v.pruneMu.Lock()
	defer v.pruneMu.Unlock()
	view, err := v.chain.Latest(ctx)
	if err != nil {
		return nil, fmt.Errorf("close epoch %d: chain state: %w", epoch, err)
	}
	v.mu.Lock()
	keys := make([]qc.ContentionKey, 0, len(v.guard))
	for k := range v.guard {
		keys = append(keys, k)
	}
	v.mu.Unlock()

	cl := &qc.Close{ChainID: v.signer.Domain().ChainID, Epoch: epoch, Height: view.Head().Number}
	listed := make(map[qc.Hash]struct{}, len(keys)+len(carried))
	nonces := tempo.NewNonceReads(view)
	for _, k := range keys {
		cert, err := v.ownCertificate(k)
		if errors.Is(err, errEarlierEpoch) {
			// Not a signature of this epoch: the closes of the epoch it was
			// signed in listed it, and it comes back through carried if
			// still held.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("close epoch %d: %w", epoch, err)
		}
		if settled, err := settledIn(ctx, nonces, cert.Effects); err != nil {
			return nil, fmt.Errorf("close epoch %d: nonce of %s: %w", epoch, k, err)
		} else if settled {
			continue
		}
		req, err := v.store.signedRequest(k)
		if err != nil {
			return nil, fmt.Errorf("close epoch %d: %w", epoch, err)
		}
		if req == nil {
			v.log.Warn("signed transaction without its stored request cannot be listed in the close", "epoch", epoch, "tx", cert.TxHash, "key", k.String())
			continue
		}
		raw, err := proto.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("close epoch %d: encode request: %w", epoch, err)
		}
		cl.Entries = append(cl.Entries, qc.CloseEntry{Request: raw, Cert: cert, CertEpoch: epoch})
		listed[cert.TxHash] = struct{}{}
	}
	for _, en := range carried {
		if _, dup := listed[en.Cert.TxHash]; dup {
			continue
		}
		if settled, err := settledIn(ctx, nonces, en.Cert.Effects); err != nil {
			return nil, fmt.Errorf("close epoch %d: nonce of %s: %w", epoch, en.Cert.Effects.ContentionKey(), err)
		} else if settled {
			continue
		}
		cl.Entries = append(cl.Entries, en)
		listed[en.Cert.TxHash] = struct{}{}
	}
	if err := v.signer.SignClose(cl); err != nil {
		return nil, err
	}
	wire, err := fastpayv1.NewEpochClose(cl)
	if err != nil {
		return nil, fmt.Errorf("close epoch %d: %w", epoch, err)
	}
	if err := v.store.RecordEpochClose(wire); err != nil {
		return nil, err
	}
	v.log.Info("epoch closed", "epoch", epoch, "height", cl.Height, "entries", len(cl.Entries))
	return cl, nil
}

// maxCloseParentQCs bounds the parent QCs of a request listed in a close:
// its QCs are not needed to adopt it, only its hash.
const maxCloseParentQCs = 64

// CloseRequestCheck returns the check a handover runs on each entry of a
// close (epoch.CheckRequest): the request decodes as a payment of chainID
// whose tx hash and effects are the certificate's.
func CloseRequestCheck(chainID uint64) func(request []byte, txHash qc.Hash, effects qc.Effects) error {
	return func(request []byte, txHash qc.Hash, effects qc.Effects) error {
		req := new(fastpayv1.SubmitFastPayRequest)
		if err := proto.Unmarshal(request, req); err != nil {
			return fmt.Errorf("close entry request: %w", err)
		}
		p, err := Decode(req, qc.Domain{ChainID: chainID}, maxCloseParentQCs)
		if err != nil {
			return fmt.Errorf("close entry request: %w", err)
		}
		if p.TxHash != txHash || p.Effects != effects {
			return fmt.Errorf("close entry request is tx %s, the certificate names %s", p.TxHash, txHash)
		}
		return nil
	}
}

// RecordAdoptedClose durably keeps a close this validator adopted entering
// its epoch, so that after a restart it adopts it again (and carries its
// entries forward in its own close).
func (v *Validator) RecordAdoptedClose(cl *qc.Close) error {
	wire, err := fastpayv1.NewEpochClose(cl)
	if err != nil {
		return err
	}
	return v.store.RecordAdoptedClose(wire)
}

// AdoptedCloses returns the closes of the previous epoch this validator
// adopted before a restart, and its own close of that epoch if it made one.
func (v *Validator) AdoptedCloses() ([]*qc.Close, error) {
	e := v.signer.Domain().Epoch
	if e == 0 {
		return nil, nil
	}
	wires, err := v.store.AdoptedCloses(e - 1)
	if err != nil {
		return nil, err
	}
	if _, own, err := v.store.EpochClose(e - 1); err != nil {
		return nil, err
	} else if own != nil {
		wires = append(wires, own)
	}
	out := make([]*qc.Close, 0, len(wires))
	for _, w := range wires {
		cl, err := w.ToClose()
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	return out, nil
}
