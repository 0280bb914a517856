package bench

import (
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/p2p"
)

// payTimeout bounds one payment of a load generator.
const payTimeout = 60 * time.Second

// WorkFromStats derives the work per payment per validator as the mesh
// did it from the validators' summed mesh counters over a run of payments
// (every payment entered through one validator's API):
//
//   - decodes: the entry's own decode plus every tx-topic validation of a
//     copy from a peer;
//   - signs: one per validator;
//   - certificate verifies: n−1 per validator (each remote certificate is
//     validated once on the bulletin topic);
//   - QC verifies: the remaining bulletin validations (QCs from peers) and
//     every QC-shard validation of a copy from a peer.
//
// Duplicate copies validated concurrently (pubsub marks a message seen when
// its validation starts) count as work too, which is what they cost.
func WorkFromStats(delta p2p.Stats, n, payments int) Work {
	if n <= 0 || payments <= 0 {
		return Work{}
	}
	remote := func(t p2p.TopicStats) float64 {
		v := float64(t.Accepted+t.Ignored+t.Rejected) - float64(t.Published)
		return max(v, 0)
	}
	per := float64(n) * float64(payments)
	certs := float64(n-1) * per // n validators × (n−1) remote certificates × payments
	bulletin := remote(delta.Bulletin)
	certVerifies := min(certs, bulletin)
	return Work{
		Decodes:      (float64(payments) + remote(delta.Tx)) / per,
		Signs:        1,
		CertVerifies: certVerifies / per,
		QCVerifies:   (bulletin - certVerifies + remote(delta.QC)) / per,
	}
}

// subStats returns b − a, counter by counter.
func subStats(b, a p2p.Stats) p2p.Stats {
	sub := func(y, x p2p.TopicStats) p2p.TopicStats {
		return p2p.TopicStats{
			Published: y.Published - x.Published, PublishErrors: y.PublishErrors - x.PublishErrors,
			Accepted: y.Accepted - x.Accepted, Ignored: y.Ignored - x.Ignored, Rejected: y.Rejected - x.Rejected,
			Delivered: y.Delivered - x.Delivered, Duplicates: y.Duplicates - x.Duplicates, Dropped: y.Dropped - x.Dropped,
		}
	}
	return p2p.Stats{Tx: sub(b.Tx, a.Tx), Bulletin: sub(b.Bulletin, a.Bulletin), QC: sub(b.QC, a.QC), Other: sub(b.Other, a.Other)}
}

// messageCopies is the number of message copies validators received
// (accepted or dropped as duplicates, own publishes excluded).
func messageCopies(d p2p.Stats) float64 {
	var total float64
	for _, t := range []p2p.TopicStats{d.Tx, d.Bulletin, d.QC} {
		total += float64(t.Accepted+t.Ignored+t.Rejected+t.Duplicates) - float64(t.Published)
	}
	return total
}

func (s *suite) runThroughput(ctx context.Context) error {
	sat, err := s.runSaturation(ctx)
	if err != nil {
		return err
	}
	// The mesh is stopped by now: the floor has the machine to itself.
	return s.runFloor(ctx, sat)
}

// saturation is what the floor's rows compare with.
type saturation struct {
	n             int
	cpuPerPayment float64 // µs, whole process
	minimalMicros float64 // minimal work per validator, µs
}

