package p2p

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

func msgOn(topic string, data []byte) *pb.Message { return &pb.Message{Topic: &topic, Data: data} }

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bulletinCert(t testing.TB, c qc.Certificate) []byte {
	return marshal(t, &fastpayv1.BulletinMessage{Item: &fastpayv1.BulletinMessage_Cert{Cert: fastpayv1.NewValidatorCertificate(&c)}})
}

func bulletinQC(t testing.TB, q *qc.QC) []byte {
	return marshal(t, &fastpayv1.BulletinMessage{Item: &fastpayv1.BulletinMessage_Qc{Qc: fastpayv1.NewQuorumCertificate(q)}})
}

func TestMessageIDs(t *testing.T) {
	f := newFixture(t, 4)
	ts := newTopicSet(testDomain, 16)
	req := testRequest(1)
	txHash := mustTxHash(t, req)
	eff := testEffects(1, 0x23) // shard 3

	t.Run("tx id is tx_hash", func(t *testing.T) {
		id := ts.messageID(msgOn(ts.tx, marshal(t, req)))
		if id != TxMessageID(txHash) || !bytes.Equal([]byte(id[1:]), txHash[:]) {
			t.Fatalf("tx id %x, tx_hash %x", id, txHash)
		}
		// Bytes the hash does not cover (parent QCs, client request id) do
		// not change the id: it names the transaction.
		req2 := proto.Clone(req).(*fastpayv1.SubmitFastPayRequest)
		req2.Tx.ClientRequestId = "retry-1"
		if ts.messageID(msgOn(ts.tx, marshal(t, req2))) != id {
			t.Error("client_request_id changed the tx id")
		}
	})

	t.Run("qc subsets deduplicate", func(t *testing.T) {
		q1 := f.qcFrom(t, txHash, eff, 0, 1, 2)
		q2 := f.qcFrom(t, txHash, eff, 1, 2, 3)
		if q1.Hash == q2.Hash {
			t.Fatal("test needs two different certificate subsets")
		}
		shard := ts.qcTopicFor(eff.Recipient)
		id1 := ts.messageID(msgOn(shard, marshal(t, fastpayv1.NewQuorumCertificate(q1))))
		id2 := ts.messageID(msgOn(shard, marshal(t, fastpayv1.NewQuorumCertificate(q2))))
		if id1 != id2 || id1 != ShardQCMessageID(3, txHash) {
			t.Errorf("shard ids differ: %x %x", id1, id2)
		}
		b1 := ts.messageID(msgOn(ts.bull, bulletinQC(t, q1)))
		b2 := ts.messageID(msgOn(ts.bull, bulletinQC(t, q2)))
		if b1 != b2 || b1 != BulletinQCMessageID(txHash) {
			t.Errorf("bulletin ids differ: %x %x", b1, b2)
		}
		// The topic is bound into the id: the same QC on the bulletin and
		// on its shard, or on two shards, are different messages.
		if b1 == id1 {
			t.Error("bulletin and shard ids collide")
		}
		if other := ts.messageID(msgOn(ts.qc[4], marshal(t, fastpayv1.NewQuorumCertificate(q1)))); other == id1 {
			t.Error("ids on two shards collide")
		}
		want := sha256.Sum256(append([]byte("qc"), txHash[:]...))
		if !bytes.Equal([]byte(b1[1:]), want[:]) {
			t.Error(`QC digest is not H("qc" ‖ tx_hash)`)
		}
	})

	t.Run("cert ids differ by signer", func(t *testing.T) {
		ids := make(map[string]int)
		for i := range 4 {
			c := f.cert(i, txHash, eff)
			id := ts.messageID(msgOn(ts.bull, bulletinCert(t, c)))
			if id != CertMessageID(&c) {
				t.Fatalf("signer %d: id mismatch", i)
			}
			if j, dup := ids[id]; dup {
				t.Fatalf("signers %d and %d share an id", i, j)
			}
			ids[id] = i
		}
		// The same certificate with a different (unsigned) creation time is
		// the same message; a forged signature is not.
		c := f.cert(0, txHash, eff)
		c2 := c
		c2.CreatedUnixMillis++
		if CertMessageID(&c) != CertMessageID(&c2) {
			t.Error("created time changed the cert id")
		}
		c2.Signature[0] ^= 1
		if CertMessageID(&c) == CertMessageID(&c2) {
			t.Error("a forged signature shares the genuine certificate's id")
		}
		// A cert and a QC for the same tx never collide.
		if CertMessageID(&c) == BulletinQCMessageID(txHash) {
			t.Error("cert and qc ids collide")
		}
	})

	t.Run("undecodable and unknown", func(t *testing.T) {
		junk := []byte{0xff, 0xff, 0xff}
		idTx := ts.messageID(msgOn(ts.tx, junk))
		want := sha256.Sum256(append([]byte("invalid"), junk...))
		if idTx[0] != idPrefixTx || !bytes.Equal([]byte(idTx[1:]), want[:]) {
			t.Errorf("invalid tx id %x", idTx)
		}
		if ts.messageID(msgOn(ts.bull, junk)) == idTx {
			t.Error("invalid ids collide across topics")
		}
		u1 := ts.messageID(msgOn("/other/1", junk))
		u2 := ts.messageID(msgOn("/other/2", junk))
		if u1 == u2 || u1[0] != idPrefixUnknown {
			t.Error("unknown-topic ids must bind the topic")
		}
	})
}

func TestDecoders(t *testing.T) {
	big := make([]byte, MaxTxMessageSize+1)
	if _, err := DecodeTx(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeTx(oversize) = %v", err)
	}
	if _, err := DecodeBulletin(big[:MaxBulletinMessageSize+1]); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeBulletin(oversize) = %v", err)
	}
	if _, err := DecodeQC(big[:MaxQCMessageSize+1]); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeQC(oversize) = %v", err)
	}
	if _, err := DecodeTx([]byte{0xff}); !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeTx(junk) = %v", err)
	}
	if _, err := DecodeTx(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeTx(no tx) = %v", err)
	}
	if _, err := DecodeBulletin(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeBulletin(empty) = %v", err)
	}
	noExpiry := testRequest(1)
	noExpiry.Tx.Expiry = nil
	if _, err := decodeTxMessage(marshal(t, noExpiry)); !errors.Is(err, ErrMalformed) {
		t.Errorf("tx without expiry = %v", err)
	}
	if _, err := decodeQCMessage(marshal(t, &fastpayv1.QuorumCertificate{TxHash: make([]byte, 32), EffectsHash: make([]byte, 32), QcHash: make([]byte, 32)})); !errors.Is(err, ErrMalformed) {
		t.Errorf("qc without certs = %v", err)
	}
	req := testRequest(9)
	tx, err := decodeTxMessage(marshal(t, req))
	if err != nil || tx.TxHash != mustTxHash(t, req) || !proto.Equal(tx.Request, req) {
		t.Errorf("decodeTxMessage = %+v, %v", tx, err)
	}
}
