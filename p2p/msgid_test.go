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

	t.Run("digest of the whole payload", func(t *testing.T) {
		data := marshal(t, req)
		id := ts.messageID(msgOn(ts.tx, data))
		want := sha256.Sum256(append([]byte("allegro/gossip/1"), data...))
		if id[0] != idPrefixTx || !bytes.Equal([]byte(id[1:]), want[:]) {
			t.Fatalf("tx id %x, want 't' ‖ %x", id, want)
		}
		// Bytes tx_hash does not cover (parent QCs, client request id) make
		// another message: a copy with something invalid attached must not
		// share the genuine copy's id, or pubsub, which marks ids seen
		// before validating, would drop the genuine one as a duplicate.
		req2 := proto.Clone(req).(*fastpayv1.SubmitFastPayRequest)
		req2.ParentQcs = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(belowQuorumQC(f, txHash, eff))}
		if mustTxHash(t, req2) != txHash {
			t.Fatal("the variant must keep the tx_hash")
		}
		if ts.messageID(msgOn(ts.tx, marshal(t, req2))) == id {
			t.Error("a tx with other parent QCs shares the genuine tx's id")
		}
		req2 = proto.Clone(req).(*fastpayv1.SubmitFastPayRequest)
		req2.Tx.ClientRequestId = "retry-1"
		if ts.messageID(msgOn(ts.tx, marshal(t, req2))) == id {
			t.Error("client_request_id did not change the tx id")
		}
	})

	t.Run("qc subsets are different messages", func(t *testing.T) {
		q1 := f.qcFrom(t, txHash, eff, 0, 1, 2)
		q2 := f.qcFrom(t, txHash, eff, 1, 2, 3)
		if q1.Hash == q2.Hash {
			t.Fatal("test needs two different certificate subsets")
		}
		shard := ts.qcTopicFor(eff.Recipient)
		id1 := ts.messageID(msgOn(shard, marshal(t, fastpayv1.NewQuorumCertificate(q1))))
		id2 := ts.messageID(msgOn(shard, marshal(t, fastpayv1.NewQuorumCertificate(q2))))
		if id1 == id2 || id1[0] != idPrefixQC || id1[1] != 3 {
			t.Errorf("shard ids %x %x", id1, id2)
		}
		// The topic is bound into the id: the same QC on the bulletin and
		// on its shard, or on two shards, are different messages.
		b1 := ts.messageID(msgOn(ts.bull, marshal(t, fastpayv1.NewQuorumCertificate(q1))))
		if b1 == id1 {
			t.Error("bulletin and shard ids collide")
		}
		if other := ts.messageID(msgOn(ts.qc[4], marshal(t, fastpayv1.NewQuorumCertificate(q1)))); other == id1 {
			t.Error("ids on two shards collide")
		}
	})

	t.Run("cert ids cover every byte", func(t *testing.T) {
		c := f.cert(0, txHash, eff)
		id := ts.messageID(msgOn(ts.bull, bulletinCert(t, c)))
		c2 := c
		c2.CreatedUnixMillis++
		if ts.messageID(msgOn(ts.bull, bulletinCert(t, c2))) == id {
			t.Error("created time did not change the cert id")
		}
		c2 = c
		c2.Signature[0] ^= 1
		if ts.messageID(msgOn(ts.bull, bulletinCert(t, c2))) == id {
			t.Error("a forged signature shares the genuine certificate's id")
		}
	})

	t.Run("unknown topics bind the name", func(t *testing.T) {
		junk := []byte{0xff, 0xff, 0xff}
		idTx := ts.messageID(msgOn(ts.tx, junk))
		if ts.messageID(msgOn(ts.bull, junk)) == idTx {
			t.Error("ids collide across topics")
		}
		u1 := ts.messageID(msgOn("/other/1", junk))
		u2 := ts.messageID(msgOn("/other/2", junk))
		if u1 == u2 || u1[0] != idPrefixUnknown {
			t.Error("unknown-topic ids must bind the topic")
		}
		// The name is length-prefixed: moving a byte between name and
		// payload changes the id.
		if ts.messageID(msgOn("/other/1", junk)) == ts.messageID(msgOn("/other/", append([]byte("1"), junk...))) {
			t.Error("topic name and payload run into each other")
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
