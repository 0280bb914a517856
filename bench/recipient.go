package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/lightclient"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// sightings records when an observer first held each transaction's QC.
type sightings struct {
	mu   sync.Mutex
	seen map[qc.Hash]time.Time
}

func newSightings() *sightings { return &sightings{seen: map[qc.Hash]time.Time{}} }

func (s *sightings) see(h qc.Hash, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[h]; !ok {
		s.seen[h] = at
	}
}

func (s *sightings) at(h qc.Hash) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.seen[h]
	return t, ok
}

func (s *sightings) hasAll(hs []qc.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hs {
		if _, ok := s.seen[h]; !ok {
			return false
		}
	}
	return true
}

// bulletinPoller is the reference design's recipient: every interval it
// asks one sidecar's bulletin board for the certificates and QCs of its
// address, and holds a payment's QC once a poll returns it (the QC is
// decoded and verified against the committee, as a wallet would).
type bulletinPoller struct {
	base      string // http://host:port
	address   common.Address
	committee *qc.Committee
	interval  time.Duration
	http      *http.Client
	seen      *sightings
	polls     int
	errs      int
	lastErr   error
}

// pollOverlap is how far back each poll asks for certificates before the
// previous poll: a QC is returned with its transaction's certificates,
// which all exist within milliseconds of each other.
const pollOverlap = 10 * time.Second

