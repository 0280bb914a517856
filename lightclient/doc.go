// Package lightclient is the Allegro light client (SPEC §1, §5, §7.4): a
// libp2p peer outside the committee, for example a merchant's point of
// sale, that learns of incoming payments as soon as they are certified,
// without trusting any sidecar.
//
// It joins only the QC shard topics of the addresses it watches
// (/allegro/<chain_id>/<epoch>/qc/<recipient[0] % qc_shards>/1), never the
// validators-only tx and bulletin topics, and reports a payment only when
// its QC verifies against the committee and pays a watched address:
//
//	f, _ := committee.LoadFile("committee.toml")
//	committee, _ := f.Committee()
//	boot, _ := f.Bootstrap()
//	cfg := lightclient.DefaultConfig()
//	cfg.Committee, cfg.QCShards, cfg.Bootstrap = committee, f.QCShards, boot
//	cfg.Watch = []common.Address{shop}
//	c, _ := lightclient.New(cfg, nil)
//	_ = c.Start(ctx)
//	defer c.Stop(context.Background())
//	for p := range c.Payments() {
//		// p.QC proves p.Amount from p.From to p.To will settle.
//	}
//
// # Trust
//
// A QC is verified twice: by the mesh's stateless stage, which rejects
// forgeries and lowers the forwarding peer's gossipsub score, and by the
// client's own validator stage (and, failing that, in its handler), so the
// client never reports a QC it did not verify itself. Bootstrap peers are
// only transport: a lying sidecar can withhold QCs but not forge one.
//
// Each transaction is reported once (by tx hash, within RememberQCs). A
// second valid QC for the same contention key (sender, nonce key, nonce
// sequence) with a different transaction is a safety violation (SPEC §7.1,
// more than f Byzantine validators): it is logged at Error, recorded in
// Conflicts and never reported as a payment. The first may already have
// been reported; consumers that act on payments should check Conflicts.
//
// The client only sees QCs published while it is subscribed; it does not
// backfill earlier ones.
package lightclient
