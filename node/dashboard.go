package node

import (
	"fmt"
	"log/slog"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/dashboard"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// dashboardGate is the checked [dashboard] configuration. It is built from
// the configuration and the committee file alone, before any store is
// opened or port bound, so a refused dev wallet fails early.
type dashboardGate struct {
	cfg dashboard.Config
}

// newDashboardGate refuses the dev wallet outside a test network: its keys
// are public, like the rule for [byzantine].
func newDashboardGate(cfg Config, f *CommitteeFile) (*dashboardGate, error) {
	if cfg.Dashboard.DevWallet && !f.TestNetwork {
		return nil, plain(fmt.Errorf("config [dashboard]: dev_wallet is only allowed on a test network (committee file test_network = true)"))
	}
	return &dashboardGate{cfg: cfg.Dashboard}, nil
}

// mountDashboard mounts the page and, when enabled, the dev wallet on the
// API server. The gate comes first so it is checked before the server (and
// everything it needs) is built.
func mountDashboard(gate *dashboardGate, cfg Config, srv *apiserver.Server, f *CommitteeFile, c *qc.Committee,
	ch tempo.ChainReader, b *bulletin.Board, log *slog.Logger) error {
	if gate.cfg.Enabled {
		h := dashboard.Handler()
		srv.Handle("GET /{$}", h)
		srv.Handle("GET /dashboard/", h)
	}
	if !gate.cfg.DevWallet {
		return nil
	}
	boot, err := f.Bootstrap()
	if err != nil {
		return err
	}
	w, err := dashboard.NewDevWallet(dashboard.DevWalletParams{
		Committee: c, QCShards: f.QCShards, Bootstrap: boot, Chain: ch, ChainURL: cfg.Chain.URL,
		APIAddr: func() string {
			if a := srv.Addr(); a != nil {
				return a.String()
			}
			return cfg.API.ListenAddr
		},
		Settled: func(h qc.Hash) bool {
			st, ok := b.Status(h)
			return ok && st.Stage >= fastpayv1.TxLifecycleUpdate_INCLUDED
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	w.Register(srv.Handle)
	log.Info("dashboard dev wallet enabled: the sidecar signs payments with the dev chain's public demo keys (test networks only)")
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
		info.Peers = append(info.Peers, apiserver.MeshPeer{PeerID: p.ID.String(), Name: p.Name, Member: p.Member,
			Connected: p.Connected, Score: p.Score, HasScore: p.HasScore, Addrs: p.Addrs})
	}
	return info
}

var _ apiserver.MeshReporter = (*backend)(nil)

func meshTopic(kind string, s p2p.TopicStats) apiserver.MeshTopic {
	return apiserver.MeshTopic{Kind: kind, Published: s.Published, PublishErrors: s.PublishErrors, Accepted: s.Accepted,
		Ignored: s.Ignored, Rejected: s.Rejected, Delivered: s.Delivered, Duplicates: s.Duplicates, Dropped: s.Dropped}
}
