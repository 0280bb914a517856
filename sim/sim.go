// Package sim runs committees of real sidecars (node.New: pebble stores,
// the real mesh and sidecar logic) in one process on a libp2p mock network
// whose every link has the latency of a round-trip matrix between cloud
// regions. Run inside a testing/synctest bubble it measures submit→QC in
// virtual time: CPU work takes no virtual time, so what it reports is what
// the links and the protocol's waits cost, against the physical floor
// computed from the same matrix. CPU per payment is real CPU time, measured
// in the same run. docs/scale.md has the figures.
package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	lpcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bench"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

type peerID = peer.ID

// Config describes one simulated run. Start from DefaultConfig; Validate
// names the first bad field.
type Config struct {
	// Validators is the committee size (required, at least 4).
	Validators int
	// Profile is the network (default WAN()).
	Profile Profile
	// Payments submitted, one every Interval of (virtual) time, entry
	// validator k mod live for payment k so entries cycle through the
	// regions (default 20).
	Payments int
	// Interval between submissions (default 1 s: light load).
	Interval time.Duration
	// Crashed validators never start (they stay in the committee); they
	// are spread over the committee (default 0; at most f).
	Crashed int
	// PartitionAt, when positive, cuts the live validators into two halves
	// (neither holds a quorum) that long after the first submission, and
	// heals them PartitionFor later.
	PartitionAt, PartitionFor time.Duration
	// Degree, when positive, makes the mesh sparse: each validator dials
	// Degree others, as a node does with p2p.dial_in_region (the same rule,
	// committee.Dials), and gossip crosses intermediate validators. Zero
	// links every validator to every other, as a node does with its
	// committee by default, which costs n² links.
	Degree int
	// Remote, when positive, makes the sparse mesh regional: validators
	// carry their region in the committee, and each dials Degree others of
	// its own region and Remote of every other region
	// (p2p.dial_per_other_region), so a message crosses each long link once
	// and spreads inside a region over short ones (default 0: one region).
	Remote int
	// QCTimeout bounds each payment's wait for its QC (default 60 s).
	QCTimeout time.Duration
	// ChainID of the network (default bench.DefaultChainID).
	ChainID uint64
	// Dir holds the data directories (required).
	Dir string
	// Logger receives the nodes' logs (default: discarded).
	Logger *slog.Logger
	// Progress, when set, is told what a long run is doing: the network
	// built, the mesh formed, each payment's QC (default: silent).
	Progress func(format string, args ...any)
	// HeapProfile, when set, is a file that receives a heap profile taken
	// once every payment is done and before the network stops, so it shows
	// what the running validators hold (default: none). With a partition,
	// a second one (the name with "-heal") is taken just before the heal.
	HeapProfile string
}

func (c Config) progress(format string, args ...any) {
	if c.Progress != nil {
		c.Progress(format, args...)
	}
}

// DefaultConfig returns a light-load WAN run; Validators and Dir are still
// to be set.
func DefaultConfig() Config {
	return Config{Profile: WAN(), Payments: 20, Interval: time.Second, QCTimeout: time.Minute, ChainID: bench.DefaultChainID}
}

// Cases are the scale report's cases: wan (all up), lan, crashed (f down,
// WAN) and partition (halves cut for 3 s, WAN).
var Cases = []string{"wan", "lan", "crashed", "partition"}

// DefaultCut is how long the partition case cuts the network: long enough
// for payments sent inside it to wait, for seconds, on both halves.
const DefaultCut = 3 * time.Second

