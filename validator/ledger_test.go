package validator

import (
	"context"
	"crypto/ecdsa"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/allegro-mesh/allegro/qc"
)

// ledgerItem is one entry of the reference model: where it was added.
type ledgerItem struct {
	key   ledgerKey
	lane  cursorSlot
	entry ledgerEntry
}

// referencePending is the funds check's definition, entry by entry: every
// pending credit of k adds, every pending debit subtracts, except entries
// below their lane's next nonce; a lane without a known nonce counts its
// debits and no credits.
func referencePending(items []ledgerItem, k ledgerKey, next map[cursorSlot]uint64, balance *big.Int) {
	var scratch big.Int
	for _, it := range items {
		if it.key != k {
			continue
		}
		n, known := next[it.lane]
		switch {
		case !known && it.entry.credit:
		case !known:
			balance.Sub(balance, it.entry.value(&scratch))
		case it.entry.seq < n:
		case it.entry.credit:
			balance.Add(balance, it.entry.value(&scratch))
		default:
			balance.Sub(balance, it.entry.value(&scratch))
		}
	}
}

// TestPendingLedgerMatchesReference drives the ledger with random adds and
// removes, entries out of nonce order and at equal nonces among them, and
// compares every funds check with the entry-by-entry definition.
func TestPendingLedgerMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	accounts := []qc.Address{{1}, {2}, {3}}
	assets := []qc.Address{{0xa}, {0xb}}
	keys := []qc.NonceKey{{}, {7}}
	pick := func() (ledgerKey, cursorSlot) {
		return ledgerKey{accounts[rng.IntN(len(accounts))], assets[rng.IntN(len(assets))]},
			cursorSlot{accounts[rng.IntN(len(accounts))], keys[rng.IntN(len(keys))]}
	}
	l := newPendingLedger()
	var items []ledgerItem
	chainNext := map[cursorSlot]uint64{}
	checks := 0
	for step := range 20_000 {
		switch op := rng.IntN(10); {
		case op < 5 || len(items) == 0:
			k, lane := pick()
			e := ledgerEntry{seq: uint64(rng.IntN(200)), amount: rng.Uint64N(1_000_000), credit: rng.IntN(3) == 0}
			e.tx[0], e.tx[1] = byte(step), byte(step>>8)
			if !e.credit && rng.IntN(4) == 0 {
				// A fee: a big amount beside the payment of the same tx.
				e.fee, e.amount = true, 0
				e.big = new(big.Int).Lsh(big.NewInt(int64(rng.IntN(1000)+1)), 70)
			}
			l.add(k, lane, e)
			items = append(items, ledgerItem{k, lane, e})
		case op < 8:
			i := rng.IntN(len(items))
			it := items[i]
			if !l.remove(it.key, it.lane, it.entry) {
				t.Fatalf("step %d: remove of an added entry %+v found nothing", step, it.entry)
			}
			items = append(items[:i], items[i+1:]...)
		case op < 9:
			k, lane := pick()
			ghost := ledgerEntry{seq: uint64(rng.IntN(200)), tx: qc.Hash{0xff, 0xff, 0xff}}
			if l.remove(k, lane, ghost) {
				t.Fatalf("step %d: removed an entry never added", step)
			}
		default:
			k, _ := pick()
			// The chain's nonces grow, and now and then a check reads an
			// older state than the last one; some lanes are not read.
			next := map[cursorSlot]uint64{}
			for _, s := range accounts {
				for _, nk := range keys {
					lane := cursorSlot{s, nk}
					if rng.IntN(3) == 0 {
						chainNext[lane] += uint64(rng.IntN(4))
					}
					switch r := rng.IntN(10); {
					case r == 0:
					case r == 1:
						next[lane] = chainNext[lane] - min(chainNext[lane], uint64(rng.IntN(5)))
					default:
						next[lane] = chainNext[lane]
					}
				}
			}
			start := big.NewInt(rng.Int64N(1 << 40))
			got, want := new(big.Int).Set(start), new(big.Int).Set(start)
			l.addPending(k, func(lane cursorSlot) (uint64, bool) { n, ok := next[lane]; return n, ok }, got)
			referencePending(items, k, next, want)
			if got.Cmp(want) != 0 {
				t.Fatalf("step %d: funds %s, want %s (%d entries)", step, got, want, len(items))
			}
			checks++
		}
	}
	if checks < 1000 {
		t.Fatalf("only %d checks ran", checks)
	}
	// Emptied, the ledger holds nothing.
	for _, it := range items {
		if !l.remove(it.key, it.lane, it.entry) {
			t.Fatalf("final remove of %+v found nothing", it.entry)
		}
	}
	if len(l.accounts) != 0 {
		t.Fatalf("%d accounts left after removing every entry", len(l.accounts))
	}
}

