package bench

import (
	"context"
	"fmt"
	"runtime/pprof"
	"slices"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/p2p"
)

// idleWindow is how long each latency case measures the idle network's CPU.
const idleWindow = 2 * time.Second

// minLatencyPayments is the fewest payments a latency case measures, time
// budget or not.
const minLatencyPayments = 10

// linkCase names a mesh: loopback or emulated latency per hop.
func linkCase(n int, link time.Duration) string {
	if link <= 0 {
		return fmt.Sprintf("n=%d loopback", n)
	}
	return fmt.Sprintf("n=%d +%s/hop", n, link)
}

func (s *suite) runLatency(ctx context.Context) error {
	links := []time.Duration{0}
	if s.cfg.LinkLatency > 0 {
		links = append(links, s.cfg.LinkLatency)
	}
	// Without a saturation run the CPU profile covers the measured payments
	// of the largest committee on loopback, where the per-message costs show.
	profileN := 0
	if s.cfg.CPUProfile != nil && !s.cfg.has(SectionThroughput) && len(s.cfg.Validators) > 0 {
		profileN = slices.Max(s.cfg.Validators)
	}
	for _, link := range links {
		for _, n := range s.cfg.Validators {
			if err := s.latencyCase(ctx, n, link, link == 0 && n == profileN); err != nil {
				return fmt.Errorf("%s: %w", linkCase(n, link), err)
			}
		}
	}
	return nil
}

