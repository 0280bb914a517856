package p2p

import (
	"bytes"
	"testing"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
)

// The decode messageID makes is the one the validator gets, for exactly
// that message, once; anything else decodes again.
func TestDecodeHandoff(t *testing.T) {
	f := newFixture(t, 4)
	ts := newTopicSet(testDomain, 16)
	req := testRequest(1)
	txHash := mustTxHash(t, req)
	eff := testEffects(1, 0x23)
	cert := f.signers[0].Sign(txHash, eff, 1)
	q := f.qcFrom(t, txHash, eff, 0, 1, 2)

	t.Run("tx", func(t *testing.T) {
		m := msgOn(ts.tx, marshal(t, req))
		ts.messageID(m)
		got, ok := take[*TxMessage](ts.decoded, m)
		if !ok || got.TxHash != txHash {
			t.Fatalf("take after messageID: %v %v", got, ok)
		}
		if _, ok := take[*TxMessage](ts.decoded, m); ok {
			t.Fatal("a decode was handed out twice")
		}
	})
	t.Run("certificate", func(t *testing.T) {
		m := msgOn(ts.bull, bulletinCert(t, cert))
		ts.messageID(m)
		got, ok := take[*BulletinItem](ts.decoded, m)
		if !ok || got.Cert == nil || got.Cert.Signature != cert.Signature {
			t.Fatalf("take after messageID: %+v %v", got, ok)
		}
	})
	t.Run("qc on its shard", func(t *testing.T) {
		m := msgOn(ts.qcTopicFor(eff.Recipient), marshal(t, fastpayv1.NewQuorumCertificate(q)))
		ts.messageID(m)
		if _, ok := take[*BulletinItem](ts.decoded, m); ok {
			t.Fatal("took a QC topic decode as a bulletin item")
		}
	})
	t.Run("same bytes, other message", func(t *testing.T) {
		data := bulletinCert(t, cert)
		ts.messageID(msgOn(ts.bull, data))
		if _, ok := take[*BulletinItem](ts.decoded, msgOn(ts.bull, bytes.Clone(data))); ok {
			t.Fatal("a decode was handed to a message it did not come from")
		}
	})
	t.Run("undecodable or large payloads are not kept", func(t *testing.T) {
		bad := msgOn(ts.bull, []byte{0xff, 0xff})
		ts.messageID(bad)
		if _, ok := ts.decoded.cache.Peek(bad); ok {
			t.Fatal("kept a failed decode")
		}
		big := testRequest(2)
		big.Tx.ClientRequestId = string(bytes.Repeat([]byte{'x'}, handoffMaxBytes))
		m := msgOn(ts.tx, marshal(t, big))
		ts.messageID(m)
		if _, ok := ts.decoded.cache.Peek(m); ok {
			t.Fatalf("kept a decode of %d bytes", len(m.GetData()))
		}
	})
	t.Run("bounded", func(t *testing.T) {
		for range handoffEntries + 10 {
			ts.messageID(msgOn(ts.tx, marshal(t, req)))
		}
		if n := ts.decoded.cache.Len(); n > handoffEntries {
			t.Fatalf("%d entries, bound %d", n, handoffEntries)
		}
	})
}