// ApplyCase sets c up for the named case (Cases) from its committee size.
func (c *Config) ApplyCase(name string) error {
	switch name {
	case "wan":
	case "lan":
		c.Profile = LAN()
	case "crashed":
		c.Crashed = (c.Validators - 1) / 3
	case "partition":
		// Half an interval after the first payment, so the second is
		// sent inside the cut: a run of two payments (what memory allows
		// at n = 1,000) still measures one that waits for the heal.
		c.PartitionAt, c.PartitionFor = c.Interval/2, DefaultCut
	default:
		return fmt.Errorf("unknown case %q (have %s)", name, strings.Join(Cases, ", "))
	}
	return nil
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Validators < 4:
		return fmt.Errorf("sim config: Validators must be at least 4, got %d", c.Validators)
	case c.Payments <= 0:
		return fmt.Errorf("sim config: Payments must be positive, got %d", c.Payments)
	case c.Interval <= 0:
		return fmt.Errorf("sim config: Interval must be positive, got %s", c.Interval)
	case c.Crashed < 0 || c.Crashed > (c.Validators-1)/3:
		return fmt.Errorf("sim config: Crashed must be between 0 and f = %d, got %d", (c.Validators-1)/3, c.Crashed)
	case c.PartitionAt < 0 || c.PartitionFor < 0:
		return errors.New("sim config: PartitionAt and PartitionFor must not be negative")
	case c.PartitionAt > 0 && c.PartitionFor == 0:
		return errors.New("sim config: PartitionFor must be positive when PartitionAt is set")
	case c.Degree < 0 || (c.Degree > 0 && c.Degree < 3):
		return fmt.Errorf("sim config: Degree must be 0 (everyone) or at least 3, got %d", c.Degree)
	case c.Remote < 0 || (c.Remote > 0 && c.Degree == 0):
		return fmt.Errorf("sim config: Remote must be 0, or positive with a Degree, got %d (Degree %d)", c.Remote, c.Degree)
	case c.QCTimeout <= 0:
		return fmt.Errorf("sim config: QCTimeout must be positive, got %s", c.QCTimeout)
	case c.ChainID == 0:
		return errors.New("sim config: ChainID must be set")
	case c.Dir == "":
		return errors.New("sim config: Dir must be set")
	}
	return c.Profile.Validate()
}

// Result is what one run measured.
type Result struct {
	Profile    string
	Validators int
	Quorum     int
	Crashed    int
	Partition  bool
	// Cut is how long the partition lasted (zero in results saved before
	// it was recorded, when every cut lasted DefaultCut).
	Cut time.Duration `json:",omitempty"`
	// Degree is Config.Degree (0: everyone linked); Links the mean number
	// of validators each live one is connected to (n − 1 − crashed
	// without Degree).
	Degree   int
	Remote   int
	Links    float64
	Payments int
	// Certified payments reached their QC at the entry within QCTimeout.
	Certified int
	// QC is submit→QC at the entry (virtual time under synctest); Floor the
	// physical floor of the same payments; Ratio the per-payment QC/floor.
	QC, Floor bench.Summary
	RatioP50  float64
	// BytesPerValidator is the stream bytes sent per payment per live
	// validator; CopiesPerValidator the message copies (frames from peers,
	// duplicates included) received per payment per live validator.
	BytesPerValidator, CopiesPerValidator float64
	// CPUPerValidator is real process CPU per payment per live validator
	// while the payments ran (idle timers included).
	CPUPerValidator time.Duration
	// Setup is the real CPU spent building and connecting the network.
	SetupCPU time.Duration
}

