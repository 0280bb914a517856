package bench

import (
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/allegro-mesh/allegro/p2p"
)

// payTimeout bounds one payment of a load generator.
const payTimeout = 60 * time.Second

// WorkFromStats derives the work per payment per validator as the mesh did
// it, from the validators' summed mesh counters over a run of payments
// (every payment entered through one validator's API). It counts objects,
// not frames:
//
//   - decodes: the entry's own decode, plus every transaction of the tx
//     frames accepted from peers (the stateful check decodes each
//     transaction of a frame it accepts, repeats included);
//   - signs: one per validator;
//   - certificate verifies: the bulletin objects of frames accepted from
//     peers, at most n−1 per validator (each other validator's
//     certificate);
//   - QC verifies: the rest of those bulletin objects (QCs), and every QC
//     of the shard frames accepted from peers.
//
// Every object of an accepted frame is verified in the frame's batch,
// repeats included, so repeats count. A frame whose objects were all seen
// before is ignored before any verification and costs nothing here; so is
// one whose objects the stateful check ignored, though it was decoded and
// verified (the counters see objects of accepted frames only).
func WorkFromStats(delta p2p.Stats, n, payments int) Work {
	if n <= 0 || payments <= 0 {
		return Work{}
	}
	per := float64(n) * float64(payments)
	certs := float64(n-1) * per // n validators × (n−1) remote certificates × payments
	bulletin := float64(delta.Bulletin.ObjectsReceived)
	certVerifies := min(certs, bulletin)
	return Work{
		Decodes:      (float64(payments) + float64(delta.Tx.ObjectsReceived)) / per,
		Signs:        1,
		CertVerifies: certVerifies / per,
		QCVerifies:   (bulletin - certVerifies + float64(delta.QC.ObjectsReceived)) / per,
	}
}

// subStats returns b − a, counter by counter.
func subStats(b, a p2p.Stats) p2p.Stats {
	sub := func(y, x p2p.TopicStats) p2p.TopicStats {
		return p2p.TopicStats{
			Published: y.Published - x.Published, ObjectsPublished: y.ObjectsPublished - x.ObjectsPublished,
			PublishErrors: y.PublishErrors - x.PublishErrors,
			Accepted:      y.Accepted - x.Accepted, Ignored: y.Ignored - x.Ignored, Rejected: y.Rejected - x.Rejected,
			ObjectsReceived: y.ObjectsReceived - x.ObjectsReceived, ObjectsNew: y.ObjectsNew - x.ObjectsNew,
			Delivered: y.Delivered - x.Delivered, Duplicates: y.Duplicates - x.Duplicates,
			Outsider: y.Outsider - x.Outsider, Dropped: y.Dropped - x.Dropped,
			Sent: y.Sent - x.Sent, SentBytes: y.SentBytes - x.SentBytes,
		}
	}
	return p2p.Stats{Tx: sub(b.Tx, a.Tx), Bulletin: sub(b.Bulletin, a.Bulletin), QC: sub(b.QC, a.QC), Other: sub(b.Other, a.Other),
		ControlBytesSent: b.ControlBytesSent - a.ControlBytesSent}
}

// committeeTopics returns the counters of the committee's topics: tx,
// bulletin and the QC shards.
func committeeTopics(d p2p.Stats) []p2p.TopicStats { return []p2p.TopicStats{d.Tx, d.Bulletin, d.QC} }

// messageCopies is the number of gossip messages (frames) the validators
// received from peers: every frame validated (accepted, ignored or
// rejected) or dropped by pubsub as already seen, their own publishes
// excluded.
func messageCopies(d p2p.Stats) float64 {
	var total float64
	for _, t := range committeeTopics(d) {
		total += float64(t.Accepted+t.Ignored+t.Rejected+t.Duplicates) - float64(t.Published)
	}
	return max(total, 0)
}

// objectCopies is the number of objects the validators received in frames
// they accepted from peers, repeats included. Objects of ignored and
// duplicate frames are not counted.
func objectCopies(d p2p.Stats) float64 {
	var total float64
	for _, t := range committeeTopics(d) {
		total += float64(t.ObjectsReceived)
	}
	return total
}

// objectsPerFrame is the mean number of objects in the frames the
// validators published on a topic (NaN without frames).
func objectsPerFrame(t p2p.TopicStats) float64 {
	return ratio(float64(t.ObjectsPublished), float64(t.Published))
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
	n int
	// cpuPerPayment is the suite's process CPU per payment, µs: the
	// validators', and the load generator's unless ownProcessLoad.
	cpuPerPayment  float64
	ownProcessLoad bool
	minimalMicros  float64 // minimal work per validator, µs
}

