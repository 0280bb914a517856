package lightclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// verifiedCacheSize bounds the set of QC objects that passed the client's
// validator stage and await delivery. An object evicted before delivery
// (a burst larger than this) is verified again in the handler.
const verifiedCacheSize = 4096

// ErrCommitteeKey is returned by New for a key that belongs to a committee
// member: with it the mesh would run as a validator and join the
// validators-only topics.
var ErrCommitteeKey = errors.New("lightclient: key belongs to a committee member; a light client needs its own key")

// Payment is a verified incoming payment to a watched address.
type Payment struct {
	TxHash qc.Hash
	QCHash qc.Hash
	From   common.Address
	To     common.Address
	// Amount is in the asset's smallest unit (TIP-20 tokens have 6
	// decimals: 1,000,000 units are one dollar).
	Amount   uint64
	Asset    common.Address
	NonceKey qc.NonceKey
	NonceSeq uint64
	// Signers are the committee names of the QC's signers, sorted (names
	// come from the committee, not from the wire).
	Signers []string
	// QC verifies against the client's committee. Shared: read-only.
	QC *qc.QC
	// Peer is the peer that forwarded the QC to this client.
	Peer       peer.ID
	ReceivedAt time.Time
}

// Conflict is a safety violation (SPEC §7.1): two valid QCs for one
// contention key that certify different transactions, or one transaction
// with different effects. It takes more than f Byzantine validators; the
// validators that signed both are in Equivocators.
type Conflict struct {
	Key qc.ContentionKey
	// First is the QC seen first (possibly already reported as a Payment);
	// Second the conflicting one, which is never reported as a Payment.
	First, Second *qc.QC
	Equivocators  []qc.Member
	// Peer forwarded Second.
	Peer       peer.ID
	DetectedAt time.Time
}

// Stats are cumulative counters of a client.
type Stats struct {
	Reported   uint64 // payments put on the Payments channel
	Duplicates uint64 // QCs for a tx hash already seen
	Unwatched  uint64 // valid QCs for addresses not watched (other addresses of joined shards)
	Conflicts  uint64 // safety violations detected
	Rejected   uint64 // QCs that failed the client's own verification
	Dropped    uint64 // payments discarded because Payments was full
	// LateVerified counts QCs that reached the delivery handler without
	// having passed the client's validator stage and were verified there
	// (normally 0: only under bursts beyond the in-flight bound).
	LateVerified uint64
}

// seenQC is what is remembered of a QC by tx hash.
type seenQC struct {
	effects qc.Hash
	q       *qc.QC
}

// Client is a light client: a libp2p peer outside the committee that joins
// the QC shards of the addresses it watches and reports the payments to
// them whose QCs verify against the committee (SPEC §1, §5, §7.4).
//
// Every QC is verified twice: by the mesh's stateless stage (which rejects
// forgeries and penalises the forwarding peer's score) and again by the
// client's own stateful stage, so the client's guarantee does not rest on
// the transport. A QC that reaches the delivery handler without having
// passed the client's stage is verified there before it is trusted.
type Client struct {
	cfg       Config
	committee *qc.Committee
	mesh      *p2p.Mesh
	logger    *slog.Logger
	metrics   *metrics

	verified *lru.Cache[*qc.QC, struct{}]

	mu        sync.Mutex
	watch     map[common.Address]struct{}
	shards    map[int]struct{}
	seen      *lru.Cache[qc.Hash, seenQC]
	keys      *lru.Cache[qc.ContentionKey, *qc.QC]
	conflicts []Conflict

	sendMu   sync.Mutex
	closed   bool
	payments chan Payment

	reported, duplicates, unwatched, nConflicts, rejected, dropped, lateVerified atomic.Uint64
}