// Run builds the network, submits the payments and reports. Inside a
// synctest bubble every duration it reports except CPU is virtual.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cpu0 := processCPU()
	nw, err := start(ctx, cfg)
	if nw != nil {
		defer nw.stop()
	}
	if err != nil {
		return nil, err
	}
	res := &Result{Profile: cfg.Profile.Name, Validators: cfg.Validators, Quorum: nw.quorum, Crashed: cfg.Crashed,
		Partition: cfg.PartitionAt > 0, Cut: cfg.PartitionFor, Payments: cfg.Payments, SetupCPU: processCPU() - cpu0, Degree: cfg.Degree, Remote: cfg.Remote, Links: nw.meanLinks()}

	reqs := make([]*fastpayv1.SubmitFastPayRequest, cfg.Payments)
	hashes := make([]qc.Hash, cfg.Payments)
	for k := range reqs {
		key := senderKey(k)
		if reqs[k], err = client.NewEVMPayment(key, cfg.ChainID, 0, devkit.TokenAddress, recipient, 1, client.WithMaxBlockHeight(1<<40)); err != nil {
			return nil, err
		}
		if hashes[k], err = p2p.TxHash(reqs[k]); err != nil {
			return nil, err
		}
	}

	stats0, bytes0, cpu1 := nw.meshStats(), nw.sent.Load(), processCPU()
	lat := make([]time.Duration, cfg.Payments)
	floors := make([]time.Duration, cfg.Payments)
	ok := make([]bool, cfg.Payments)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	start := time.Now()
	if cfg.PartitionAt > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(cfg.PartitionAt)
			nw.partition()
			time.Sleep(cfg.PartitionFor)
			if cfg.HeapProfile != "" {
				// Everything written across the cut is still in flight:
				// what the heal has to deliver.
				if err := writeHeapProfile(strings.TrimSuffix(cfg.HeapProfile, ".pprof") + "-heal.pprof"); err != nil {
					cfg.progress("%v", err)
				}
			}
			nw.heal()
		}()
	}
	for k := range reqs {
		entry := nw.live[k%len(nw.live)]
		floors[k] = nw.floor(entry)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := nw.pay(ctx, entry, reqs[k], hashes[k], cfg.QCTimeout)
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("payment %d via v%d: %w", k, entry, err)
				}
				errMu.Unlock()
				return
			}
			lat[k], ok[k] = d, true
			cfg.progress("payment %d of %d via v%d: QC after %s (virtual)", k+1, cfg.Payments, entry, d)
		}()
		// Pace the submissions in (virtual) time.
		if wait := time.Until(start.Add(time.Duration(k+1) * cfg.Interval)); wait > 0 && k+1 < len(reqs) {
			time.Sleep(wait)
		}
	}
	wg.Wait()
	cpu := processCPU() - cpu1
	if cfg.HeapProfile != "" {
		if err := writeHeapProfile(cfg.HeapProfile); err != nil {
			return nil, err
		}
	}
	delta := subStats(nw.meshStats(), stats0)
	bytes := nw.sent.Load() - bytes0
	if cfg.PartitionAt > 0 {
		// Writes delayed on the cut links (partition) land by then: a
		// goroutine still waiting on a delivery when the bubble ends
		// would fail the run.
		time.Sleep(time.Until(start.Add(cfg.PartitionAt + 2*cfg.PartitionFor + time.Second)))
	}

	var got, gotFloor []time.Duration
	var ratios []time.Duration // ratio ×1e6, to reuse the percentile helper
	for k := range ok {
		if ok[k] {
			got = append(got, lat[k])
			gotFloor = append(gotFloor, floors[k])
			if floors[k] > 0 {
				ratios = append(ratios, time.Duration(float64(lat[k])/float64(floors[k])*1e6))
			}
		}
	}
	res.Certified = len(got)
	res.QC, res.Floor = bench.Summarize(got), bench.Summarize(gotFloor)
	res.RatioP50 = float64(bench.Summarize(ratios).P50) / 1e6
	live := float64(len(nw.live))
	p := float64(cfg.Payments)
	res.BytesPerValidator = float64(bytes) / p / live
	res.CopiesPerValidator = messageCopies(delta) / p / live
	res.CPUPerValidator = time.Duration(float64(cpu) / p / live)
	cfg.progress("done: %d of %d certified, QC p50 %s p99 %s, floor p50 %s, %.0f bytes and %.1f copies per payment per validator, CPU %s per payment per validator",
		res.Certified, res.Payments, res.QC.P50, res.QC.P99, res.Floor.P50, res.BytesPerValidator, res.CopiesPerValidator, res.CPUPerValidator)
	return res, firstErr
}

// writeHeapProfile writes the live heap (after a collection) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

// recipient receives every simulated payment.
var recipient = crypto.PubkeyToAddress(senderKey(1 << 30).PublicKey)

// senderKey is payment k's sender: one funded account per payment, so no
// sender's pending debits grow during a run.
func senderKey(k int) *ecdsa.PrivateKey {
	key, err := crypto.ToECDSA(crypto.Keccak256([]byte(fmt.Sprintf("allegro-sim-sender-%d", k))))
	if err != nil {
		panic(err) // a Keccak digest is a valid key with overwhelming probability
	}
	return key
}

func validatorKey(i int) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, fmt.Sprintf("allegro-sim-validator-%d", i))
	return ed25519.NewKeyFromSeed(seed)
}

