package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	coreconnmgr "github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/allegro-mesh/allegro/qc"
)

// UserAgent is the identify user agent of mesh hosts.
const UserAgent = "allegro-mesh/p2p"

// Connection manager tags.
const (
	protectCommittee = "allegro/committee"
	protectBootstrap = "allegro/bootstrap"
)

// secondaryDialDelay holds back every address of a transport after the
// first one dialled (another address family, another port): go-libp2p's
// default of 30 ms for private addresses is shorter than a handshake on a
// busy node, and both dials then succeed, leaving duplicate connections
// whose later closing breaks pubsub links (see repair.go). A dial that
// succeeds first cancels the rest.
const secondaryDialDelay = 250 * time.Millisecond

// fallbackTransportDelay holds back the addresses of the transport not
// preferred after the last dial of the preferred one. A failed dial moves
// on to the next address at once, so the delay is only paid when the
// preferred transport hangs; it must exceed a handshake on a busy node (a
// whole committee dialling at once at start), or the fallback dial wins
// the race and the pair ends up on the other transport, with a duplicate
// connection.
const fallbackTransportDelay = time.Second

// dialRanker returns the dial order for a peer's addresses: go-libp2p's
// ranking of the preferred transport's addresses, then that of the
// others, fallbackTransportDelay after the last preferred dial.
func dialRanker(prefer string) network.DialRanker {
	preferred := isTCP
	if prefer == TransportQUIC {
		preferred = func(a ma.Multiaddr) bool { return !isTCP(a) }
	}
	return func(addrs []ma.Multiaddr) []network.AddrDelay {
		var first, others []ma.Multiaddr
		for _, a := range addrs {
			if preferred(a) {
				first = append(first, a)
			} else {
				others = append(others, a)
			}
		}
		if len(first) == 0 || len(others) == 0 {
			return rankDelayed(addrs)
		}
		ranked := rankDelayed(first)
		var last time.Duration
		for _, r := range ranked {
			last = max(last, r.Delay)
		}
		for _, r := range rankDelayed(others) {
			r.Delay += last + fallbackTransportDelay
			ranked = append(ranked, r)
		}
		return ranked
	}
}

// rankDelayed is go-libp2p's ranking with every address after the first
// held back at least secondaryDialDelay.
func rankDelayed(addrs []ma.Multiaddr) []network.AddrDelay {
	ranked := swarm.DefaultDialRanker(addrs)
	for i := range ranked {
		if ranked[i].Delay > 0 {
			ranked[i].Delay = max(ranked[i].Delay, secondaryDialDelay)
		}
	}
	return ranked
}

// isTCP reports whether a is a plain TCP address (an IP or DNS component,
// then TCP, then at most the peer ID).
func isTCP(a ma.Multiaddr) bool {
	ps := a.Protocols()
	if len(ps) > 0 && ps[len(ps)-1].Code == ma.P_P2P {
		ps = ps[:len(ps)-1]
	}
	return len(ps) == 2 && ps[1].Code == ma.P_TCP
}

// PeerIDFromValidatorID returns the libp2p peer ID of a validator whose
// identity key is its certificate key. An ed25519 peer ID inlines the public
// key (identity multihash), so the mapping is computable both ways.
func PeerIDFromValidatorID(id qc.ValidatorID) (peer.ID, error) {
	pub, err := crypto.UnmarshalEd25519PublicKey(id[:])
	if err != nil {
		return "", fmt.Errorf("validator id %s: %w", id.Hex(), err)
	}
	return peer.IDFromPublicKey(pub)
}

// ValidatorIDFromPeerID extracts the ed25519 public key inlined in an
// ed25519 peer ID. Peer IDs of other key types, or hashed IDs, fail.
func ValidatorIDFromPeerID(p peer.ID) (qc.ValidatorID, error) {
	var id qc.ValidatorID
	pub, err := p.ExtractPublicKey()
	if err != nil {
		return id, fmt.Errorf("peer %s: %w", p, err)
	}
	if pub.Type() != crypto.Ed25519 {
		return id, fmt.Errorf("peer %s: key type %s, want Ed25519", p, pub.Type())
	}
	raw, err := pub.Raw()
	if err != nil {
		return id, fmt.Errorf("peer %s: %w", p, err)
	}
	return qc.ValidatorIDFromBytes(raw)
}

