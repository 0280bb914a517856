// Package demo runs the reference chained-payment scenario against a
// running Allegro network on the development chain: Alice pays Bob, Bob at
// once pays Carol with Alice's QC as parent, Carol's light client sees the
// verified payment, and both settle. `allegro-dev devnet --demo`, `allegro-dev demo`
// and the sidecar dashboard's demo button (dev wallet) all run it.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/lightclient"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// DefaultBlockPeriod bounds the demo's waits when Target.BlockPeriod is 0.
const DefaultBlockPeriod = 2 * time.Second

// Report is what the chained-payment demo observed.
type Report struct {
	QC1, QC2 *qc.QC
	// Block heights when the demo started and when each QC was held.
	HeightAtStart, HeightAtQC1, HeightAtQC2 uint64
	TimeToQC1, TimeToQC2                    time.Duration
	// CarolSaw is the payment Carol's light client reported (QC-verified).
	CarolSaw lightclient.Payment
	// Settled heights of both payments; final balances in token units.
	Settled1, Settled2 uint64
	Balances           map[string]uint64
}

// QCsBeforeBlock reports whether both QCs formed before the chain produced
// a block after the demo started.
func (r *Report) QCsBeforeBlock() bool { return r.HeightAtQC2 == r.HeightAtStart }

// Target is a running network the demo talks to, in process or not: it uses
// only the network's public interfaces (JSON-RPC, sidecar APIs, the mesh).
type Target struct {
	ChainURL    string          // dev chain JSON-RPC (ws:// for head updates)
	BlockPeriod time.Duration   // to bound waits (0: DefaultBlockPeriod)
	Sidecars    []string        // sidecar API addresses (host:port)
	Bootstrap   []peer.AddrInfo // sidecars' mesh addresses, for the light client
	Committee   *qc.Committee
	QCShards    int
	// Network, on a network that changes epochs (epoch_length), is its
	// committee file, and Bindings its bindings directory (committees from
	// the chain): the wallet and Carol's light client then follow the
	// epochs, and the demo starts early enough in an epoch to finish in it.
	Network  *committee.File
	Bindings string
}