// simNet is a running simulation.
type simNet struct {
	cfg    Config
	mn     mocknet.Mocknet
	nodes  []*node.Node // nil for crashed validators
	peers  []peer.ID
	live   []int
	quorum int
	sent   atomic.Int64

	// neighbours[i] are the live validators linked to validator i.
	neighbours [][]int

	mu  sync.Mutex
	cut map[[2]int]bool

	// index maps a live validator's peer ID to its position.
	index map[peer.ID]int
	// oneWayNow is the current one-way latency of every link, both
	// orders of the pair (links.go delays writes by it).
	latencyMu sync.RWMutex
	oneWayNow map[[2]int]time.Duration
	// done is closed when the simulation stops, ending the goroutines
	// that deliver delayed writes.
	done chan struct{}
	// streams are those the hosts opened or accepted (resetStreams).
	streamsMu sync.Mutex
	streams   []*delayStream
}

// meanLinks is the mean number of neighbours of a live validator.
func (nw *simNet) meanLinks() float64 {
	total := 0
	for _, i := range nw.live {
		total += len(nw.neighbours[i])
	}
	return float64(total) / float64(len(nw.live))
}

// wire chooses which live validators are linked: all pairs, or with Degree
// the links nodes make under p2p.dial_in_region = Degree and
// dial_per_other_region = Remote (committee.Dials; without Remote every
// validator is in one region), so the simulation measures the mesh
// operators configure. A crashed validator's place is taken by the next of
// its dial group, as a node's dialler does once the crashed one has failed
// its dials: the simulation starts from that settled mesh. It fails when
// the live validators' mesh is not connected.
func (nw *simNet) wire(file *committee.File) error {
	n := nw.cfg.Validators
	nw.neighbours = make([][]int, n)
	if nw.cfg.Degree == 0 {
		for a, i := range nw.live {
			for _, j := range nw.live[a+1:] {
				nw.neighbours[i] = append(nw.neighbours[i], j)
				nw.neighbours[j] = append(nw.neighbours[j], i)
			}
		}
		return nil
	}
	up := func(j int) bool { return nw.nodes[j] != nil }
	links, err := file.LinksAmong(committee.Dials{InRegion: nw.cfg.Degree, PerOtherRegion: nw.cfg.Remote}, up)
	if err != nil {
		return fmt.Errorf("the live validators' mesh: %w", err)
	}
	copy(nw.neighbours, links)
	return nil
}

// crashedSet spreads f crashed validators over the committee.
func crashedSet(n, f int) map[int]bool {
	out := map[int]bool{}
	for k := range f {
		out[(k*n)/f+1] = true
	}
	return out
}

