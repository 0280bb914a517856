package epoch

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"

	"github.com/allegro-mesh/allegro/qc"
)

const chainID = 1337

// network holds validator keys by name and builds committees of them.
type network struct {
	keys map[string]ed25519.PrivateKey
}

func newNetwork(names ...string) *network {
	n := &network{keys: map[string]ed25519.PrivateKey{}}
	for _, name := range names {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, name)
		n.keys[name] = ed25519.NewKeyFromSeed(seed)
	}
	return n
}

func (n *network) id(name string) qc.ValidatorID {
	return qc.ValidatorID(n.keys[name].Public().(ed25519.PublicKey))
}

func (n *network) committee(t testing.TB, epoch uint64, names ...string) *qc.Committee {
	t.Helper()
	members := make([]qc.Member, len(names))
	for i, name := range names {
		members[i] = qc.Member{Name: name, ID: n.id(name)}
	}
	c, err := qc.NewCommittee(qc.Domain{ChainID: chainID, Epoch: epoch}, members)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (n *network) sign(name string, epoch uint64, tx qc.Hash, eff qc.Effects) qc.Certificate {
	return qc.NewSigner(n.keys[name], name, qc.Domain{ChainID: chainID, Epoch: epoch}).Sign(tx, eff, 1)
}

// close is name's close of epoch at height listing entries.
func (n *network) close(t testing.TB, name string, epoch, height uint64, entries ...qc.CloseEntry) *qc.Close {
	t.Helper()
	cl := &qc.Close{ChainID: chainID, Epoch: epoch, Height: height, Entries: entries}
	if err := qc.SignClose(n.keys[name], cl); err != nil {
		t.Fatal(err)
	}
	return cl
}

// own is name's entry for a transaction it signed in epoch.
func (n *network) own(name string, epoch uint64, tx qc.Hash, eff qc.Effects) qc.CloseEntry {
	return qc.CloseEntry{Request: tx[:], Cert: n.sign(name, epoch, tx, eff), CertEpoch: epoch}
}

// checkRequest stands for decoding a request: in these tests a request's
// bytes are its tx hash.
func checkRequest(request []byte, tx qc.Hash, _ qc.Effects) error {
	if !bytes.Equal(request, tx[:]) {
		return errors.New("request does not hash to the certificate's transaction")
	}
	return nil
}

func payment(seq uint64, amount uint64) qc.Effects {
	return qc.Effects{Sender: qc.Address{0xA1}, Recipient: qc.Address{0xB2}, Amount: amount, Asset: qc.Address{0x20}, NonceSeq: seq}
}

func txOf(tag string) qc.Hash { return qc.Hash([]byte(fmt.Sprintf("%-32s", tag))) }

func newHandover(t testing.TB, prev *qc.Committee, earlier ...*qc.Committee) *Handover {
	t.Helper()
	h, err := NewHandover(prev, func(e uint64) *qc.Committee {
		for _, c := range earlier {
			if c.Domain().Epoch == e {
				return c
			}
		}
		return nil
	}, checkRequest)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHandoverWaitsForQuorumOfClosesAndHead(t *testing.T) {
	net := newNetwork("a", "b", "c", "d")
	c1 := net.committee(t, 1, "a", "b", "c", "d")
	h := newHandover(t, c1)
	if h.Next() != 2 {
		t.Fatalf("next epoch %d", h.Next())
	}
	key, tx := payment(1, 5).ContentionKey(), txOf("t")
	add := func(cl *qc.Close) Adopted {
		t.Helper()
		got, err := h.AddClose(cl)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	add(net.close(t, "a", 1, 100))
	add(net.close(t, "b", 1, 120))
	// Two closes of four (quorum 3), and more than f members that never
	// close: the handover waits however far the head is.
	if h.Complete(1 << 40) {
		t.Fatal("complete with 2 of 3 closes")
	}
	if err := h.MaySign(1<<40, key, tx, false); !errors.Is(err, ErrPending) {
		t.Fatalf("sign before the handover: %v", err)
	}
	// A second close of a seat adds nothing.
	if got := add(net.close(t, "b", 1, 500)); got.New {
		t.Fatal("a seat's second close counted")
	}
	if h.Complete(1 << 40) {
		t.Fatal("one seat's two closes made a quorum")
	}
	add(net.close(t, "c", 1, 110))
	// A new member whose finalized head lags the closes' height waits.
	if h.Complete(119) {
		t.Fatal("complete with the head below the highest close height")
	}
	if err := h.MaySign(119, key, tx, false); !errors.Is(err, ErrPending) {
		t.Fatalf("sign with a lagging head: %v", err)
	}
	if !h.Complete(120) {
		t.Fatal("not complete with a quorum of closes and the head at the close height")
	}
	if err := h.MaySign(120, key, tx, false); err != nil {
		t.Fatalf("sign an unlisted key after the handover: %v", err)
	}
	if st := h.Status(); st.Closes != 3 || st.Quorum != 3 || st.CloseHeight != 120 {
		t.Fatalf("status %+v", st)
	}
}

func TestHandoverRefusesLyingCloses(t *testing.T) {
	net := newNetwork("a", "b", "c", "d", "outsider")
	c1 := net.committee(t, 1, "a", "b", "c", "d")
	cases := []struct {
		name   string
		mutate func(cl *qc.Close) *qc.Close
		want   error
	}{
		{"claims another signer", func(cl *qc.Close) *qc.Close { cl.Signer = net.id("b"); return cl }, qc.ErrCloseSignature},
		{"claims another epoch", func(cl *qc.Close) *qc.Close { cl.Epoch = 2; return cl }, qc.ErrCloseEpoch},
		{"signed for another epoch", func(*qc.Close) *qc.Close { return net.close(t, "a", 0, 100) }, qc.ErrCloseEpoch},
		{"another chain", func(cl *qc.Close) *qc.Close { cl.ChainID = 4217; return cl }, qc.ErrCloseChain},
		{"not a member", func(*qc.Close) *qc.Close { return net.close(t, "outsider", 1, 100) }, qc.ErrCloseSigner},
		{"height changed after signing", func(cl *qc.Close) *qc.Close { cl.Height = 1; return cl }, qc.ErrCloseSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandover(t, c1)
			cl := tc.mutate(net.close(t, "a", 1, 100, net.own("a", 1, txOf("t"), payment(1, 5))))
			if _, err := h.AddClose(cl); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if st := h.Status(); st.Closes != 0 || st.ListedKeys != 0 {
				t.Fatalf("a refused close changed the handover: %+v", st)
			}
		})
	}
}

// A QC of epoch 1 signed by a, b and c (c Byzantine). c closes without the
// key, or with a conflicting transaction it also signed; d never signed it.
// Whichever quorum of closes a new member adopts, the key stays held for the
// certified transaction.
func TestEveryQuorumOfClosesListsACertifiedKey(t *testing.T) {
	net := newNetwork("a", "b", "c", "d")
	c1 := net.committee(t, 1, "a", "b", "c", "d")
	eff := payment(7, 50)
	certified, other := txOf("certified"), txOf("other")
	key := eff.ContentionKey()
	otherEff := eff
	otherEff.Recipient = qc.Address{0xEE}

	for _, byzantine := range []string{"omits", "lists a conflict"} {
		closes := map[string]*qc.Close{
			"a": net.close(t, "a", 1, 10, net.own("a", 1, certified, eff)),
			"b": net.close(t, "b", 1, 10, net.own("b", 1, certified, eff)),
			"d": net.close(t, "d", 1, 10),
		}
		if byzantine == "omits" {
			closes["c"] = net.close(t, "c", 1, 10)
		} else {
			closes["c"] = net.close(t, "c", 1, 10, net.own("c", 1, other, otherEff))
		}
		for _, quorum := range [][]string{{"a", "b", "c"}, {"a", "b", "d"}, {"a", "c", "d"}, {"b", "c", "d"}} {
			t.Run(fmt.Sprintf("c %s, closes of %v", byzantine, quorum), func(t *testing.T) {
				h := newHandover(t, c1)
				for _, name := range quorum {
					if _, err := h.AddClose(closes[name]); err != nil {
						t.Fatal(err)
					}
				}
				if !h.Complete(10) {
					t.Fatal("not complete")
				}
				if err := h.MaySign(10, key, other, false); !errors.Is(err, ErrListed) {
					t.Fatalf("conflicting transaction: %v", err)
				}
				if err := h.MaySign(10, key, txOf("third"), true); !errors.Is(err, ErrListed) {
					t.Fatalf("an unlisted transaction: %v", err)
				}
				// The certified one may be signed: alone on the list, or
				// with its QC known when c's conflict is listed too.
				single := len(h.ListedFor(key)) == 1
				if err := h.MaySign(10, key, certified, false); (err == nil) != single {
					t.Fatalf("certified transaction without its QC (listed alone: %v): %v", single, err)
				}
				if err := h.MaySign(10, key, certified, true); err != nil {
					t.Fatalf("certified transaction with its QC: %v", err)
				}
			})
		}
	}
}

// A key certified late in epoch 1 and unsettled two epochs later: members
// of epoch 2 adopt it and carry it forward in their closes of epoch 2, so
// members of epoch 3, a changed committee, still hold it.
func TestListedKeyCarriedAcrossTwoBoundaries(t *testing.T) {
	net := newNetwork("a", "b", "c", "d", "e")
	c1 := net.committee(t, 1, "a", "b", "c", "d")
	c2 := net.committee(t, 2, "a", "b", "c", "e") // d left, e joined
	eff := payment(3, 70)
	tx := txOf("late")
	key := eff.ContentionKey()

	// Each member of epoch 2 adopts the closes of a, b and c.
	closes1 := []*qc.Close{
		net.close(t, "a", 1, 40, net.own("a", 1, tx, eff)),
		net.close(t, "b", 1, 40, net.own("b", 1, tx, eff)),
		net.close(t, "c", 1, 40, net.own("c", 1, tx, eff)),
	}
	var closes2 []*qc.Close
	for _, name := range []string{"a", "b", "e"} {
		h := newHandover(t, c1)
		for _, cl := range closes1 {
			if _, err := h.AddClose(cl); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.MaySign(40, key, txOf("thief"), false); !errors.Is(err, ErrListed) {
			t.Fatalf("%s in epoch 2: %v", name, err)
		}
		// Nobody re-signed it in epoch 2: the close carries epoch 1's
		// certificates forward.
		carried := h.CarryForward()
		if len(carried) != 1 || carried[0].CertEpoch != 1 {
			t.Fatalf("%s carries %+v", name, carried)
		}
		closes2 = append(closes2, net.close(t, name, 2, 80, carried...))
	}

	h3 := newHandover(t, c2, c1)
	for _, cl := range closes2 {
		got, err := h3.AddClose(cl)
		if err != nil {
			t.Fatal(err)
		}
		if got.Entries != 1 || got.Dropped != 0 {
			t.Fatalf("adopted %+v", got)
		}
	}
	if err := h3.MaySign(80, key, txOf("thief"), false); !errors.Is(err, ErrListed) {
		t.Fatalf("epoch 3, conflicting transaction: %v", err)
	}
	if err := h3.MaySign(80, key, tx, false); err != nil {
		t.Fatalf("epoch 3, the listed transaction: %v", err)
	}
	if got := h3.PendingDebit(eff.Sender); got != 70 {
		t.Fatalf("pending debit %d, want 70", got)
	}

	// Without the committee of epoch 1 the carried certificates cannot be
	// checked: they are dropped, not trusted.
	blind := newHandover(t, c2)
	got, err := blind.AddClose(closes2[0])
	if err != nil || got.Dropped != 1 || got.Entries != 0 {
		t.Fatalf("carried entry without its committee: %+v %v", got, err)
	}

	// Once the chain's nonce passed the key, it is released.
	if keys := h3.Keys(); len(keys) != 1 || keys[0] != key {
		t.Fatalf("listed keys %v", keys)
	}
	h3.Release(key)
	if err := h3.MaySign(80, key, txOf("next"), false); err != nil {
		t.Fatalf("released key: %v", err)
	}
	if got := h3.PendingDebit(eff.Sender); got != 0 {
		t.Fatalf("pending debit after release %d", got)
	}
}

func TestHandoverDropsEntriesThatDoNotVerify(t *testing.T) {
	net := newNetwork("a", "b", "c", "d")
	c1 := net.committee(t, 1, "a", "b", "c", "d")
	good := net.own("a", 1, txOf("good"), payment(1, 5))
	badRequest := net.own("a", 1, txOf("bad request"), payment(2, 5))
	badRequest.Request = []byte("something else")
	othersCert := net.own("b", 1, txOf("b's"), payment(3, 5))
	forged := net.own("a", 1, txOf("forged"), payment(4, 5))
	forged.Cert.Signature[0] ^= 1
	wrongEffects := net.own("a", 1, txOf("effects"), payment(5, 5))
	wrongEffects.Cert.Effects.Amount = 1_000

	h := newHandover(t, c1)
	got, err := h.AddClose(net.close(t, "a", 1, 10, badRequest, good, othersCert, forged, wrongEffects))
	if err != nil {
		t.Fatal(err)
	}
	if got.Entries != 1 || got.Dropped != 4 {
		t.Fatalf("adopted %+v, want 1 entry and 4 dropped", got)
	}
	if len(h.ListedFor(payment(1, 5).ContentionKey())) != 1 {
		t.Fatal("the good entry was not adopted")
	}
	for seq := uint64(2); seq <= 5; seq++ {
		if ls := h.ListedFor(payment(seq, 5).ContentionKey()); len(ls) != 0 {
			t.Fatalf("nonce %d adopted from an entry that does not verify", seq)
		}
	}
}

func TestNewHandoverNeedsItsParts(t *testing.T) {
	c1 := newNetwork("a").committee(t, 1, "a")
	if _, err := NewHandover(nil, nil, checkRequest); err == nil {
		t.Fatal("no committee accepted")
	}
	if _, err := NewHandover(c1, nil, nil); err == nil {
		t.Fatal("no request check accepted")
	}
}