// committeeIndex maps peer IDs to committee members, precomputed so the
// membership checks on the pubsub hot path are one map lookup.
type committeeIndex map[peer.ID]qc.Member

func newCommitteeIndex(c *qc.Committee) (committeeIndex, error) {
	idx := make(committeeIndex, c.N())
	for _, m := range c.Members() {
		pid, err := PeerIDFromValidatorID(m.ID)
		if err != nil {
			return nil, fmt.Errorf("committee member %q: %w", m.Name, err)
		}
		idx[pid] = m
	}
	return idx, nil
}

func (idx committeeIndex) member(p peer.ID) (qc.Member, bool) {
	m, ok := idx[p]
	return m, ok
}

// Host is the libp2p host of a mesh node: TCP and QUIC transports, an
// ed25519 identity, a connection manager that protects committee peers, and
// a static bootstrap list kept connected with exponential backoff.
type Host struct {
	h         host.Host
	cm        *connmgr.BasicConnMgr
	cfg       Config
	committee committeeIndex
	logger    *slog.Logger
	metrics   *metrics
	boot      *bootstrapper

	startOnce sync.Once
	closeOnce sync.Once
}

// NewHost creates and starts listening a host with identity key (callers
// pass the validator's certificate key converted with
// crypto.UnmarshalEd25519PrivateKey). Committee members are protected in
// the connection manager. Dialing the bootstrap peers starts with Start.
func NewHost(cfg Config, key crypto.PrivKey, committee *qc.Committee, bootstrap []peer.AddrInfo, logger *slog.Logger) (*Host, error) {
	return newHost(cfg, key, committee, bootstrap, logger, nil)
}

func newHost(cfg Config, key crypto.PrivKey, committee *qc.Committee, bootstrap []peer.AddrInfo, logger *slog.Logger, m *metrics) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, errors.New("p2p: nil identity key")
	}
	if key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("p2p: identity key type %s, want Ed25519", key.Type())
	}
	if committee == nil {
		return nil, errors.New("p2p: nil committee")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	idx, err := newCommitteeIndex(committee)
	if err != nil {
		return nil, err
	}
	listen, err := parseTransportAddrs("listen_addrs", cfg.ListenAddrs)
	if err != nil {
		return nil, err
	}
	announce, err := parseTransportAddrs("announce_addrs", cfg.AnnounceAddrs)
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(cfg.ConnManagerLowWater, cfg.ConnManagerHighWater, connmgr.WithGracePeriod(cfg.ConnManagerGracePeriod))
	if err != nil {
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrs(listen...),
		// Only TCP and QUIC: the mesh has no use for browser transports,
		// and each extra transport is attack surface and file descriptors.
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.ConnectionManager(undecayed{cm}),
		libp2p.SwarmOpts(swarm.WithDialRanker(dialRanker(cfg.PreferredTransport))),
		libp2p.UserAgent(UserAgent),
		// Validators and light clients dial validators directly; relaying
		// would let third parties sit on the path of a private topic.
		libp2p.DisableRelay(),
	}
	if len(announce) > 0 {
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }))
	}
	h, err := cfg.newLibp2pHost(key, opts, cm)
	if err != nil {
		_ = cm.Close()
		// libp2p reports a failed bind only in words (its swarm formats the
		// bind errors with %s), so the words are what can be matched.
		if strings.Contains(err.Error(), "failed to listen on any addresses") {
			return nil, fmt.Errorf("%w: %s", ErrListen, listenCause(err))
		}
		return nil, fmt.Errorf("p2p: libp2p host: %w", err)
	}
	for pid := range idx {
		if pid != h.ID() {
			cm.Protect(pid, protectCommittee)
		}
	}
	hh := &Host{h: h, cm: cm, cfg: cfg, committee: idx, logger: logger, metrics: m}
	hh.boot = newBootstrapper(hh)
	hh.AddBootstrapPeers(bootstrap...)
	return hh, nil
}

