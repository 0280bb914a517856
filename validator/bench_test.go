package validator

import (
	"context"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
)

// BenchmarkSubmit measures full validation of one payment: decode, sender
// recovery, state checks, the fsynced durable write and signing. Each
// iteration uses a fresh sender so nonces and funds never run out.
func BenchmarkSubmit(b *testing.B) {
	c := newCluster(b, 4)
	v := c.validator(b, 0, "")
	const senders = 4096
	reqs := make([]*fastpayv1.SubmitFastPayRequest, senders)
	for i := range reqs {
		key, _ := crypto.GenerateKey()
		c.chain.SetBalance(token, crypto.PubkeyToAddress(key.PublicKey), dollars(1_000_000))
		reqs[i] = pay(key, 0, bob, dollars(1)).request(b)
	}
	i := 0
	b.ResetTimer()
	for b.Loop() {
		if i == senders {
			b.StopTimer()
			c = newCluster(b, 4)
			v = c.validator(b, 0, "")
			for _, r := range reqs {
				p, _ := Decode(r, domain, 8)
				c.chain.SetBalance(token, [20]byte(p.Effects.Sender), dollars(1_000_000))
			}
			i = 0
			b.StartTimer()
		}
		if _, err := v.Submit(context.Background(), reqs[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDecode measures stage 1 alone (decode, recover, extract).
func BenchmarkDecode(b *testing.B) {
	req := pay(aliceKey, 0, bob, dollars(1)).request(b)
	for b.Loop() {
		if _, err := Decode(req, domain, 8); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAvailableBusySender measures the funds check of a sender with
// 2,000 payments pending on one nonce key, none settled: what every further
// payment of a busy wallet pays before it is signed.
func BenchmarkAvailableBusySender(b *testing.B) {
	c := newCluster(b, 4)
	v := c.validator(b, 0, "")
	const pending = 2000
	c.chain.SetBalance(token, alice, dollars(1_000_000))
	ctx := context.Background()
	for i := range pending {
		if _, err := v.Submit(ctx, pay(aliceKey, uint64(i), bob, dollars(1)).request(b)); err != nil {
			b.Fatal(err)
		}
	}
	view, err := c.chain.Latest(ctx)
	if err != nil {
		b.Fatal(err)
	}
	next := pay(aliceKey, pending, bob, dollars(1)).request(b)
	p, err := Decode(next, domain, 8)
	if err != nil {
		b.Fatal(err)
	}
	want := new(big.Int).Sub(dollars(1_000_000), dollars(pending))
	for b.Loop() {
		got, err := v.available(ctx, view, p.Effects.Sender, p.Effects.Asset, p.Effects.ContentionKey())
		if err != nil {
			b.Fatal(err)
		}
		if got.Cmp(want) > 0 {
			b.Fatalf("available %s, more than the %s left after the pending payments", got, want)
		}
	}
}