func (s *suite) runSaturation(ctx context.Context) (saturation, error) {
	n := s.cfg.ThroughputValidators
	costs, err := s.opCosts(ctx)
	if err != nil {
		return saturation{}, fmt.Errorf("per-operation costs: %w", err)
	}
	dir, err := s.sectionDir("throughput")
	if err != nil {
		return saturation{}, err
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	streams := s.cfg.Streams
	cl, err := StartCluster(startCtx, ClusterConfig{Validators: n, ChainID: s.cfg.ChainID, Senders: streams, Dir: dir, Logger: s.cfg.Logger})
	if err != nil {
		return saturation{}, err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = cl.Stop(stopCtx)
	}()
	clients, closeClients, err := dialAll(cl.Endpoints())
	if err != nil {
		return saturation{}, err
	}
	defer closeClients()

	// Payments are signed before the clock starts: stream g pays from
	// sender g with sequential nonces. Streams claim payments from a shared
	// count, so one may use more than its even share: each gets a quarter
	// more, and signs on the fly beyond that.
	perStream := make([][]*fastpayv1.SubmitFastPayRequest, streams)
	total := s.cfg.Warmup + s.cfg.Payments
	share := (total+streams-1)/streams + total/streams/4 + 4
	for g := range perStream {
		for k := range share {
			req, err := newPayment(cl.Senders[g], s.cfg.ChainID, uint64(k), recipientAddress())
			if err != nil {
				return saturation{}, err
			}
			perStream[g] = append(perStream[g], req)
		}
	}
	used := make([]int, streams)
	next := func(g int) (*fastpayv1.SubmitFastPayRequest, error) {
		k := used[g]
		used[g]++
		if k < len(perStream[g]) {
			return perStream[g][k], nil
		}
		return newPayment(cl.Senders[g], s.cfg.ChainID, uint64(k), recipientAddress())
	}
	var done atomic.Int64
	if s.cfg.Warmup > 0 {
		s.logf("   warm-up: %d payments", s.cfg.Warmup)
		if _, err := closedLoop(ctx, streams, s.cfg.Warmup, clients, payTimeout, next, &done); err != nil {
			return saturation{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	// The measured run continues each stream's nonces.
	done.Store(0)
	stats0, bytes0 := cl.MeshStats(), cl.BytesSent()
	if s.cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(s.cfg.CPUProfile); err != nil {
			return saturation{}, fmt.Errorf("cpu profile: %w", err)
		}
	}
	cpu0, wall0 := processCPU(), time.Now()
	stopProgress := progress(s.cfg.Progress, s.cfg.ProgressInterval, "throughput", s.cfg.Payments, &done, nil)
	lat, err := closedLoop(ctx, streams, s.cfg.Payments, clients, payTimeout, next, &done)
	stopProgress()
	wall, cpu := time.Since(wall0), processCPU()-cpu0
	if s.cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return saturation{}, err
	}
	delta := subStats(cl.MeshStats(), stats0)
	bytes := cl.BytesSent() - bytes0

	p := float64(s.cfg.Payments)
	achieved := p / wall.Seconds()
	cores := ratio(float64(cpu), float64(wall))
	gomax := float64(runtime.GOMAXPROCS(0))
	asRun := WorkFromStats(delta, n, s.cfg.Payments)
	minimal := MinimalWork(n)
	asRunMicros, minimalMicros := asRun.Micros(costs, n), minimal.Micros(costs, n)
	limit, limitMinimal := Limit(gomax, n, asRunMicros), Limit(gomax, n, minimalMicros)
	sum := Summarize(lat)
	c := fmt.Sprintf("n=%d loopback, %d senders", n, streams)
	row := func(metric string, v float64, unit, note string) Row {
		return Row{Section: SectionThroughput, Case: c, Metric: metric, Value: v, Unit: unit, Note: note}
	}
	s.add(
		row("certified payments/s", achieved, "/s", fmt.Sprintf("%d payments in %s", s.cfg.Payments, wall.Round(time.Millisecond))),
		row("latency p50 under load", ms(sum.P50), "ms", "submit → QC event (not verified by the load generator)"),
		row("latency p99 under load", ms(sum.P99), "ms", ""),
		row("cores used", cores, "cores", fmt.Sprintf("process CPU / wall time; GOMAXPROCS %d", int(gomax))),
		row("CPU per payment", float64(cpu.Microseconds())/p, "µs", "whole process: validators and load generator"),
		row("mesh message copies per payment", messageCopies(delta)/p, "", "received by all validators, duplicates included"),
		row("QC publishes per payment", float64(delta.QC.Published)/p, "", ""),
		row("work: tx decodes per validator", asRun.Decodes, "/payment", "from mesh counters"),
		row("work: certificate verifies per validator", asRun.CertVerifies, "/payment", ""),
		row("work: QC verifies per validator", asRun.QCVerifies, "/payment", fmt.Sprintf("each %d signatures", cl.Committee.Quorum())),
		row("CPU-bound work per validator (as done)", asRunMicros, "µs", workNote(asRun, n)),
		row("CPU-bound work per validator (minimal)", minimalMicros, "µs", workNote(minimal, n)),
		row("CPU-bound limit (as done)", limit, "/s", fmt.Sprintf("%d cores × 10⁶ / (%d × %.0f µs)", int(gomax), n, asRunMicros)),
		row("CPU-bound limit (minimal work)", limitMinimal, "/s", fmt.Sprintf("%d cores × 10⁶ / (%d × %.0f µs)", int(gomax), n, minimalMicros)),
		row("achieved / limit (as done)", ratio(achieved, limit), "", "counts every QC validation at full price; the mesh's signature memo makes most of them hashing only"),
		// The target's definition: decode and recover once, sign once, verify
		// the n−1 certificates of the others, per validator.
		Row{Section: SectionThroughput, Case: c, Metric: "achieved / limit (minimal work)", Value: ratio(achieved, limitMinimal), Unit: "",
			Target: AtLeast(TargetSaturation), Note: "limit from the work a payment needs of each validator"},
		row("achieved / limit at cores used", ratio(achieved, Limit(cores, n, minimalMicros)), "", "minimal work, with the cores the process got instead of GOMAXPROCS"),
	)
	if costs.VerifyCertStdlib > 0 {
		// The limit falls when verification gets cheaper; this row keeps
		// runs before precomputed keys comparable.
		std := costs
		std.VerifyCert = costs.VerifyCertStdlib
		stdMicros := minimal.Micros(std, n)
		s.add(row("achieved / limit (minimal work, crypto/ed25519 verify)", ratio(achieved, Limit(gomax, n, stdMicros)), "",
			fmt.Sprintf("limit %.0f/s if each certificate verify cost %.1f µs as with crypto/ed25519", Limit(gomax, n, stdMicros), costs.VerifyCertStdlib)))
	}
	s.add(Row{Section: SectionResources, Case: fmt.Sprintf("n=%d saturation, in-process", n), Metric: "bytes sent per payment per validator",
		Value: float64(bytes) / p / float64(n), Unit: "B", Note: protocolShares(cl)})
	s.logf("   %.0f payments/s at %.2f cores; limit %.0f/s (as done), %.0f/s (minimal)", achieved, cores, limit, limitMinimal)
	return saturation{n: n, cpuPerPayment: float64(cpu.Microseconds()) / p, minimalMicros: minimalMicros}, nil
}

func workNote(w Work, n int) string {
	return fmt.Sprintf("%.2f decode + %.0f sign + %.2f cert verify + %.2f QC verify (n=%d)", w.Decodes, w.Signs, w.CertVerifies, w.QCVerifies, n)
}

// protocolShares describes which protocols the bytes went to.
func protocolShares(cl *Cluster) string {
	by := map[string]int64{}
	var total int64
	for _, b := range cl.Bytes {
		if b == nil {
			continue
		}
		for p, v := range b.SentByProtocol() {
			by[string(p)] += v
			total += v
		}
	}
	if total == 0 {
		return ""
	}
	type share struct {
		p string
		v int64
	}
	var shares []share
	for p, v := range by {
		shares = append(shares, share{p, v})
	}
	sort.Slice(shares, func(i, j int) bool { return shares[i].v > shares[j].v })
	var parts []string
	for _, sh := range shares[:min(3, len(shares))] {
		pct := 100 * float64(sh.v) / float64(total)
		if pct < 1 {
			break
		}
		name := sh.p
		if name == "" {
			name = "(protocol negotiation)"
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", name, pct))
	}
	return strings.Join(parts, ", ")
}