func start(ctx context.Context, cfg Config) (*simNet, error) {
	n := cfg.Validators
	file := &committee.File{ChainID: cfg.ChainID, Epoch: 1, QCShards: p2p.DefaultQCShards, TestNetwork: true}
	for i := range n {
		m := committee.Member{Name: fmt.Sprintf("v%d", i), PublicKey: hex.EncodeToString(validatorKey(i).Public().(ed25519.PublicKey))}
		if cfg.Remote > 0 {
			m.Region = cfg.Profile.Regions[cfg.Profile.Region(i)]
		}
		file.Members = append(file.Members, m)
	}
	comm, err := file.Committee()
	if err != nil {
		return nil, err
	}
	chain := tempo.NewMemChain()
	balance := new(big.Int).Exp(big.NewInt(10), big.NewInt(30), nil)
	for k := range cfg.Payments {
		chain.SetBalance(devkit.TokenAddress, crypto.PubkeyToAddress(senderKey(k).PublicKey), balance)
	}
	chain.SetHead(10)

	nw := &simNet{cfg: cfg, mn: mocknet.New(), nodes: make([]*node.Node, n), peers: make([]peer.ID, n), quorum: comm.Quorum(), cut: map[[2]int]bool{},
		index: make(map[peer.ID]int, n), oneWayNow: make(map[[2]int]time.Duration), done: make(chan struct{})}
	crashed := crashedSet(n, cfg.Crashed)
	for i := range n {
		if crashed[i] {
			continue
		}
		nd, err := nw.build(i, file, chain)
		if err != nil {
			return nw, err
		}
		nw.nodes[i] = nd
		nw.peers[i] = nd.Sidecar.Mesh().Host().ID()
		nw.index[nw.peers[i]] = i
		nw.live = append(nw.live, i)
		if built := len(nw.live); built%progressEvery == 0 && built < n-len(crashed) {
			cfg.progress("built %d of %d validators", built, n-len(crashed))
		}
	}
	if err := nw.wire(file); err != nil {
		return nw, err
	}
	cfg.progress("built %d validators (%d live); linking them, %.1f links each on average", n, len(nw.live), nw.meanLinks())
	wall := time.Now()
	for _, i := range nw.live {
		for _, j := range nw.neighbours[i] {
			if i < j {
				if err := nw.link(i, j); err != nil {
					return nw, err
				}
			}
		}
	}
	for k, i := range nw.live {
		// Each validator dials its neighbours only: with a mock network
		// a dial to an unlinked peer fails, and would be retried forever.
		for _, j := range nw.neighbours[i] {
			nw.nodes[i].Sidecar.Mesh().AddBootstrapPeers(nw.nodes[j].Sidecar.Mesh().Host().AddrInfo())
		}
		if err := nw.nodes[i].Start(ctx); err != nil {
			return nw, fmt.Errorf("start v%d: %w", i, err)
		}
		if started := k + 1; started%progressEvery == 0 && started < len(nw.live) {
			cfg.progress("started %d of %d validators", started, len(nw.live))
		}
	}
	d := comm.Domain()
	topics := []string{p2p.TxTopic(d.ChainID, d.Epoch), p2p.BulletinTopic(d.ChainID, d.Epoch)}
	// joined counts the validators that see every neighbour on both topics.
	joined := func() int {
		count := 0
	next:
		for _, i := range nw.live {
			for _, t := range topics {
				if len(nw.nodes[i].Sidecar.Mesh().ListPeers(t)) < len(nw.neighbours[i]) {
					continue next
				}
			}
			count++
		}
		return count
	}
	// Bounded: ctx's deadline, or 10 minutes of (virtual) polling.
	for poll := range 60_000 {
		ready := joined()
		if poll > 0 && poll%50 == 0 && len(nw.live) >= progressEvery {
			cfg.progress("forming the mesh: %d of %d validators see all their neighbours (%s virtual)", ready, len(nw.live), time.Since(wall).Round(time.Millisecond))
		}
		if ready == len(nw.live) {
			if cfg.Degree > 0 {
				// Relayed gossip follows gossipsub's topic meshes, which
				// are grafted at heartbeats: wait two, so the first
				// payments do not meet a mesh still forming.
				time.Sleep(2 * pubsub.DefaultGossipSubParams().HeartbeatInterval)
			}
			cfg.progress("mesh formed after %s (virtual)", time.Since(wall).Round(time.Millisecond))
			return nw, nil
		}
		select {
		case <-ctx.Done():
			return nw, fmt.Errorf("waiting for the mesh to form: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nw, errors.New("the mesh did not form")
}

// progressEvery is how many validators a progress line of a large network's
// setup stands for: building and linking 1,000 validators takes minutes of
// real time.
const progressEvery = 100

// build builds (without starting) validator i: production defaults, an
// in-memory API listener and a counting host on the mock network.
func (nw *simNet) build(i int, file *committee.File, chain tempo.ChainReader) (*node.Node, error) {
	dir := filepath.Join(nw.cfg.Dir, fmt.Sprintf("v%d", i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := node.DefaultConfig()
	cfg.DataDir = dir
	cfg.Sidecar.DoppelgangerWindow = 0 // simulated validators sign from the start
	// The group commit makes the state store's WAL wait on a timer. In
	// virtual time a timer fires only once every goroutine of the bubble
	// is durably blocked, and a goroutine waiting on a lock (the account
	// lock held across a commit) is not: the commit would never finish.
	// Every write syncs at once instead.
	cfg.Validator.GroupCommitWindow = 0
	cfg.P2P = p2p.LocalConfig()
	prod := p2p.DefaultConfig()
	cfg.P2P.PubsubCheckInterval = prod.PubsubCheckInterval
	cfg.P2P.Scoring.InspectPeriod = prod.Scoring.InspectPeriod
	// A sparse mesh needs relaying: without it a validator learns a
	// message from a publisher it is not linked to only by gossip at the
	// next heartbeat.
	cfg.P2P.Relay = nw.cfg.Degree > 0
	cfg.API.ListenAddr = fmt.Sprintf("127.0.0.1:%d", 30000+i)
	cfg.API.Listen = listenIdle
	cfg.P2P.NewHost = func(key lpcrypto.PrivKey, _ []libp2p.Option) (host.Host, error) {
		// Loopback addresses keep the nodes inside LocalConfig's IP
		// colocation whitelist.
		h, err := nw.mn.AddPeer(key, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 20000+i)))
		if err != nil {
			return nil, err
		}
		return latencyHost{Host: h, nw: nw, self: i}, nil
	}
	nd, err := node.New(cfg,
		node.WithIdentity(file.Members[i].Name, validatorKey(i)),
		node.WithCommittee(file),
		node.WithChain(chain),
		node.WithLogger(nw.cfg.Logger.With("node", file.Members[i].Name)),
	)
	if err != nil {
		return nil, fmt.Errorf("build v%d: %w", i, err)
	}
	return nd, nil
}

// link links validators i and j with half their round trip each way.
func (nw *simNet) link(i, j int) error {
	if _, err := nw.mn.LinkPeers(nw.peers[i], nw.peers[j]); err != nil {
		return fmt.Errorf("link v%d-v%d: %w", i, j, err)
	}
	nw.setLatency(i, j, nw.oneWay(i, j))
	return nil
}

// oneWay is half the round trip between validators i and j.
func (nw *simNet) oneWay(i, j int) time.Duration { return nw.cfg.Profile.PairRTT(i, j) / 2 }

// setLatency sets the one-way latency between validators i and j, both
// ways, for the writes made from now on.
func (nw *simNet) setLatency(i, j int, d time.Duration) {
	nw.latencyMu.Lock()
	defer nw.latencyMu.Unlock()
	nw.oneWayNow[[2]int{i, j}] = d
	nw.oneWayNow[[2]int{j, i}] = d
}

// latency is the current one-way latency from validator i to j.
func (nw *simNet) latency(i, j int) time.Duration {
	nw.latencyMu.RLock()
	defer nw.latencyMu.RUnlock()
	return nw.oneWayNow[[2]int{i, j}]
}

// floor is the physical floor of a payment entering at entry: the round
// trip to the q-th nearest live validator.
func (nw *simNet) floor(entry int) time.Duration {
	rtts := make([]time.Duration, 0, len(nw.live))
	for _, j := range nw.live {
		rtts = append(rtts, nw.cfg.Profile.PairRTT(entry, j))
	}
	return kth(rtts, nw.quorum)
}

// pay submits req at entry and waits for the QC there.
func (nw *simNet) pay(ctx context.Context, entry int, req *fastpayv1.SubmitFastPayRequest, h qc.Hash, timeout time.Duration) (time.Duration, error) {
	sc := nw.nodes[entry].Sidecar
	sub := sc.Board().SubscribeTx(h, func(e *bulletin.Event) bool { return e.Kind == bulletin.EventQC })
	defer sub.Close()
	t0 := time.Now()
	if _, err := sc.Submit(ctx, req); err != nil {
		return 0, fmt.Errorf("submit: %w", err)
	}
	if _, ok := sc.Board().QC(h); ok {
		return time.Since(t0), nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-sub.C():
		return time.Since(t0), nil
	case <-timer.C:
		return 0, fmt.Errorf("no QC within %s", timeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// partition cuts the live validators into two halves, by position in the
// live list (so both halves span the regions). Connections between the
// halves stay open, as a TCP or QUIC connection outlives a partition of
// seconds, but nothing written on them arrives before the heal: their
// links take the partition's length as latency, so what is sent during
// the cut lands between the heal and one partition length after it, in
// order, as retransmissions would. (Unlinking instead, the mock network
// forgot connections whose streams outlived them and carried messages
// across the cut.)
func (nw *simNet) partition() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	half := len(nw.live) / 2
	for a, i := range nw.live {
		for b, j := range nw.live {
			if b <= a || (a < half) == (b < half) {
				continue
			}
			if len(nw.mn.LinksBetweenPeers(nw.peers[i], nw.peers[j])) == 0 {
				continue
			}
			nw.cut[[2]int{i, j}] = true
			nw.setLatency(i, j, nw.cfg.PartitionFor)
		}
	}
}

// heal gives the cut links their latency back.
func (nw *simNet) heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for p := range nw.cut {
		nw.setLatency(p[0], p[1], nw.oneWay(p[0], p[1]))
		delete(nw.cut, p)
	}
}

func (nw *simNet) meshStats() p2p.Stats {
	var s p2p.Stats
	for _, i := range nw.live {
		st := nw.nodes[i].Sidecar.Mesh().Stats()
		s = addStats(s, st)
	}
	return s
}

// stopAllAtOnce is the size from which stop stops every node at once.
// One by one, the running validators redial each stopped one and gossip
// through every stop's virtual duration, which with hundreds of validators
// outlasts the run. At once, a node may open a stream to a peer closing at
// that moment, which nothing then owns; its goroutines outlive the bubble,
// which reports them. So small networks, the tests', stop one by one
// (docs/scale.md has the measurements).
const stopAllAtOnce = 32

// stop stops the nodes, closes the connections left, then closes the mock
// network. A node that does not stop in time is left to the bubble's end
// (which then reports the blocked goroutines): closing its host again would
// wait on the lock the first Close holds, and virtual time cannot advance
// past a goroutine waiting on a lock, so the run would hang instead.
func (nw *simNet) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var failed atomic.Bool
	stopNode := func(i int) {
		if err := nw.nodes[i].Stop(ctx); err != nil {
			failed.Store(true)
			nw.cfg.progress("stop v%d: %v", i, err)
		}
	}
	if len(nw.live) >= stopAllAtOnce {
		var wg sync.WaitGroup
		for _, i := range nw.live {
			wg.Go(func() { stopNode(i) })
		}
		wg.Wait()
	} else {
		for _, i := range slices.Backward(nw.live) {
			stopNode(i)
		}
	}
	for _, n := range nw.mn.Nets() {
		for _, c := range n.Conns() {
			_ = c.Close()
		}
	}
	nw.resetStreams()
	close(nw.done)
	if !failed.Load() {
		_ = nw.mn.Close()
	}
}

// subStats returns b − a over the counters the report uses.
func subStats(b, a p2p.Stats) p2p.Stats {
	sub := func(y, x p2p.TopicStats) p2p.TopicStats {
		return p2p.TopicStats{Published: y.Published - x.Published, Accepted: y.Accepted - x.Accepted,
			Ignored: y.Ignored - x.Ignored, Rejected: y.Rejected - x.Rejected, Duplicates: y.Duplicates - x.Duplicates}
	}
	return p2p.Stats{Tx: sub(b.Tx, a.Tx), Bulletin: sub(b.Bulletin, a.Bulletin), QC: sub(b.QC, a.QC), Other: sub(b.Other, a.Other)}
}

// addStats returns a + b over the counters the report uses.
func addStats(a, b p2p.Stats) p2p.Stats {
	add := func(x, y p2p.TopicStats) p2p.TopicStats {
		x.Published += y.Published
		x.Accepted += y.Accepted
		x.Ignored += y.Ignored
		x.Rejected += y.Rejected
		x.Duplicates += y.Duplicates
		return x
	}
	return p2p.Stats{Tx: add(a.Tx, b.Tx), Bulletin: add(a.Bulletin, b.Bulletin), QC: add(a.QC, b.QC), Other: add(a.Other, b.Other)}
}

// messageCopies counts the frames validators received from peers on the
// committee topics, duplicates included (as the bench package counts them).
func messageCopies(d p2p.Stats) float64 {
	var total float64
	for _, t := range []p2p.TopicStats{d.Tx, d.Bulletin, d.QC} {
		total += float64(t.Accepted+t.Ignored+t.Rejected+t.Duplicates) - float64(t.Published)
	}
	return max(total, 0)
}

// kth returns the k-th smallest of d (1-based), 0 if out of range.
func kth(d []time.Duration, k int) time.Duration {
	if k <= 0 || k > len(d) {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[k-1]
}

// processCPU is this process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