// Run runs the reference scenario against t: Alice pays Bob 10 dollars;
// Bob pays Carol 10 dollars at once, using the first QC as parent; Carol's
// light client sees the QC-verified payment; both settle on chain. It prints
// a timeline to w. The final balances are Alice 5, Bob 5, Carol 15 on a
// fresh dev chain.
func Run(ctx context.Context, t Target, w io.Writer) (*Report, error) {
	if len(t.Sidecars) == 0 || t.Committee == nil {
		return nil, errors.New("demo: the target needs at least one sidecar and the committee")
	}
	if t.BlockPeriod <= 0 {
		t.BlockPeriod = DefaultBlockPeriod
	}
	demo := devkit.DemoAccounts()
	alice, bob, carol := demo[0], demo[1], demo[2]
	chainID := t.Committee.Domain().ChainID
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(w, "%8.1f ms  %s\n", float64(time.Since(start).Microseconds())/1000, fmt.Sprintf(format, args...))
	}

	reader, err := chain.New(chain.Config{URL: t.ChainURL, ExpectedChainID: chainID}, nil)
	if err != nil {
		return nil, err
	}
	if err := reader.Start(ctx); err != nil {
		return nil, err
	}
	defer reader.Stop(context.Background())
	height := func() uint64 { h, _ := reader.Head(); return h.Number }

	// On a network that changes epochs: start with enough of the epoch left
	// for the payments, and verify against the epoch's committee.
	var committeeOf func(uint64) *qc.Committee
	var res *committee.Resolver
	if t.Network != nil && t.Network.EpochLength > 0 {
		if res, err = committee.NewResolver(t.Network, reader, t.Bindings); err != nil {
			return nil, err
		}
		e, err := epochWithRoom(ctx, reader, t.Network, t.BlockPeriod)
		if err != nil {
			return nil, err
		}
		if t.Committee, err = res.Committee(ctx, e); err != nil {
			return nil, err
		}
		committeeOf = res.Func(ctx)
		say("epoch %d: committee of %d seats from the chain", e, t.Committee.N())
	}

	// Carol's point of sale: a light client outside the committee.
	lcfg := lightclient.DefaultConfig()
	lcfg.Committee, lcfg.Bootstrap, lcfg.Watch = t.Committee, t.Bootstrap, []common.Address{carol.Address}
	if t.QCShards > 0 {
		lcfg.QCShards = t.QCShards
	}
	var lc interface {
		Stop(context.Context) error
		Payments() <-chan lightclient.Payment
	}
	var carolMesh func() *p2p.Mesh
	if res != nil {
		f, err := lightclient.NewFollower(lcfg, lightclient.FollowConfig{Committees: res, Chain: reader, EpochOf: t.Network.EpochOf})
		if err != nil {
			return nil, err
		}
		if err := f.Start(ctx); err != nil {
			return nil, err
		}
		lc, carolMesh = f, func() *p2p.Mesh { return f.Current().Mesh() }
	} else {
		c, err := lightclient.New(lcfg, nil)
		if err != nil {
			return nil, err
		}
		if err := c.Start(ctx); err != nil {
			return nil, err
		}
		lc, carolMesh = c, c.Mesh
	}
	defer lc.Stop(context.Background())
	shard := p2p.QCTopic(chainID, t.Committee.Domain().Epoch, p2p.QCShard(carol.Address, lcfg.QCShards))
	if err := waitFor(ctx, 20*time.Second, func() bool { return len(carolMesh().ListPeers(shard)) > 0 }); err != nil {
		return nil, fmt.Errorf("Carol's light client did not join the mesh: %w", err)
	}

	api := t.Sidecars
	wallet, err := client.New(client.Config{Endpoints: api, Committee: t.Committee, CommitteeOf: committeeOf})
	if err != nil {
		return nil, err
	}
	defer wallet.Close()

	// Start right after a fresh block, so the payments race a whole block
	// period.
	heads, cancelHeads := reader.SubscribeHeads()
	first, _ := reader.Head()
	fresh := false
	for deadline := time.After(2*t.BlockPeriod + 10*time.Second); !fresh; {
		select {
		case h := <-heads:
			fresh = h.Number > first.Number
		case <-deadline:
			cancelHeads()
			return nil, errors.New("the dev chain produced no block")
		case <-ctx.Done():
			cancelHeads()
			return nil, ctx.Err()
		}
	}
	cancelHeads()
	start = time.Now()
	view, err := reader.Latest(ctx)
	if err != nil {
		return nil, err
	}
	nonceOf := func(a common.Address) (uint64, error) { return view.NonceOf(ctx, a, [32]byte{}) }
	rep := &Report{HeightAtStart: view.Head().Number, Balances: map[string]uint64{}}
	say("chain head at block %d; Carol's light client watches %s on %s", rep.HeightAtStart, short(carol.Address), shard)

	onEvent := func(e client.Event) {
		switch e.Kind {
		case client.EventCertificate:
			say("  certificate from %-12s (%d/%d)", e.SignerName, e.Certs, t.Committee.Quorum())
		case client.EventQC:
			say("  QC formed: %s (%d signers), block height %d", e.QC.Hash.Hex()[:18], len(e.QC.Certs), height())
		}
	}

	// 1. Alice → Bob, through the first sidecar.
	n1, err := nonceOf(alice.Address)
	if err != nil {
		return nil, err
	}
	req1, err := client.NewEVMPayment(alice.Key, chainID, n1, devkit.TokenAddress, bob.Address, 10*devkit.Dollar)
	if err != nil {
		return nil, err
	}
	say("Alice pays Bob $10 through %s", api[0])
	res1, err := wallet.Pay(ctx, req1, onEvent)
	if err != nil {
		return nil, fmt.Errorf("Alice → Bob: %w", err)
	}
	rep.QC1, rep.TimeToQC1, rep.HeightAtQC1 = res1.QC, res1.TimeToQC, height()

	// 2. Bob → Carol at once, spending what he just received (he has only
	// $5 on chain), with QC1 as parent, through another sidecar.
	n2, err := nonceOf(bob.Address)
	if err != nil {
		return nil, err
	}
	req2, err := client.NewEVMPayment(bob.Key, chainID, n2, devkit.TokenAddress, carol.Address, 10*devkit.Dollar, client.WithParent(res1.QC))
	if err != nil {
		return nil, err
	}
	second, err := client.New(client.Config{Endpoints: append(append([]string(nil), api[1:]...), api[0]), Committee: t.Committee, CommitteeOf: committeeOf})
	if err != nil {
		return nil, err
	}
	defer second.Close()
	say("Bob pays Carol $10 with QC1 as parent, through %s", api[1%len(api)])
	res2, err := second.Pay(ctx, req2, onEvent)
	if err != nil {
		return nil, fmt.Errorf("Bob → Carol: %w", err)
	}
	rep.QC2, rep.TimeToQC2, rep.HeightAtQC2 = res2.QC, res2.TimeToQC, height()

	// 3. Carol's light client reports the verified payment.
	select {
	case p := <-lc.Payments():
		if p.TxHash != res2.TxHash {
			return nil, fmt.Errorf("Carol's light client reported tx %s, want %s", p.TxHash, res2.TxHash)
		}
		rep.CarolSaw = p
		say("Carol's light client: verified payment of $%d.%06d from Bob (QC signed by %v)", p.Amount/devkit.Dollar, p.Amount%devkit.Dollar, p.Signers)
	case <-time.After(20 * time.Second):
		return nil, errors.New("Carol's light client saw no payment")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if rep.QCsBeforeBlock() {
		say("both QCs formed at block %d: pre-confirmed in %.1f ms and %.1f ms, before the chain produced a block",
			rep.HeightAtStart, ms(rep.TimeToQC1), ms(rep.TimeToQC2))
	} else {
		say("QCs in %.1f ms and %.1f ms (blocks %d → %d during the demo)", ms(rep.TimeToQC1), ms(rep.TimeToQC2), rep.HeightAtStart, rep.HeightAtQC2)
	}

	// 4. Settlement, in dependency order.
	say("waiting for settlement ...")
	for i, h := range []qc.Hash{res1.TxHash, res2.TxHash} {
		settleCtx, cancel := context.WithTimeout(ctx, 10*t.BlockPeriod+30*time.Second)
		st, err := wallet.WaitSettled(settleCtx, h)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("payment %d not settled: %w", i+1, err)
		}
		at := st.BlockHeight
		if i == 0 {
			rep.Settled1 = at
		} else {
			rep.Settled2 = at
		}
		say("payment %d settled in block %d", i+1, at)
	}
	view, err = reader.Latest(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range []devkit.Account{alice, bob, carol} {
		b, err := view.BalanceOf(ctx, devkit.TokenAddress, a.Address)
		if err != nil {
			return nil, err
		}
		rep.Balances[a.Name] = b.Uint64()
	}
	say("final balances: Alice $%d, Bob $%d, Carol $%d", rep.Balances["alice"]/devkit.Dollar, rep.Balances["bob"]/devkit.Dollar, rep.Balances["carol"]/devkit.Dollar)
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func short(a common.Address) string { return a.Hex()[:10] }

// waitFor polls cond until it holds, the timeout passes or ctx ends.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// epochWithRoom returns the chain's epoch once enough of it is left for the
// demo's payments (a quarter of the epoch, at least ten blocks), waiting for
// the next epoch otherwise, and for its committee to sign (a retry of the
// wallet covers the handover).
func epochWithRoom(ctx context.Context, reader *chain.Client, f *committee.File, period time.Duration) (uint64, error) {
	room := max(f.EpochLength/4, 10)
	deadline := time.Now().Add(time.Duration(f.EpochLength+room+10) * period)
	for time.Now().Before(deadline) {
		if h, ok := reader.Head(); ok {
			e := f.EpochOf(h.Number)
			if next := (e + 1) * f.EpochLength; next > h.Number && next-h.Number >= room && h.Number >= e*f.EpochLength+3 {
				return e, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(period / 2):
		}
	}
	return 0, errors.New("demo: the chain did not reach an epoch with room for the payments")
}
