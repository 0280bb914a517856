package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/sidecar"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/validator"
)

// backend adapts a sidecar to the client API.
type backend struct {
	s         *sidecar.Sidecar
	chain     tempo.ChainReader
	registry  *prometheus.Registry
	committee *committee.File
	store     *storeState
	resolver  *committee.Resolver // nil: one epoch
	// earlier gives the boards of earlier epochs (nil: none kept).
	earlier func() []apiserver.EpochBoard
	// shared holds the metrics of components that outlive the node (the
	// Runner's settler), served with the node's.
	shared prometheus.Gatherer
}

var _ apiserver.Backend = (*backend)(nil)

func newBackend(s *sidecar.Sidecar, ch tempo.ChainReader, reg *prometheus.Registry, f *committee.File, st *storeState) *backend {
	return &backend{s: s, chain: ch, registry: reg, committee: f, store: st}
}

// storeState is what readiness knows of the durable state store: whether it
// has been closed, and its directory.
type storeState struct {
	dir    string
	closed atomic.Bool
}

// StoreHealth implements apiserver.Backend: the store is usable while it is
// open and its directory is still there (a volume unmounted or removed
// under a running sidecar fails every later write).
func (b *backend) StoreHealth() error {
	if b.store.closed.Load() {
		return errors.New("state store is closed")
	}
	if _, err := os.Stat(b.store.dir); err != nil {
		return fmt.Errorf("state store directory: %w", err)
	}
	return nil
}

// SigningHealth implements apiserver.Backend.
func (b *backend) SigningHealth() error { return b.s.SigningHealth() }

func (b *backend) Submit(ctx context.Context, req *fastpayv1.SubmitFastPayRequest) (qc.Certificate, error) {
	return b.s.Submit(ctx, req)
}

func (b *backend) Board() *bulletin.Board { return b.s.Board() }

// CheckConflict implements apiserver.ConflictChecker.
func (b *backend) CheckConflict(ctx context.Context, raw []byte) (*validator.ConflictReport, error) {
	return b.s.Validator().CheckConflict(ctx, raw)
}

// headReader is implemented by chain clients that follow heads.
type headReader interface {
	Head() (tempo.Head, bool)
}

func (b *backend) ChainHead(ctx context.Context) (tempo.Head, error) {
	if hr, ok := b.chain.(headReader); ok {
		if h, ok := hr.Head(); ok {
			return h, nil
		}
		if err := b.outage(); err != nil {
			return tempo.Head{}, err
		}
		return tempo.Head{}, fmt.Errorf("%w: no head received yet", tempo.ErrChainUnavailable)
	}
	view, err := b.chain.Latest(ctx)
	if err != nil {
		return tempo.Head{}, err
	}
	return view.Head(), nil
}

// followMode is implemented by chain clients that report their connection
// (chain.Client: ModeConnecting while it is not connected).
type followMode interface {
	Mode() string
}

// ChainHealth implements apiserver.Backend: a chain client following heads
// is healthy unless it is (re)connecting; other chain readers (in memory)
// always are.
func (b *backend) ChainHealth() error {
	if fm, ok := b.chain.(followMode); ok && fm.Mode() == chain.ModeConnecting {
		if err := b.outage(); err != nil {
			return err
		}
		return fmt.Errorf("%w: not connected to the chain node (reconnecting)", tempo.ErrChainUnavailable)
	}
	return nil
}

// outage is implemented by chain clients that track failed attempts to
// reach their node (chain.Client).
type outageReporter interface {
	CurrentOutage() (chain.Outage, bool)
}

// outage describes the chain node's unreachability with its URL, for
// /readyz and /healthz; nil when the node is not known to be away.
func (b *backend) outage() error {
	r, ok := b.chain.(outageReporter)
	if !ok {
		return nil
	}
	o, ok := r.CurrentOutage()
	if !ok {
		return nil
	}
	return fmt.Errorf("%w: chain node %s unreachable for %s (%d attempts), last error: %v", tempo.ErrChainUnavailable,
		o.URL, time.Since(o.Since).Round(time.Second), o.Attempts, o.LastErr)
}