// TestLaneLedgerPrunesFromTheHead: removing a lane's entries in nonce order,
// as pruning does, moves none of the others and compacts the slice.
func TestLaneLedgerPrunesFromTheHead(t *testing.T) {
	var l laneLedger
	const n = 1000
	for i := range n {
		l.add(ledgerEntry{seq: uint64(i), amount: 1})
	}
	for i := range n - 1 {
		if !l.remove(ledgerEntry{seq: uint64(i), amount: 1}) {
			t.Fatalf("remove %d: not found", i)
		}
		if live := l.live(); len(live) != n-1-i || live[0].seq != uint64(i+1) {
			t.Fatalf("after removing %d: %d live, first %d", i, len(live), live[0].seq)
		}
	}
	if len(l.entries) > 64 {
		t.Fatalf("%d slots held for one live entry: the head was never compacted", len(l.entries))
	}
	if l.debits.Cmp(big.NewInt(1)) != 0 {
		t.Fatalf("debits %s after removals, want 1", &l.debits)
	}
}

// TestFundsMatchOverlay drives a validator with payments it signs, QCs it
// learns (more than its credits cache holds, so credits are evicted),
// settlement of random lanes and prunes, and after each step compares the
// funds check of every account with the same sum taken from its overlay
// entry by entry: the ledger follows the guard and the credits.
func TestFundsMatchOverlay(t *testing.T) {
	c := newCluster(t, 4)
	cfg := DefaultConfig()
	cfg.MaxCredits = 8
	v := c.validatorWith(t, 0, "", cfg)
	ctx := context.Background()
	payers := []*ecdsa.PrivateKey{aliceKey, bobKey, carolKey}
	strangers := []*ecdsa.PrivateKey{mustKey("dave"), mustKey("erin")}
	accounts := []common.Address{alice, bob, carol}
	for _, k := range append(append([]*ecdsa.PrivateKey{}, payers...), strangers...) {
		c.chain.SetBalance(token, addressOf(k), dollars(1_000_000))
	}
	next := map[common.Address]uint64{} // next nonce each key signs with
	settled := map[common.Address]uint64{}
	rng := rand.New(rand.NewPCG(3, 4))

	check := func(step int) {
		t.Helper()
		view, err := c.chain.Latest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, acct := range accounts {
			a := qc.Address(acct)
			got, err := v.available(ctx, view, a, qc.Address(token), qc.ContentionKey{})
			if err != nil {
				t.Fatal(err)
			}
			want, err := view.BalanceOf(ctx, token, acct)
			if err != nil {
				t.Fatal(err)
			}
			pending := func(e qc.Effects) bool {
				n, err := view.NonceOf(ctx, common.Address(e.Sender), e.NonceKey)
				if err != nil {
					t.Fatal(err)
				}
				return e.NonceSeq >= n
			}
			o := v.OverlayOf(a)
			entries := 0
			for _, e := range o.Debits {
				if e.Asset == qc.Address(token) {
					entries++
					if pending(e) {
						want.Sub(want, new(big.Int).SetUint64(e.Amount))
					}
				}
			}
			for _, f := range o.Fees {
				e := qc.Effects{Sender: f.Key.Sender, NonceKey: f.Key.NonceKey, NonceSeq: f.Key.NonceSeq}
				if f.Token == qc.Address(token) {
					entries++
					if pending(e) {
						want.Sub(want, f.Amount)
					}
				}
			}
			for _, e := range o.Credits {
				if e.Asset == qc.Address(token) {
					entries++
					if pending(e) {
						want.Add(want, new(big.Int).SetUint64(e.Amount))
					}
				}
			}
			if got.Cmp(want) != 0 {
				t.Fatalf("step %d: funds of %s %s, from its overlay %s", step, acct, got, want)
			}
			// Nothing pruned or evicted stays behind in the ledger.
			v.mu.Lock()
			held := 0
			for _, l := range v.ledger.accounts[ledgerKey{a, qc.Address(token)}] {
				held += len(l.live())
			}
			v.mu.Unlock()
			if held != entries {
				t.Fatalf("step %d: the ledger holds %d entries of %s, its overlay %d", step, held, acct, entries)
			}
		}
	}

	signed, learned := 0, 0
	for step := range 300 {
		switch op := rng.IntN(10); {
		case op < 4:
			k := payers[rng.IntN(len(payers))]
			from := addressOf(k)
			to := accounts[rng.IntN(len(accounts))]
			req := pay(k, next[from], to, big.NewInt(int64(rng.IntN(1_000_000)+1))).request(t)
			if _, err := v.Submit(ctx, req); err != nil {
				t.Fatalf("step %d: submit: %v", step, err)
			}
			next[from]++
			signed++
		case op < 7:
			k := strangers[rng.IntN(len(strangers))]
			from := addressOf(k)
			to := accounts[rng.IntN(len(accounts))]
			q := c.certify(t, pay(k, next[from], to, big.NewInt(int64(rng.IntN(1_000_000)+1))).request(t))
			next[from]++
			if err := v.LearnQC(q); err != nil {
				t.Fatalf("step %d: learn QC: %v", step, err)
			}
			learned++
		case op < 9:
			// The chain includes a few more of one sender's transactions.
			ks := append(append([]*ecdsa.PrivateKey{}, payers...), strangers...)
			from := addressOf(ks[rng.IntN(len(ks))])
			settled[from] = min(next[from], settled[from]+uint64(rng.IntN(4)))
			c.chain.SetNonce(from, [32]byte{}, settled[from])
		default:
			if _, _, err := v.Prune(ctx); err != nil {
				t.Fatal(err)
			}
		}
		check(step)
	}
	if signed < 50 || learned < 50 {
		t.Fatalf("only %d payments signed and %d QCs learned", signed, learned)
	}
}