// New builds a light client. key is its libp2p identity (ed25519); nil
// generates a random one. A committee member's key is refused
// (ErrCommitteeKey). The host listens at once; nothing is dialed or joined
// until Start.
func New(cfg Config, key crypto.PrivKey) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if key == nil {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("lightclient: generate key: %w", err)
		}
		key = k
	}
	pid, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("lightclient: key: %w", err)
	}
	if id, err := p2p.ValidatorIDFromPeerID(pid); err == nil && cfg.Committee.Contains(id) {
		return nil, ErrCommitteeKey
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	c := &Client{
		cfg:       cfg,
		committee: cfg.Committee,
		logger:    logger.With("component", "lightclient"),
		watch:     make(map[common.Address]struct{}),
		shards:    make(map[int]struct{}),
		payments:  make(chan Payment, cfg.PaymentBuffer),
	}
	if c.verified, err = lru.New[*qc.QC, struct{}](verifiedCacheSize); err != nil {
		return nil, err
	}
	if c.seen, err = lru.New[qc.Hash, seenQC](cfg.RememberQCs); err != nil {
		return nil, err
	}
	if c.keys, err = lru.New[qc.ContentionKey, *qc.QC](cfg.RememberQCs); err != nil {
		return nil, err
	}
	if c.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	mesh, err := p2p.New(cfg.p2pConfig(), key, cfg.Committee, cfg.Bootstrap, reg, logger)
	if err != nil {
		c.metrics.unregister()
		return nil, fmt.Errorf("lightclient: %w", err)
	}
	if mesh.IsValidator() { // unreachable after the check above; never run as one
		_ = mesh.Stop(context.Background())
		c.metrics.unregister()
		return nil, ErrCommitteeKey
	}
	c.mesh = mesh
	mesh.RegisterQCValidator(c.validateQC)
	mesh.OnQC(c.handleQC)
	for _, a := range cfg.Watch {
		if err := c.Watch(a); err != nil {
			_ = mesh.Stop(context.Background())
			c.metrics.unregister()
			return nil, err
		}
	}
	return c, nil
}

// Start joins the QC shards of the watched addresses and dials the
// bootstrap peers. ctx bounds Start only. After a failed Start, call Stop.
func (c *Client) Start(ctx context.Context) error {
	if err := c.mesh.Start(ctx); err != nil {
		return fmt.Errorf("lightclient: %w", err)
	}
	c.logger.Info("light client started", "peer", c.mesh.ID(), "watching", len(c.Watched()), "shards", c.Shards(), "bootstrap", len(c.cfg.Bootstrap))
	return nil
}

// Stop leaves the mesh, closes the host and then closes the Payments
// channel. ctx bounds the wait for handlers still running.
func (c *Client) Stop(ctx context.Context) error {
	err := c.mesh.Stop(ctx)
	c.sendMu.Lock()
	if !c.closed {
		c.closed = true
		close(c.payments)
	}
	c.sendMu.Unlock()
	if err != nil {
		return fmt.Errorf("lightclient: %w", err)
	}
	return nil
}

// Payments returns the channel of verified incoming payments to watched
// addresses, each transaction once. It is bounded (Config.PaymentBuffer)
// and lossy: when full, the oldest unread payment is dropped and counted
// in Stats().Dropped and allegro_lightclient_payments_dropped_total. It is
// closed by Stop.
func (c *Client) Payments() <-chan Payment { return c.payments }

// Conflicts returns the safety violations detected so far (at most
// Config.MaxConflicts, oldest first; each is also logged at Error).
func (c *Client) Conflicts() []Conflict {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.conflicts)
}

// Stats returns the client's cumulative counters.
func (c *Client) Stats() Stats {
	return Stats{
		Reported:   c.reported.Load(),
		Duplicates: c.duplicates.Load(),
		Unwatched:  c.unwatched.Load(),
		Conflicts:  c.nConflicts.Load(),
		Rejected:   c.rejected.Load(),
		Dropped:    c.dropped.Load(),

		LateVerified: c.lateVerified.Load(),
	}
}

// Watch adds addr to the watched set and joins its QC shard if no watched
// address had it yet (before Start the shard is joined by Start). Payments
// whose QCs arrived before the call are not reported retroactively.
func (c *Client) Watch(addr common.Address) error {
	if addr == (common.Address{}) {
		return errors.New("lightclient: watch the zero address")
	}
	shard := p2p.QCShard(addr, c.cfg.QCShards)
	c.mu.Lock()
	_, joined := c.shards[shard]
	c.mu.Unlock()
	if !joined {
		// Idempotent in the mesh; called without c.mu so the mesh lock is
		// never taken under ours.
		if err := c.mesh.JoinQCShards([]int{shard}); err != nil {
			return fmt.Errorf("lightclient: watch %s: %w", addr, err)
		}
	}
	c.mu.Lock()
	c.shards[shard] = struct{}{}
	c.watch[addr] = struct{}{}
	n := len(c.watch)
	c.mu.Unlock()
	c.metrics.watched.Set(float64(n))
	return nil
}