func (b *backend) Info() apiserver.NodeInfo {
	m := b.s.Mesh()
	signer := b.s.Validator().Signer()
	info := apiserver.NodeInfo{
		Name: signer.Name(), ID: signer.ID(), PeerID: m.ID().String(),
		ChainID: signer.Domain().ChainID, Epoch: signer.Domain().Epoch,
	}
	for _, a := range m.Host().Addrs() {
		info.ListenAddrs = append(info.ListenAddrs, a.String()+"/p2p/"+m.ID().String())
	}
	for _, p := range m.Peers() {
		if p.Connected {
			info.GossipPeers = append(info.GossipPeers, p.ID.String())
		}
	}
	return info
}

func (b *backend) Committee() apiserver.CommitteeInfo {
	c := b.s.Validator().Committee()
	self := b.s.Validator().Signer().ID()
	info := apiserver.CommitteeInfo{
		ChainID: c.Domain().ChainID, Epoch: c.Domain().Epoch, N: c.N(), F: c.F(), Quorum: c.Quorum(),
		Hash: c.Hash(), QCShards: b.committee.QCShards,
	}
	// Addresses by key: a committee derived from the chain names its
	// members after their seats, not as the committee file does.
	addrs := map[qc.ValidatorID][]string{}
	for _, m := range b.committee.Members {
		if raw, err := hex.DecodeString(strings.TrimPrefix(m.PublicKey, "0x")); err == nil {
			if id, err := qc.ValidatorIDFromBytes(raw); err == nil {
				addrs[id] = m.Addrs
			}
		}
	}
	m := b.s.Mesh()
	if c.Seated() {
		info.Seats = c.Seats()
	}
	if b.resolver != nil {
		info.EpochLength = b.committee.EpochLength
	}
	for _, member := range c.Members() {
		mi := apiserver.MemberInfo{Name: member.Name, ID: member.ID, Seat: member.SeatOrID(), Addrs: addrs[member.ID], Self: member.ID == self}
		if pid, err := p2p.PeerIDFromValidatorID(member.ID); err == nil {
			mi.PeerID = pid.String()
			mi.Connected = mi.Self || m.Host().Connected(pid)
			if score, ok := m.Score(pid); ok {
				mi.Score = score
			}
		}
		info.Members = append(info.Members, mi)
	}
	return info
}

func (b *backend) Gatherer() prometheus.Gatherer {
	if b.shared != nil {
		return prometheus.Gatherers{b.registry, b.shared}
	}
	return b.registry
}

var _ apiserver.EarlierBoards = (*backend)(nil)

// EarlierBoards returns the boards of earlier epochs the Runner keeps.
func (b *backend) EarlierBoards() []apiserver.EpochBoard {
	if b.earlier == nil {
		return nil
	}
	return b.earlier()
}

// The bindings of a network whose committees come from the chain.
var _ apiserver.BindingKeeper = (*backend)(nil)

func (b *backend) TakesBindings() bool { return b.s.TakesBindings() }

func (b *backend) Bindings() []qc.Binding { return b.s.Bindings() }

func (b *backend) AddBinding(binding qc.Binding) (bool, error) { return b.s.AddBinding(binding) }

// CommitteeAt returns the committee of another epoch, as the network's
// resolver knows it (no connection state: those members are not this
// node's peers now).
func (b *backend) CommitteeAt(ctx context.Context, e uint64) (apiserver.CommitteeInfo, error) {
	if b.resolver == nil {
		return apiserver.CommitteeInfo{}, fmt.Errorf("this network stays in epoch %d", b.s.Validator().Committee().Domain().Epoch)
	}
	return committeeInfoAt(ctx, b.resolver, b.committee, e)
}

// committeeInfoAt describes the committee of epoch e as res knows it.
func committeeInfoAt(ctx context.Context, res *committee.Resolver, f *committee.File, e uint64) (apiserver.CommitteeInfo, error) {
	c, err := res.Committee(ctx, e)
	if err != nil {
		return apiserver.CommitteeInfo{}, err
	}
	info := apiserver.CommitteeInfo{ChainID: c.Domain().ChainID, Epoch: e, N: c.N(), F: c.F(), Quorum: c.Quorum(), Hash: c.Hash(), QCShards: f.QCShards,
		EpochLength: f.EpochLength}
	if c.Seated() {
		info.Seats = c.Seats()
	}
	for _, m := range c.Members() {
		mi := apiserver.MemberInfo{Name: m.Name, ID: m.ID, Seat: m.SeatOrID()}
		if pid, err := p2p.PeerIDFromValidatorID(m.ID); err == nil {
			mi.PeerID = pid.String()
		}
		info.Members = append(info.Members, mi)
	}
	return info, nil
}
