package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// FanOut is the reference client's design, kept for benchmarks and
// comparisons: it calls SubmitFastPay on EVERY endpoint in parallel (one
// endpoint per validator) and assembles the QC locally from the certificates
// with qc.NewAssembler, returning as soon as a quorum of verified
// certificates is in. Calls still running then are cancelled (the
// validators learn the payment through the mesh anyway).
//
// It dials every endpoint for this one call; a Client's FanOut method reuses
// its connections.
func FanOut(ctx context.Context, endpoints []string, committee *qc.Committee, req *fastpayv1.SubmitFastPayRequest) (*Result, error) {
	c, err := New(Config{Endpoints: endpoints, Committee: committee})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.FanOut(ctx, req, nil)
}

type fanReply struct {
	ep   string
	cert *fastpayv1.ValidatorCertificate
	rej  *fastpayv1.RejectReason
	err  error
}

// FanOut submits req to every endpoint of the client in parallel and
// assembles the QC from the verified certificates (see the package function
// FanOut). onEvent (may be nil) sees each verified certificate and the QC.
// Each call is bounded by Config.Timeout; there are no retries. When a quorum
// can no longer be reached the error wraps the first reject (a *RejectError)
// or the first failure.
func (c *Client) FanOut(ctx context.Context, req *fastpayv1.SubmitFastPayRequest, onEvent func(Event)) (*Result, error) {
	x, err := expect(req)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	eps := c.cfg.Endpoints
	replies := make(chan fanReply, len(eps))
	for _, ep := range eps {
		go func() {
			r := fanReply{ep: ep}
			sc, err := c.sidecar(ep)
			if err != nil {
				r.err = err
			} else {
				cctx, ccancel := context.WithTimeout(ctx, c.cfg.Timeout)
				resp, err := sc.SubmitFastPay(cctx, req)
				ccancel()
				r.err = err
				r.cert, r.rej = resp.GetCert(), resp.GetReject()
				if err == nil && r.cert == nil && r.rej == nil {
					r.err = errors.New("empty response")
				}
			}
			replies <- r
		}()
	}

	committee := c.cfg.Committee
	asm := qc.NewAssembler(committee, x.txHash, x.effectsHash)
	var certs []qc.Certificate
	var firstReject *RejectError
	var firstErr error
	for received := 1; received <= len(eps); received++ {
		var r fanReply
		select {
		case r = <-replies:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		switch {
		case r.err != nil:
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", r.ep, r.err)
			}
		case r.rej != nil:
			if firstReject == nil {
				firstReject = &RejectError{Code: r.rej.GetCode(), Message: r.rej.GetMessage(), Endpoint: r.ep}
			}
		default:
			cert, err := r.cert.ToCertificate()
			if err == nil {
				err = x.checkCert(committee, c.cfg.CommitteeOf, &cert)
			}
			if err != nil {
				c.log.Warn("fan-out: certificate does not verify; ignored", "endpoint", r.ep, "tx", x.txHash, "err", err)
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: certificate does not verify: %w", r.ep, err)
				}
				break
			}
			added, err := asm.AddVerified(cert)
			if err != nil || !added {
				// A second certificate by the same signer (two endpoints of
				// one validator) does not count twice.
				break
			}
			certs = append(certs, cert)
			if onEvent != nil {
				onEvent(Event{Kind: EventCertificate, TxHash: x.txHash, Endpoint: r.ep, Attempt: 1, Elapsed: time.Since(start),
					Cert: &cert, SignerName: c.signerName(cert.Signer), Certs: len(certs)})
			}
			if asm.Ready() {
				q, err := asm.Build()
				if err == nil {
					err = committee.VerifyQC(q)
				}
				if err != nil {
					return nil, fmt.Errorf("%w: assembled QC: %v", ErrUnverifiedQC, err)
				}
				took := time.Since(start)
				if onEvent != nil {
					onEvent(Event{Kind: EventQC, TxHash: x.txHash, Attempt: 1, Elapsed: took, QC: q, Certs: len(certs)})
				}
				return &Result{TxHash: x.txHash, QC: q, Certs: certs, TimeToQC: took, Attempts: 1}, nil
			}
		}
		// Give up as soon as the replies still outstanding cannot make up a
		// quorum.
		if asm.Count()+len(eps)-received < committee.Quorum() {
			break
		}
	}
	cause := error(firstReject)
	if firstReject == nil {
		cause = firstErr
	}
	if cause == nil {
		cause = errors.New("not enough distinct committee members among the endpoints")
	}
	return nil, fmt.Errorf("fan-out %s: %d of %d endpoints certified, quorum %d: %w", x.txHash, asm.Count(), len(eps), committee.Quorum(), cause)
}