// ID returns the host's peer ID.
func (h *Host) ID() peer.ID { return h.h.ID() }

// LibP2P returns the underlying libp2p host, for protocols beyond the mesh
// and for tests. Do not close it directly; use Close.
func (h *Host) LibP2P() host.Host { return h.h }

// Addrs returns the addresses the host advertises.
func (h *Host) Addrs() []ma.Multiaddr { return h.h.Addrs() }

// AddrInfo returns the host's peer ID and advertised addresses, ready to go
// into another node's bootstrap list.
func (h *Host) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: h.h.ID(), Addrs: h.h.Addrs()}
}

// IsCommitteeMember reports whether p is the peer ID of a committee member,
// and which one.
func (h *Host) IsCommitteeMember(p peer.ID) (qc.Member, bool) { return h.committee.member(p) }

// AddBootstrapPeers adds static peers to keep connected; peers already
// known get their addresses merged. Safe to call at any time (for example
// when a committee file is reloaded or, in tests, once every node listens).
// The host's own entry is skipped; bootstrap peers are protected in the
// connection manager.
func (h *Host) AddBootstrapPeers(peers ...peer.AddrInfo) {
	for _, p := range peers {
		if p.ID == "" || p.ID == h.h.ID() {
			continue
		}
		h.cm.Protect(p.ID, protectBootstrap)
		h.boot.add(p)
	}
}

// AddDialGroups adds groups of peers of which the host keeps a number
// connected (DialGroup); like bootstrap peers, they are protected in the
// connection manager.
func (h *Host) AddDialGroups(groups ...DialGroup) {
	for _, g := range groups {
		g.Peers = slices.DeleteFunc(slices.Clone(g.Peers), func(p peer.AddrInfo) bool { return p.ID == "" || p.ID == h.h.ID() })
		for _, p := range g.Peers {
			h.cm.Protect(p.ID, protectBootstrap)
		}
		h.boot.addGroup(g)
	}
}

// ExpectedPeers is how many peers the host dials and keeps connected when
// they are all up: every other member on a full mesh, its chosen
// neighbours on a sparse one. Others may connect to it besides.
func (h *Host) ExpectedPeers() int { return h.boot.expected() }

// Connected reports whether the host has a connection to p.
func (h *Host) Connected(p peer.ID) bool {
	return h.h.Network().Connectedness(p) == network.Connected
}

// Start begins dialing bootstrap peers and reconnecting them when they drop.
// The loop runs until Close; ctx only bounds Start itself.
func (h *Host) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.startOnce.Do(h.boot.start)
	return nil
}

// Close stops the reconnect loop and closes the host.
func (h *Host) Close() error {
	var err error
	h.closeOnce.Do(func() {
		h.boot.stop()
		// The libp2p host closes its connection manager.
		err = h.h.Close()
	})
	return err
}

// undecayed is the connection manager without its decaying tags. Pubsub
// bumps a decaying tag of the sender for every message delivered, so the
// manager keeps useful peers; committee peers are protected here instead,
// so the bumps would buy nothing and cost a queue send per message, and
// under load pubsub logs a warning for each bump the full queue refuses.
type undecayed struct{ coreconnmgr.ConnManager }

// ErrListen reports that the host could bind none of its listen addresses.
var ErrListen = errors.New("cannot listen")

// listenCause is the part of libp2p's bind error after its own prefixes:
// "listen tcp4 0.0.0.0:4001: bind: address already in use".
func listenCause(err error) string {
	s := err.Error()
	if i := strings.Index(s, "failed to listen on any addresses: "); i >= 0 {
		s = s[i+len("failed to listen on any addresses: "):]
	}
	return strings.Trim(s, "[]")
}