// latencyCase measures one payment at a time through validator 0 of an
// n-validator mesh, with the wallet library (client.Pay: SubmitFastPayStream
// until the QC, which it verifies).
func (s *suite) latencyCase(ctx context.Context, n int, link time.Duration, profile bool) error {
	name := linkCase(n, link)
	dir, err := s.sectionDir(fmt.Sprintf("latency-n%d-link%s", n, link))
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s.logf("   %s: starting %d validators", name, n)
	cl, err := StartCluster(startCtx, ClusterConfig{Validators: n, ChainID: s.cfg.ChainID, Senders: 1, LinkLatency: link, Dir: dir, Transport: s.cfg.Transport, CertRouting: s.cfg.CertRouting, Logger: s.cfg.Logger})
	if err != nil {
		return err
	}
	defer s.stopCluster(cl)
	wallet, err := client.New(client.Config{Endpoints: cl.Endpoints()[:1], Committee: cl.Committee, Timeout: 30 * time.Second, Retries: -1})
	if err != nil {
		return err
	}
	defer wallet.Close()

	total := s.cfg.LatencyWarmup + s.cfg.LatencyPayments
	reqs := make([]*fastpayv1.SubmitFastPayRequest, total)
	for i := range reqs {
		if reqs[i], err = newPayment(cl.Senders[0], s.cfg.ChainID, uint64(i), recipientAddress()); err != nil {
			return err
		}
	}
	for _, req := range reqs[:s.cfg.LatencyWarmup] {
		if _, err := wallet.Pay(ctx, req, nil); err != nil {
			return fmt.Errorf("warm-up payment: %w", err)
		}
	}
	// What the idle network costs: heartbeats, score decay, pruning.
	idle0, idleWall0 := processCPU(), time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(idleWindow):
	}
	idleCores := ratio(float64(processCPU()-idle0), float64(time.Since(idleWall0)))

	measured := reqs[s.cfg.LatencyWarmup:]
	lat := make([]time.Duration, 0, len(measured))
	stats0, bytes0, cpu0 := cl.MeshStats(), cl.BytesSent(), processCPU()
	wall0 := time.Now()
	if profile {
		if err := pprof.StartCPUProfile(s.cfg.CPUProfile); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	for i, req := range measured {
		// A case stops early once it has used its time budget (large
		// committees on a loaded machine take seconds per payment).
		if i >= minLatencyPayments && s.cfg.LatencyCaseTime > 0 && time.Since(wall0) > s.cfg.LatencyCaseTime {
			measured = measured[:i]
			break
		}
		res, err := wallet.Pay(ctx, req, nil)
		if err != nil {
			if profile {
				pprof.StopCPUProfile()
			}
			return err
		}
		lat = append(lat, res.TimeToQC)
	}
	wall := time.Since(wall0)
	cpu := processCPU() - cpu0
	if profile {
		pprof.StopCPUProfile()
	}
	bytes := cl.BytesSent() - bytes0
	delta := subStats(cl.MeshStats(), stats0)

	// The mesh part: at the entry sidecar, from its own certificate to
	// the QC.
	var mesh []time.Duration
	board := cl.Nodes[0].Sidecar.Board()
	for _, req := range measured {
		h, err := p2p.TxHash(req)
		if err != nil {
			return err
		}
		if st, ok := board.Status(h); ok && !st.QCAt.IsZero() {
			mesh = append(mesh, st.QCAt.Sub(st.FirstSeen))
		}
	}
	sum, meshSum := Summarize(lat), Summarize(mesh)
	p := float64(len(measured))
	row := func(metric string, v float64, unit, note string) Row {
		return Row{Section: SectionLatency, Case: name, Metric: metric, Value: v, Unit: unit, Note: note}
	}
	count := fmt.Sprintf("%d payments", sum.N)
	if len(measured) < s.cfg.LatencyPayments {
		count += fmt.Sprintf(" (time budget %s reached)", s.cfg.LatencyCaseTime)
	}
	p50, p99 := row("p50", ms(sum.P50), "ms", count), row("p99", ms(sum.P99), "ms", "")
	switch {
	case link != 0:
	case n == 4:
		p50.Target, p99.Target = AtMost(TargetLatencyP50Ms), AtMost(TargetLatencyP99Ms)
	case n == TargetLargeCommitteeValidators:
		p50.Target = AtMost(TargetLargeCommitteeP50Ms)
	}
	// At light load every frame holds one object: a validator receives
	// about the transaction, n − 1 certificates and the QC on the bulletin
	// and on its shard, n + 2 frames, plus whatever duplicates gossip adds.
	copies := row("message copies received per payment per validator", messageCopies(delta)/p/float64(n), "",
		fmt.Sprintf("frames from peers, duplicates included; n + 2 = %d", n+2))
	if link == 0 {
		copies.Target = AtMost(TargetLightLoadCopiesFactor * float64(n+2))
	}
	s.add(p50, row("p95", ms(sum.P95), "ms", ""), p99,
		row("mean", ms(sum.Mean), "ms", ""),
		row("mesh part p50", ms(meshSum.P50), "ms", "entry sidecar: own certificate → QC"),
		row("CPU per payment", float64(cpu.Microseconds())/p, "µs", fmt.Sprintf("whole process, %.2f cores", ratio(float64(cpu), float64(wall)))),
		row("idle network CPU", idleCores, "cores", fmt.Sprintf("no payments, %s window", idleWindow)),
		copies,
		row("object copies received per payment per validator", objectCopies(delta)/p/float64(n), "", "objects of frames accepted from peers, repeats included"),
	)
	if link == 0 {
		per := func(v uint64) float64 { return float64(v) / p / float64(n) }
		b := Row{Section: SectionResources, Case: fmt.Sprintf("n=%d light load, in-process", n), Metric: "bytes sent per payment per validator",
			Value: float64(bytes) / p / float64(n), Unit: "B",
			Note: fmt.Sprintf("libp2p stream payload, all protocols; of it frame data: tx %.0f, bulletin %.0f, QC shards %.0f; pubsub control %.0f",
				per(delta.Tx.SentBytes), per(delta.Bulletin.SentBytes), per(delta.QC.SentBytes), per(delta.ControlBytesSent))}
		if n == TargetLightLoadBytesValidators {
			b.Target = AtMost(TargetLightLoadBytes)
		}
		s.add(b)
	}
	s.logf("   %s: p50 %.2f ms, p99 %.2f ms", name, ms(sum.P50), ms(sum.P99))
	return nil
}
