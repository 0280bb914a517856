package validator

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// TestCheckConflict: a block builder asks, for a raw transaction, whether
// including it would defeat a certified payment.
func TestCheckConflict(t *testing.T) {
	type setup struct {
		c *cluster
		v *Validator
	}
	certifiedByOthers := func(s setup) {
		if err := s.v.LearnQC(s.c.certify(t, pay(aliceKey, 0, bob, dollars(10)).request(t))); err != nil {
			t.Fatal(err)
		}
	}
	signedHere := func(s setup) {
		if _, err := s.v.Submit(context.Background(), pay(aliceKey, 0, bob, dollars(10)).request(t)); err != nil {
			t.Fatal(err)
		}
	}
	notPayment := pay(aliceKey, 1, bob, dollars(1))
	notPayment.calldata = []byte{0xde, 0xad, 0xbe, 0xef}
	daveCall := pay(daveKey, 0, bob, dollars(1))
	daveCall.calldata = []byte{0xde, 0xad, 0xbe, 0xef}
	cases := []struct {
		name      string
		setup     func(setup)
		raw       *payment
		certified bool
		want      []string
	}{
		{"nothing known", nil, pay(aliceKey, 0, carol, dollars(1)), false, nil},
		{"the certified transaction", certifiedByOthers, pay(aliceKey, 0, bob, dollars(10)), true, nil},
		{"another transaction for a certified key", certifiedByOthers, pay(aliceKey, 0, carol, dollars(1)), false, []string{ConflictCertifiedKey}},
		{"another transaction for a certified key, spending it too", certifiedByOthers, pay(aliceKey, 0, carol, dollars(10)), false, []string{ConflictCertifiedKey, ConflictOverdraw}},
		{"the transaction signed here", signedHere, pay(aliceKey, 0, bob, dollars(10)), true, nil},
		{"another transaction for a key signed here", signedHere, pay(aliceKey, 0, carol, dollars(1)), false, []string{ConflictSignedKey}},
		// Alice holds 15; 10 are promised to Bob, less one fee for the signed one.
		{"a later nonce within what is left", certifiedByOthers, pay(aliceKey, 1, carol, dollarsLess(5, testFee)), false, nil},
		{"a later nonce spending what is promised", certifiedByOthers, pay(aliceKey, 1, carol, dollarsLess(5, testFee-1)), false, []string{ConflictOverdraw}},
		{"not a payment, from a sender with promises", certifiedByOthers, notPayment, false, []string{ConflictUnknownSpend}},
		{"not a payment, from anyone else", certifiedByOthers, daveCall, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 4)
			s := setup{c: c, v: c.validator(t, 0, "")}
			if tc.setup != nil {
				tc.setup(s)
			}
			r, err := s.v.CheckConflict(context.Background(), tc.raw.rawTx(t))
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, cf := range r.Conflicts {
				kinds = append(kinds, cf.Kind)
				if cf.Message == "" {
					t.Errorf("conflict %s without a message", cf.Kind)
				}
			}
			if r.Certified != tc.certified || !slices.Equal(kinds, tc.want) {
				t.Fatalf("certified %v, conflicts %v; want %v, %v (%+v)", r.Certified, kinds, tc.certified, tc.want, r.Conflicts)
			}
			if r.Key.Sender != qc.Address(addressOf(tc.raw.key)) || r.Key.NonceSeq != tc.raw.nonce || r.ChainTxHash == (common.Hash{}) {
				t.Errorf("report %+v", r)
			}
		})
	}
}

// TestCheckConflictChained: a recipient who spent a certified credit in a
// certified child cannot take the same funds out on chain directly.
func TestCheckConflictChained(t *testing.T) {
	c := newCluster(t, 4)
	v := c.validator(t, 0, "")
	parent := c.certify(t, pay(aliceKey, 0, bob, dollars(10)).request(t))
	child := pay(bobKey, 0, carol, dollarsLess(15, testFee))
	child.parents = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(parent)}
	child.parentHash = parent.Hash[:]
	if err := v.LearnQC(parent); err != nil {
		t.Fatal(err)
	}
	if err := v.LearnQC(c.certify(t, child.request(t))); err != nil {
		t.Fatal(err)
	}
	// Bob's 5 on chain are all promised to Carol (with the 10 he received).
	r, err := v.CheckConflict(context.Background(), pay(bobKey, 1, alice, dollars(1)).rawTx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Conflicts) != 1 || r.Conflicts[0].Kind != ConflictOverdraw || r.Conflicts[0].Account != bob {
		t.Fatalf("conflicts %+v", r.Conflicts)
	}
	// The child itself is what the QC promises.
	r, err = v.CheckConflict(context.Background(), child.rawTx(t))
	if err != nil || !r.Certified || len(r.Conflicts) != 0 {
		t.Fatalf("the certified child: %+v %v", r, err)
	}
}

func TestCheckConflictRefusesGarbage(t *testing.T) {
	c := newCluster(t, 4)
	v := c.validator(t, 0, "")
	other := pay(aliceKey, 0, bob, dollars(1))
	other.chainID = 4217
	for name, raw := range map[string][]byte{"junk": {0x02, 0xff}, "empty": nil, "other chain": other.rawTx(t)} {
		if _, err := v.CheckConflict(context.Background(), raw); !errors.Is(err, ErrNotTransaction) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
