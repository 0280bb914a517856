package node

import (
	"log/slog"
	"net/http"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/dashboard"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/validator"
)

// APIExtension mounts more routes on a sidecar's API server before it
// starts; it is given what a development tool may need of the sidecar.
type APIExtension func(ExtensionContext) error

// ExtensionContext is what an APIExtension gets.
type ExtensionContext struct {
	// Handle mounts a route (http.ServeMux patterns).
	Handle    func(pattern string, h http.Handler)
	Committee *committee.File
	Chain     tempo.ChainReader
	// ChainURL is the chain node's JSON-RPC URL ("" with an injected
	// chain).
	ChainURL string
	Board    *bulletin.Board
	// APIAddr returns the API's listen address (known once it listens).
	APIAddr func() string
	// Overlay returns this validator's pending debits and QC credits of an
	// account, not yet pruned (they may already be on chain).
	Overlay func(qc.Address) validator.Overlay
	Logger  *slog.Logger
}

// mountRoutes mounts the dashboard page and the extensions on the API
// server.
func mountRoutes(cfg Config, srv *apiserver.Server, f *committee.File, ch tempo.ChainReader, b *bulletin.Board,
	v *validator.Validator, exts []APIExtension, log *slog.Logger) error {
	if cfg.Dashboard.Enabled {
		h := dashboard.Handler()
		srv.Handle("GET /{$}", h)
		srv.Handle("GET /dashboard/", h)
	}
	ctx := ExtensionContext{
		Handle: srv.Handle, Committee: f, Chain: ch, ChainURL: cfg.Chain.URL, Board: b, Logger: log, Overlay: v.OverlayOf,
		APIAddr: func() string {
			if a := srv.Addr(); a != nil {
				return a.String()
			}
			return cfg.API.ListenAddr
		},
	}
	for _, ext := range exts {
		if err := ext(ctx); err != nil {
			return plain(err)
		}
	}
	return nil
}

// Mesh reports the gossip mesh for GET /api/v1/mesh.
func (b *backend) Mesh() apiserver.MeshInfo {
	m := b.s.Mesh()
	st := m.Stats()
	info := apiserver.MeshInfo{Topics: []apiserver.MeshTopic{
		meshTopic(p2p.KindTx.String(), st.Tx), meshTopic(p2p.KindBulletin.String(), st.Bulletin),
		meshTopic(p2p.KindQC.String(), st.QC), meshTopic("other", st.Other),
	}}
	for _, p := range m.Peers() {
		mp := apiserver.MeshPeer{PeerID: p.ID.String(), Name: p.Name, Member: p.Member,
			Connected: p.Connected, Score: p.Score, HasScore: p.HasScore, Addrs: p.Addrs}
		if p.HasScore {
			mp.ScoreParts = meshScoreParts(p.ScoreParts)
		}
		info.Peers = append(info.Peers, mp)
	}
	if sp, ok := m.ScoringParams(); ok {
		// The API mirrors p2p's parameters field for field (it does not
		// import p2p), so a conversion copies them.
		sc := apiserver.MeshScoring(sp)
		info.Scoring = &sc
	}
	return info
}

func meshScoreParts(p p2p.ScoreParts) *apiserver.MeshScoreParts {
	out := &apiserver.MeshScoreParts{TopicSum: p.TopicSum, TopicCap: p.TopicCap, AppSpecific: p.AppSpecific,
		IPColocation: p.IPColocation, IPColocationFactor: p.IPColocationFactor, Behaviour: p.Behaviour, BehaviourCounter: p.BehaviourCounter}
	for _, t := range p.Topics {
		out.Topics = append(out.Topics, apiserver.MeshTopicScore{Kind: t.Kind, Topics: t.Topics, TimeInMesh: t.TimeInMesh,
			TimeInMeshScore: t.TimeInMeshScore, FirstDeliveries: t.FirstDeliveries, FirstDeliveriesScore: t.FirstDeliveriesScore,
			InvalidDeliveries: t.InvalidDeliveries, InvalidScore: t.InvalidScore})
	}
	return out
}

var _ apiserver.MeshReporter = (*backend)(nil)

func meshTopic(kind string, s p2p.TopicStats) apiserver.MeshTopic {
	return apiserver.MeshTopic{Kind: kind, Published: s.Published, ObjectsPublished: s.ObjectsPublished, PublishErrors: s.PublishErrors,
		Accepted: s.Accepted, Ignored: s.Ignored, Rejected: s.Rejected, ObjectsReceived: s.ObjectsReceived, ObjectsNew: s.ObjectsNew,
		Delivered: s.Delivered, Duplicates: s.Duplicates, Dropped: s.Dropped}
}