// run polls until ctx ends. The first poll is at once.
func (p *bulletinPoller) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	last := time.Now()
	for {
		since := uint64(last.Add(-pollOverlap).UnixMilli())
		last = time.Now()
		if err := p.pollOnce(ctx, since); err != nil && ctx.Err() == nil {
			p.errs++
			p.lastErr = err
		}
		p.polls++
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollOnce fetches every page of certificates since since.
func (p *bulletinPoller) pollOnce(ctx context.Context, since uint64) error {
	cursor := ""
	for range 100 { // pages per poll
		q := url.Values{"address": {p.address.Hex()}, "since": {strconv.FormatUint(since, 10)}, "limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page apiserver.BulletinResponse
		if err := p.get(ctx, "/api/v1/bulletin?"+q.Encode(), &page); err != nil {
			return err
		}
		now := time.Now()
		for _, jq := range page.QCs {
			q, err := client.DecodeQCHex(jq.ProtoHex, p.committee)
			if err != nil {
				return fmt.Errorf("QC %s from the bulletin: %w", jq.TxHash, err)
			}
			p.seen.see(q.TxHash, now)
		}
		if page.NextCursor == "" {
			return nil
		}
		cursor = page.NextCursor
	}
	return errors.New("more than 100 pages in one poll")
}

func (p *bulletinPoller) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// startLightClient starts a light client watching addr, bootstrapped to
// every node, and waits until every node has it on the address's QC shard.
func startLightClient(ctx context.Context, cl *Cluster, addr common.Address) (*lightclient.Client, error) {
	cfg := lightclient.DefaultConfig()
	cfg.Committee = cl.Committee
	cfg.QCShards = cl.File.QCShards
	cfg.P2P = localP2P(cl.Config.Transport)
	cfg.Watch = []common.Address{addr}
	for _, n := range cl.Nodes {
		cfg.Bootstrap = append(cfg.Bootstrap, n.Sidecar.Mesh().Host().AddrInfo())
	}
	lc, err := lightclient.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := lc.Start(ctx); err != nil {
		_ = lc.Stop(context.Background())
		return nil, err
	}
	d := cl.Committee.Domain()
	topic := p2p.QCTopic(d.ChainID, d.Epoch, p2p.QCShard(addr, cfg.QCShards))
	err = poll(ctx, 10*time.Millisecond, "every validator sees the light client on its QC shard", func() bool {
		for _, n := range cl.Nodes {
			if !containsPeer(n.Sidecar.Mesh().ListPeers(topic), lc.ID()) {
				return false
			}
		}
		return true
	})
	if err != nil {
		_ = lc.Stop(context.Background())
		return nil, err
	}
	return lc, nil
}

func containsPeer(ps []peer.ID, p peer.ID) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// designRun is one design's payments: when each was submitted and how
// long the sender waited for its verified QC.
type designRun struct {
	name    string
	hashes  []qc.Hash
	submits map[qc.Hash]time.Time
	toQC    []time.Duration
}

// runMesh compares the mesh (submit to one sidecar; the recipient's light
// client gets the QC on its QC shard) with the reference design (the
// sender contacts every validator and assembles the QC; the recipient
// polls a bulletin board every PollInterval). Both observers watch every
// payment of both designs.
func (s *suite) runMesh(ctx context.Context) error {
	const n = 4
	dir, err := s.sectionDir("mesh")
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl, err := StartCluster(startCtx, ClusterConfig{Validators: n, ChainID: s.cfg.ChainID, Senders: 2, Dir: dir, Transport: s.cfg.Transport, CertRouting: s.cfg.CertRouting, Logger: s.cfg.Logger})
	if err != nil {
		return err
	}
	defer s.stopCluster(cl)
	recipient := recipientAddress()
	lc, err := startLightClient(startCtx, cl, recipient)
	if err != nil {
		return fmt.Errorf("light client: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = lc.Stop(stopCtx)
	}()
	topic := newSightings()
	go func() {
		for p := range lc.Payments() {
			topic.see(p.TxHash, p.ReceivedAt)
		}
	}()
	eps := cl.Endpoints()
	poller := &bulletinPoller{base: "http://" + eps[n-1], address: recipient, committee: cl.Committee,
		interval: s.cfg.PollInterval, http: &http.Client{}, seen: newSightings()}
	pollCtx, cancelPolling := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		poller.run(pollCtx)
	}()
	stopPolling := func() {
		cancelPolling()
		<-pollDone
	}
	defer stopPolling()

	viaOne, err := client.New(client.Config{Endpoints: eps[:1], Committee: cl.Committee, Timeout: 30 * time.Second, Retries: -1})
	if err != nil {
		return err
	}
	defer viaOne.Close()
	viaAll, err := client.New(client.Config{Endpoints: eps, Committee: cl.Committee, Timeout: 30 * time.Second, Retries: -1})
	if err != nil {
		return err
	}
	defer viaAll.Close()
	designs := []struct {
		name string
		pay  func(context.Context, *fastpayv1.SubmitFastPayRequest) (*client.Result, error)
	}{
		{"mesh (one sidecar)", func(ctx context.Context, r *fastpayv1.SubmitFastPayRequest) (*client.Result, error) {
			return viaOne.Pay(ctx, r, nil)
		}},
		{"direct fan-out", func(ctx context.Context, r *fastpayv1.SubmitFastPayRequest) (*client.Result, error) {
			return viaAll.FanOut(ctx, r, nil)
		}},
	}
	// Gaps between payments are random, so submissions fall at every phase
	// of the poller's cycle: uniform in [0, interval/5).
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	gapMax := s.cfg.PollInterval / 5
	var runs []*designRun
	for i, d := range designs {
		// One unmeasured payment opens the client's connections.
		req, err := newPayment(cl.Senders[i], s.cfg.ChainID, 0, recipient)
		if err != nil {
			return err
		}
		if _, err := d.pay(ctx, req); err != nil {
			return fmt.Errorf("%s: warm-up payment: %w", d.name, err)
		}
		run := &designRun{name: d.name, submits: map[qc.Hash]time.Time{}}
		runs = append(runs, run)
		s.logf("   %s: %d payments", d.name, s.cfg.RecipientPayments)
		for k := range s.cfg.RecipientPayments {
			req, err := newPayment(cl.Senders[i], s.cfg.ChainID, uint64(k+1), recipient)
			if err != nil {
				return err
			}
			start := time.Now()
			res, err := d.pay(ctx, req)
			if err != nil {
				return fmt.Errorf("%s: %w", d.name, err)
			}
			run.hashes = append(run.hashes, res.TxHash)
			run.submits[res.TxHash] = start
			run.toQC = append(run.toQC, res.TimeToQC)
			if gapMax > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(rng.Int64N(int64(gapMax)))):
				}
			}
		}
	}
	var all []qc.Hash
	for _, r := range runs {
		all = append(all, r.hashes...)
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, 3*s.cfg.PollInterval+20*time.Second)
	defer cancelWait()
	werr := poll(waitCtx, 10*time.Millisecond, "both recipients to hold every QC", func() bool {
		return topic.hasAll(all) && poller.seen.hasAll(all)
	})
	stopPolling() // the poller's counters are read below
	s.meshRows(runs, topic, poller.seen, werr)
	if poller.errs > 0 {
		return fmt.Errorf("%d of %d bulletin polls failed, the last: %w", poller.errs, poller.polls, poller.lastErr)
	}
	return nil
}

