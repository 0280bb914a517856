package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// OpCosts are the CPU costs of the per-payment operations, in microseconds
// per operation, measured single-threaded in the running process.
type OpCosts struct {
	// DecodeRecover is validator.Decode: strict transaction decoding,
	// secp256k1 signer recovery, payment extraction and the stage-1 checks
	// (what a validator runs once per payment).
	DecodeRecover float64
	// Sign is qc.Signer.Sign: one ed25519 certificate signature.
	Sign float64
	// VerifyCert is qc.Committee.VerifyCertificate: membership, effects
	// hash and one ed25519 verification.
	VerifyCert float64
	// VerifyCertStdlib is the same signature check with crypto/ed25519,
	// which decompresses the key on every call (what the mesh did before
	// committees precomputed their keys); reported for comparison only.
	VerifyCertStdlib float64
	// VerifyQC is qc.Committee.VerifyQC by committee size (quorum
	// certificate verifications each).
	VerifyQC map[int]float64
	// CPUTimed reports whether the figures are thread CPU time (Linux);
	// otherwise they are wall time of one goroutine locked to its thread.
	CPUTimed bool
}

// Work counts the operations per payment one validator performs, on
// average over the committee.
type Work struct {
	Decodes      float64 // DecodeRecover
	Signs        float64 // Sign
	CertVerifies float64 // standalone VerifyCert
	QCVerifies   float64 // VerifyQC of a committee of n
}

// MinimalWork is the work a payment needs from each validator: decode and
// recover it once, sign once, verify the certificates of the n−1 others.
func MinimalWork(n int) Work {
	return Work{Decodes: 1, Signs: 1, CertVerifies: float64(n - 1)}
}

// Micros returns the CPU microseconds of w for a committee of n.
func (w Work) Micros(c OpCosts, n int) float64 {
	return w.Decodes*c.DecodeRecover + w.Signs*c.Sign + w.CertVerifies*c.VerifyCert + w.QCVerifies*c.VerifyQC[n]
}

// Limit is the CPU-bound throughput: certified payments per second when
// cores cores do nothing but the per-validator work of n validators,
// perValidatorMicros each per payment: cores × 10⁶ / (n × µs).
func Limit(cores float64, n int, perValidatorMicros float64) float64 {
	if n <= 0 || perValidatorMicros <= 0 {
		return 0
	}
	return cores * 1e6 / (float64(n) * perValidatorMicros)
}

// opMeasure runs op repeatedly on one OS thread until minDur has passed
// or maxOps ran, and returns the CPU (or wall) microseconds per op.
func opMeasure(ctx context.Context, minDur time.Duration, maxOps int, op func(i int) error) (float64, bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// A warm-up round fills caches and lazily built tables.
	for i := range min(maxOps, 16) {
		if err := op(i); err != nil {
			return 0, false, err
		}
	}
	runtime.GC()
	cpu0, cpuOK := threadCPU()
	start := time.Now()
	n := 0
	for n < maxOps && (n == 0 || time.Since(start) < minDur) {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		for range min(64, maxOps-n) {
			if err := op(n); err != nil {
				return 0, false, err
			}
			n++
		}
	}
	wall := time.Since(start)
	cpu1, cpuOK1 := threadCPU()
	if cpuOK && cpuOK1 {
		return float64((cpu1 - cpu0).Nanoseconds()) / 1e3 / float64(n), true, nil
	}
	return float64(wall.Nanoseconds()) / 1e3 / float64(n), false, nil
}

// costFixture is what the cost measurements run on: signed payments and
// committees of every size measured.
type costFixture struct {
	domain     qc.Domain
	reqs       []*fastpayv1.SubmitFastPayRequest
	committees map[int]*qc.Committee
	signers    map[int][]*qc.Signer
}

func newCostFixture(chainID uint64, sizes []int, payments int) (*costFixture, error) {
	f := &costFixture{domain: qc.Domain{ChainID: chainID, Epoch: 1}, committees: map[int]*qc.Committee{}, signers: map[int][]*qc.Signer{}}
	for _, n := range sizes {
		if _, ok := f.committees[n]; ok {
			continue
		}
		keys := validatorKeys(n)
		members := make([]qc.Member, n)
		signers := make([]*qc.Signer, n)
		for i, k := range keys {
			signers[i] = qc.NewSigner(k, validatorName(i), f.domain)
			members[i] = qc.Member{Name: validatorName(i), ID: signers[i].ID()}
		}
		c, err := qc.NewCommittee(f.domain, members)
		if err != nil {
			return nil, err
		}
		f.committees[n], f.signers[n] = c, signers
	}
	senders := senderKeys(16)
	recipient := recipientAddress()
	for i := range payments {
		req, err := newPayment(senders[i%len(senders)], chainID, uint64(i/len(senders)), recipient)
		if err != nil {
			return nil, err
		}
		f.reqs = append(f.reqs, req)
	}
	return f, nil
}

