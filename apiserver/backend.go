// Package apiserver serves a sidecar's client API on one listen address: the
// gRPC service FastPaySidecar (wire-compatible with the reference) and a JSON
// HTTP API with server-sent events for browsers and curl.
package apiserver

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// Backend is what the API needs from a sidecar. Implementations must be safe
// for concurrent use.
type Backend interface {
	// Submit validates req with this validator and, when accepted, shares the
	// transaction and this validator's certificate with the mesh. A rejection
	// is a *validator.Reject (use validator.RejectCodeOf); other errors mean
	// the sidecar could not decide (TEMPORARY_UNAVAILABLE).
	Submit(ctx context.Context, req *fastpayv1.SubmitFastPayRequest) (qc.Certificate, error)
	// Board is the bulletin board: certificates, QCs, lifecycle stages,
	// evidence, and event subscriptions.
	Board() *bulletin.Board
	// ChainHead returns the newest block the sidecar knows.
	ChainHead(ctx context.Context) (tempo.Head, error)
	// ChainHealth returns nil while the sidecar is connected to its chain
	// node, otherwise why not (readiness, /readyz). ChainHead may still
	// answer with the last head seen while the connection is down. It must
	// be cheap.
	ChainHealth() error
	// Info describes this validator and its view of the mesh.
	Info() NodeInfo
	// Committee returns the committee and each member's mesh status.
	Committee() CommitteeInfo
	// Gatherer exposes the node's Prometheus metrics.
	Gatherer() prometheus.Gatherer
	// StoreHealth returns nil while the durable state store is open and
	// usable, otherwise why not (readiness, /readyz). It must be cheap.
	StoreHealth() error
	// SigningHealth returns nil while the validator signs, otherwise why
	// not: its doppelganger window after start is still open, or another
	// process signs with its key (readiness, /readyz). It must be cheap.
	SigningHealth() error
}

// NodeInfo describes the sidecar.
type NodeInfo struct {
	Name        string
	ID          qc.ValidatorID
	PeerID      string
	ListenAddrs []string // libp2p multiaddrs including /p2p/<peer id>
	GossipPeers []string // peer ids currently connected
	ChainID     uint64
	Epoch       uint64
}

// CommitteeInfo is the committee with each member's status as seen from here.
type CommitteeInfo struct {
	ChainID  uint64
	Epoch    uint64
	N        int
	F        int
	Quorum   int
	Hash     qc.Hash
	QCShards int
	Members  []MemberInfo
	// Seats are the consensus keys whose votes count (a committee from the
	// chain); nil when each member is its own seat.
	Seats []qc.ValidatorID
	// EpochLength is the network's epoch length in blocks when it changes
	// epochs with the chain (SPEC §5a); 0 when it stays in one epoch.
	EpochLength uint64
}

// EpochCommittees is implemented by backends of networks that change
// epochs: the committee of another epoch than the current one.
type EpochCommittees interface {
	CommitteeAt(ctx context.Context, epoch uint64) (CommitteeInfo, error)
}

// MemberInfo is one committee member.
type MemberInfo struct {
	Name      string
	ID        qc.ValidatorID
	Seat      qc.ValidatorID // the consensus key it signs for (= ID in a committee file)
	PeerID    string
	Addrs     []string
	Self      bool
	Connected bool
	Score     float64
}