// recipientDelays returns, for each payment, the time from its submission
// to the observer holding its QC, and how many it never saw.
func recipientDelays(runs []*designRun, seen *sightings) ([]time.Duration, int) {
	var out []time.Duration
	missing := 0
	for _, r := range runs {
		for _, h := range r.hashes {
			at, ok := seen.at(h)
			if !ok {
				missing++
				continue
			}
			out = append(out, at.Sub(r.submits[h]))
		}
	}
	return out, missing
}

func (s *suite) meshRows(runs []*designRun, topic, polled *sightings, waitErr error) {
	c := "n=4 loopback"
	row := func(metric string, v float64, unit, note string) Row {
		return Row{Section: SectionMesh, Case: c, Metric: metric, Value: v, Unit: unit, Note: note}
	}
	for _, r := range runs {
		sum := Summarize(r.toQC)
		s.add(
			row("sender QC p50, "+r.name, ms(sum.P50), "ms", fmt.Sprintf("%d payments, verified QC", sum.N)),
			row("sender QC p95, "+r.name, ms(sum.P95), "ms", ""),
			row("sender QC p99, "+r.name, ms(sum.P99), "ms", ""),
		)
	}
	viaTopic, missTopic := recipientDelays(runs, topic)
	viaPoll, missPoll := recipientDelays(runs, polled)
	t, p := Summarize(viaTopic), Summarize(viaPoll)
	note := func(miss int) string {
		if miss == 0 {
			return "submit → recipient holds the verified QC, both designs' payments"
		}
		return fmt.Sprintf("%d payments never seen (%v)", miss, waitErr)
	}
	interval := s.cfg.PollInterval.String()
	s.add(
		row("recipient p50 via QC topic", ms(t.P50), "ms", note(missTopic)),
		row("recipient p95 via QC topic", ms(t.P95), "ms", ""),
		row("recipient p50 polling every "+interval, ms(p.P50), "ms", note(missPoll)),
		row("recipient p95 polling every "+interval, ms(p.P95), "ms", ""),
		row("recipient mean: polling / QC topic", ratio(ms(p.Mean), ms(t.Mean)), "×", ""),
		Row{Section: SectionMesh, Case: c, Metric: "recipient p50: polling / QC topic", Value: ratio(ms(p.P50), ms(t.P50)), Unit: "×",
			Target: AtLeast(TargetRecipientRatio), Note: "how much sooner the recipient holds the QC through the mesh"},
	)
	// End to end per design: the mesh's recipient listens on the QC topic,
	// the reference's polls.
	if len(runs) == 2 {
		meshTopic, _ := recipientDelays(runs[:1], topic)
		refPoll, _ := recipientDelays(runs[1:], polled)
		s.add(
			row("recipient p50, mesh design end to end", ms(Summarize(meshTopic).P50), "ms", "one sidecar + QC topic"),
			row("recipient p50, reference design end to end", ms(Summarize(refPoll).P50), "ms", "direct fan-out + polling"),
		)
	}
}