// Unwatch removes addr from the watched set: its payments are no longer
// reported. The mesh cannot leave a topic, so its shard stays joined (QCs
// on it are still verified and relayed, and counted as unwatched).
func (c *Client) Unwatch(addr common.Address) {
	c.mu.Lock()
	delete(c.watch, addr)
	n := len(c.watch)
	c.mu.Unlock()
	c.metrics.watched.Set(float64(n))
}

// Watched returns the watched addresses, sorted.
func (c *Client) Watched() []common.Address {
	c.mu.Lock()
	out := make([]common.Address, 0, len(c.watch))
	for a := range c.watch {
		out = append(out, a)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b common.Address) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// Shards returns the QC shards the client has joined (or will join at
// Start), sorted.
func (c *Client) Shards() []int {
	c.mu.Lock()
	out := make([]int, 0, len(c.shards))
	for s := range c.shards {
		out = append(out, s)
	}
	c.mu.Unlock()
	slices.Sort(out)
	return out
}

// Mesh returns the client's mesh node (for its topics, peers and stats).
func (c *Client) Mesh() *p2p.Mesh { return c.mesh }

// ID returns the client's peer ID.
func (c *Client) ID() peer.ID { return c.mesh.ID() }

// AddrInfo returns the client's peer ID and listen addresses.
func (c *Client) AddrInfo() peer.AddrInfo { return c.mesh.Host().AddrInfo() }

// Score returns the gossipsub score this client gives peer p (from the
// last snapshot). Peers that forward invalid QCs go negative.
func (c *Client) Score(p peer.ID) (float64, bool) { return c.mesh.Score(p) }

// validateQC is the client's stateful validator stage. The mesh has already
// run Committee.VerifyQC; the client verifies again so that its guarantee
// (SPEC §7.4) holds whatever the transport does. A failure is Reject: no
// honest peer forwards an invalid QC, so the forwarder is penalised.
// Valid QCs are accepted (and relayed) whatever their recipient: other
// light clients on the shard may watch it.
func (c *Client) validateQC(_ context.Context, from peer.ID, q *qc.QC) (p2p.Verdict, error) {
	if err := c.verify(q); err != nil {
		c.logger.Debug("QC rejected", "peer", from, "err", err)
		return p2p.Reject, err
	}
	c.verified.Add(q, struct{}{})
	return p2p.Accept, nil
}

// verify checks q against the committee, counting failures.
func (c *Client) verify(q *qc.QC) error {
	var err error
	if q == nil || len(q.Certs) == 0 {
		err = errors.New("lightclient: empty QC")
	} else {
		err = c.committee.VerifyQC(q)
	}
	if err != nil {
		c.rejected.Add(1)
		c.metrics.qcs.WithLabelValues(resultRejected).Inc()
	}
	return err
}

// handleQC receives QCs the mesh accepted, deduplicates them, detects
// conflicts and reports payments to watched addresses.
func (c *Client) handleQC(_ context.Context, d p2p.Delivery[*qc.QC]) {
	q := d.Value
	if q == nil {
		return
	}
	if !c.verified.Remove(q) {
		// Not passed by our validator stage (evicted from the bounded set,
		// or a transport that no longer calls it): verify before trusting.
		c.lateVerified.Add(1)
		if err := c.verify(q); err != nil {
			c.logger.Error("QC delivered without passing the light client's verification; dropped", "peer", d.From, "tx", q.TxHash, "err", err)
			return
		}
	}
	now := time.Now()
	eff := q.Effects()
	key := eff.ContentionKey()

	c.mu.Lock()
	if prev, ok := c.seen.Get(q.TxHash); ok {
		if prev.effects == q.EffectsHash {
			c.mu.Unlock()
			c.duplicates.Add(1)
			c.metrics.qcs.WithLabelValues(resultDuplicate).Inc()
			return
		}
		c.conflictLocked(prev.q, q, d.From, now)
		return
	}
	c.seen.Add(q.TxHash, seenQC{effects: q.EffectsHash, q: q})
	if first, ok := c.keys.Get(key); ok && first.TxHash != q.TxHash {
		c.conflictLocked(first, q, d.From, now)
		return
	}
	c.keys.Add(key, q)
	_, watched := c.watch[common.Address(eff.Recipient)]
	c.mu.Unlock()

	if !watched {
		c.unwatched.Add(1)
		c.metrics.qcs.WithLabelValues(resultUnwatched).Inc()
		return
	}
	c.emit(Payment{
		TxHash:     q.TxHash,
		QCHash:     q.Hash,
		From:       common.Address(eff.Sender),
		To:         common.Address(eff.Recipient),
		Amount:     eff.Amount,
		Asset:      common.Address(eff.Asset),
		NonceKey:   eff.NonceKey,
		NonceSeq:   eff.NonceSeq,
		Signers:    c.signerNames(q),
		QC:         q,
		Peer:       d.From,
		ReceivedAt: now,
	})
}

// conflictLocked records and logs a safety violation; it releases c.mu.
func (c *Client) conflictLocked(first, second *qc.QC, from peer.ID, now time.Time) {
	cf := Conflict{
		Key:          second.Effects().ContentionKey(),
		First:        first,
		Second:       second,
		Equivocators: c.commonSigners(first, second),
		Peer:         from,
		DetectedAt:   now,
	}
	if len(c.conflicts) < c.cfg.MaxConflicts {
		c.conflicts = append(c.conflicts, cf)
	}
	c.mu.Unlock()
	c.nConflicts.Add(1)
	c.metrics.qcs.WithLabelValues(resultConflict).Inc()
	c.metrics.conflict.Inc()
	names := make([]string, len(cf.Equivocators))
	for i, m := range cf.Equivocators {
		names[i] = m.Name
	}
	f, s := first.Effects(), second.Effects()
	c.logger.Error("SAFETY VIOLATION: two valid QCs for one contention key; the second is not reported as a payment",
		"key", cf.Key.String(),
		"first_tx", first.TxHash, "first_qc", first.Hash, "first_recipient", f.Recipient, "first_amount", f.Amount,
		"second_tx", second.TxHash, "second_qc", second.Hash, "second_recipient", s.Recipient, "second_amount", s.Amount,
		"equivocators", names, "peer", from)
}

// signerNames returns the committee names of q's signers, sorted.
func (c *Client) signerNames(q *qc.QC) []string {
	out := make([]string, 0, len(q.Certs))
	for _, cert := range q.Certs {
		if m, ok := c.committee.Member(cert.Signer); ok {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// commonSigners returns the members that signed both QCs, sorted by id.
func (c *Client) commonSigners(a, b *qc.QC) []qc.Member {
	var out []qc.Member
	for _, ca := range a.Certs {
		for _, cb := range b.Certs {
			if ca.Signer == cb.Signer {
				if m, ok := c.committee.Member(ca.Signer); ok {
					out = append(out, m)
				}
				break
			}
		}
	}
	slices.SortFunc(out, func(x, y qc.Member) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	return out
}

// emit puts p on the Payments channel, dropping the oldest unread payment
// when it is full.
func (c *Client) emit(p Payment) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.closed {
		return
	}
	// Counted before the send: a reader that has received a payment must
	// find it in Stats. The send below always succeeds (it makes room).
	c.reported.Add(1)
	c.metrics.qcs.WithLabelValues(resultReported).Inc()
	for {
		select {
		case c.payments <- p:
			return
		default:
		}
		select {
		case old := <-c.payments:
			n := c.dropped.Add(1)
			c.metrics.dropped.Inc()
			if n == 1 || n%1000 == 0 { // the first, then every 1000th
				c.logger.Warn("payments channel full; dropped the oldest unread payment", "tx", old.TxHash, "to", old.To, "dropped_total", n)
			}
		default:
		}
	}
}