// targetSaturationSizes are the committee sizes the saturation CPU target
// is defined for.
var targetSaturationSizes = []int{4, 10, 31}

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
	cl, err := StartCluster(startCtx, ClusterConfig{Validators: n, ChainID: s.cfg.ChainID, Senders: streams, Dir: dir, Transport: s.cfg.Transport, CertRouting: s.cfg.CertRouting, Logger: s.cfg.Logger})
	if err != nil {
		return saturation{}, err
	}
	defer s.stopCluster(cl)
	// The generator's senders are the cluster's: senderKeys(streams).
	load, err := s.startLoad(ctx, cl.Endpoints(), dir)
	if err != nil {
		return saturation{}, err
	}
	defer load.close()

	stats0, bytes0 := cl.MeshStats(), cl.BytesSent()
	if s.cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(s.cfg.CPUProfile); err != nil {
			return saturation{}, fmt.Errorf("cpu profile: %w", err)
		}
	}
	cpu0, wall0 := processCPU(), time.Now()
	lat, loadCPU, err := load.run(ctx)
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
	cpuPerPayment := float64(cpu.Microseconds()) / p
	c := fmt.Sprintf("n=%d loopback, %d senders", n, streams)
	row := func(metric string, v float64, unit, note string) Row {
		return Row{Section: SectionThroughput, Case: c, Metric: metric, Value: v, Unit: unit, Note: note}
	}
	whose := "this process: validators and load generator"
	if load.ownProcess() {
		whose = "this process: the validators (the load generator runs in its own)"
	}
	s.add(
		row("certified payments/s", achieved, "/s", fmt.Sprintf("%d payments in %s", s.cfg.Payments, wall.Round(time.Millisecond))),
		row("latency p50 under load", ms(sum.P50), "ms", "submit → QC event (not verified by the load generator)"),
		row("latency p99 under load", ms(sum.P99), "ms", ""),
		row("cores used", cores, "cores", fmt.Sprintf("%s; CPU / wall time; GOMAXPROCS %d", whose, int(gomax))),
		row("CPU per payment", cpuPerPayment, "µs", whose),
	)
	if load.ownProcess() {
		s.add(row("CPU per payment, load generator", float64(loadCPU.Microseconds())/p, "µs",
			fmt.Sprintf("its own process, %.2f cores; not in the figures above", ratio(float64(loadCPU), float64(wall)))))
	}
	// The target: what the validators spend per payment, each, against
	// the minimal work a payment needs of each.
	perValidator := Row{Section: SectionThroughput, Case: c, Metric: "validators' CPU per payment per validator", Value: cpuPerPayment / float64(n), Unit: "µs",
		Note: fmt.Sprintf("%.1f× the minimal work of %.0f µs", ratio(cpuPerPayment/float64(n), minimalMicros), minimalMicros)}
	if slices.Contains(targetSaturationSizes, n) {
		perValidator.Target = AtMost(TargetSaturationWorkFactor * minimalMicros)
		if !load.ownProcess() {
			perValidator.Status = StatusNA
			perValidator.Note += "; includes the load generator (run it in its own process: Config.StartSidecar)"
		}
	}
	s.add(perValidator,
		row("message copies received per payment per validator", messageCopies(delta)/p/float64(n), "", "frames from peers, duplicates included"),
		row("object copies received per payment per validator", objectCopies(delta)/p/float64(n), "", "objects of frames accepted from peers, repeats included"),
		row("objects per frame: tx", objectsPerFrame(delta.Tx), "", fmt.Sprintf("%d frames published", delta.Tx.Published)),
		row("objects per frame: bulletin", objectsPerFrame(delta.Bulletin), "", fmt.Sprintf("%d frames published", delta.Bulletin.Published)),
		row("objects per frame: QC shards", objectsPerFrame(delta.QC), "", fmt.Sprintf("%d frames published", delta.QC.Published)),
		row("QC objects published per payment", float64(delta.QC.ObjectsPublished)/p, "", "QCs put on the shards: 1 when one validator publishes each"),
		row("work: tx decodes per validator", asRun.Decodes, "/payment", "from mesh object counters"),
		row("work: certificate verifies per validator", asRun.CertVerifies, "/payment", ""),
		row("work: QC verifies per validator", asRun.QCVerifies, "/payment", fmt.Sprintf("each %d signatures", cl.Committee.Quorum())),
		row("CPU-bound work per validator (as done)", asRunMicros, "µs", workNote(asRun, n)),
		row("CPU-bound work per validator (minimal)", minimalMicros, "µs", workNote(minimal, n)),
		row("CPU-bound limit (as done)", limit, "/s", fmt.Sprintf("%d cores × 10⁶ / (%d × %.0f µs)", int(gomax), n, asRunMicros)),
		row("CPU-bound limit (minimal work)", limitMinimal, "/s", fmt.Sprintf("%d cores × 10⁶ / (%d × %.0f µs)", int(gomax), n, minimalMicros)),
		row("achieved / limit (as done)", ratio(achieved, limit), "", "counts every QC validation at full price; the mesh's signature memo makes most of them hashing only"),
	)
	// The target's definition: decode and recover once, sign once, verify
	// the n−1 certificates of the others, per validator; on 4 validators.
	saturationRow := Row{Section: SectionThroughput, Case: c, Metric: "achieved / limit (minimal work)", Value: ratio(achieved, limitMinimal), Unit: "",
		Target: AtLeast(TargetSaturation), Note: "limit from the work a payment needs of each validator"}
	if n != TargetSaturationValidators {
		saturationRow.Status = StatusNA
		saturationRow.Note += fmt.Sprintf("; the target is for n=%d", TargetSaturationValidators)
	}
	s.add(saturationRow,
		row("achieved / limit at cores used", ratio(achieved, Limit(cores, n, minimalMicros)), "", "minimal work, with the cores this process got instead of GOMAXPROCS"))
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
	s.logf("   %.0f payments/s at %.2f cores; limit %.0f/s (as done), %.0f/s (minimal); %.0f µs per payment per validator", achieved, cores, limit, limitMinimal, cpuPerPayment/float64(n))
	return saturation{n: n, cpuPerPayment: cpuPerPayment, ownProcessLoad: load.ownProcess(), minimalMicros: minimalMicros}, nil
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