// MeasureCosts measures OpCosts for committees of the given sizes, spending
// about perOp on each operation.
func MeasureCosts(ctx context.Context, chainID uint64, sizes []int, perOp time.Duration) (OpCosts, error) {
	sizes = slices.Clone(sizes)
	sizes = append(sizes, 4)
	f, err := newCostFixture(chainID, sizes, 256)
	if err != nil {
		return OpCosts{}, err
	}
	costs := OpCosts{VerifyQC: map[int]float64{}}
	maxParents := validator.DefaultConfig().MaxParentQCs
	decoded := make([]*validator.Payment, len(f.reqs))
	for i, req := range f.reqs {
		if decoded[i], err = validator.Decode(req, f.domain, maxParents); err != nil {
			return costs, fmt.Errorf("decode: %w", err)
		}
	}
	costs.DecodeRecover, costs.CPUTimed, err = opMeasure(ctx, perOp, 100_000, func(i int) error {
		_, err := validator.Decode(f.reqs[i%len(f.reqs)], f.domain, maxParents)
		return err
	})
	if err != nil {
		return costs, fmt.Errorf("decode: %w", err)
	}
	signers4 := f.signers[4]
	// The verifications run on certificates signed up front: the sign
	// measurement may stop before it has signed every payment.
	certs := make([]qc.Certificate, len(decoded))
	for i, p := range decoded {
		certs[i] = signers4[1].Sign(p.TxHash, p.Effects, uint64(time.Now().UnixMilli()))
	}
	if costs.Sign, _, err = opMeasure(ctx, perOp, 100_000, func(i int) error {
		p := decoded[i%len(decoded)]
		_ = signers4[1].Sign(p.TxHash, p.Effects, uint64(time.Now().UnixMilli()))
		return nil
	}); err != nil {
		return costs, fmt.Errorf("sign: %w", err)
	}
	c4 := f.committees[4]
	if costs.VerifyCert, _, err = opMeasure(ctx, perOp, 100_000, func(i int) error {
		return c4.VerifyCertificate(&certs[i%len(certs)])
	}); err != nil {
		return costs, fmt.Errorf("verify certificate: %w", err)
	}
	if costs.VerifyCertStdlib, _, err = opMeasure(ctx, perOp, 100_000, func(i int) error {
		return certs[i%len(certs)].VerifySignature(f.domain)
	}); err != nil {
		return costs, fmt.Errorf("verify certificate with crypto/ed25519: %w", err)
	}
	for n, c := range f.committees {
		qcs := make([]*qc.QC, 8)
		for j := range qcs {
			p := decoded[j]
			a := qc.NewAssembler(c, p.TxHash, p.Effects.Hash())
			for _, s := range f.signers[n][:c.Quorum()] {
				if _, err := a.AddVerified(s.Sign(p.TxHash, p.Effects, 1)); err != nil {
					return costs, err
				}
			}
			if qcs[j], err = a.Build(); err != nil {
				return costs, err
			}
		}
		if costs.VerifyQC[n], _, err = opMeasure(ctx, perOp, 100_000, func(i int) error {
			return c.VerifyQC(qcs[i%len(qcs)])
		}); err != nil {
			return costs, fmt.Errorf("verify QC n=%d: %w", n, err)
		}
	}
	return costs, nil
}

// costRows reports the measured costs.
func costRows(c OpCosts) []Row {
	note := "thread CPU time"
	if !c.CPUTimed {
		note = "wall time (no per-thread CPU clock here)"
	}
	rows := []Row{
		{Section: SectionCost, Case: "per operation", Metric: "tx decode + recover", Value: c.DecodeRecover, Unit: "µs", Note: note},
		{Section: SectionCost, Case: "per operation", Metric: "certificate sign", Value: c.Sign, Unit: "µs"},
		{Section: SectionCost, Case: "per operation", Metric: "certificate verify", Value: c.VerifyCert, Unit: "µs", Note: "member's precomputed key (curve25519-voi)"},
		{Section: SectionCost, Case: "per operation", Metric: "certificate verify, crypto/ed25519", Value: c.VerifyCertStdlib, Unit: "µs", Note: "for comparison: key decompressed per call"},
	}
	sizes := make([]int, 0, len(c.VerifyQC))
	for n := range c.VerifyQC {
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	for _, n := range sizes {
		rows = append(rows, Row{Section: SectionCost, Case: "per operation", Metric: "QC verify n=" + strconv.Itoa(n),
			Value: c.VerifyQC[n], Unit: "µs", Note: strconv.Itoa(qc.QuorumFor(n)) + " signatures"})
	}
	for _, n := range sizes {
		w := MinimalWork(n)
		rows = append(rows, Row{Section: SectionCost, Case: "minimal work n=" + strconv.Itoa(n), Metric: "per validator per payment",
			Value: w.Micros(c, n), Unit: "µs", Note: fmt.Sprintf("decode + sign + %d certificate verifies", n-1)})
	}
	return rows
}

// validatorKeys returns the deterministic ed25519 keys of a bench
// committee of n.
func validatorKeys(n int) []ed25519.PrivateKey {
	keys := make([]ed25519.PrivateKey, n)
	for i := range keys {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, fmt.Sprintf("allegro-bench-validator-%d", i))
		keys[i] = ed25519.NewKeyFromSeed(seed)
	}
	return keys
}

func validatorName(i int) string { return fmt.Sprintf("v%d", i) }
