package p2p

import (
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestTopicNames(t *testing.T) {
	if got := TxTopic(4217, 3); got != "/allegro/4217/3/tx/2" {
		t.Errorf("TxTopic = %s", got)
	}
	if got := BulletinTopic(4217, 3); got != "/allegro/4217/3/bulletin/2" {
		t.Errorf("BulletinTopic = %s", got)
	}
	if got := QCTopic(4217, 3, 15); got != "/allegro/4217/3/qc/15/2" {
		t.Errorf("QCTopic = %s", got)
	}
	for _, name := range []string{TxTopic(1, 2), BulletinTopic(1, 2), QCTopic(1, 2, 0), QCTopic(1, 2, 255)} {
		info, err := ParseTopic(name)
		if err != nil {
			t.Fatalf("ParseTopic(%s): %v", name, err)
		}
		if info.Name() != name {
			t.Errorf("round trip %s -> %+v -> %s", name, info, info.Name())
		}
	}
	// Version 1 topics (one object per message) are not this protocol's.
	for _, bad := range []string{"", "/allegro/1/2/tx", "/allegro/1/2/tx/1", "/allegro/1/2/bulletin/1", "/allegro/1/2/qc/0/1",
		"/allegro/01/2/tx/2", "/allegro/1/2/qc/2", "/allegro/1/2/qc/256/2", "/allegro/1/2/mempool/2", "/other/1/2/tx/2",
		"/allegro/1/2/tx/2/x", "/allegro/-1/2/tx/2"} {
		if _, err := ParseTopic(bad); err == nil {
			t.Errorf("ParseTopic(%q) accepted", bad)
		}
	}
}

func TestQCShard(t *testing.T) {
	var r [20]byte
	for _, tc := range []struct {
		first  byte
		shards int
		want   int
	}{{0, 16, 0}, {15, 16, 15}, {16, 16, 0}, {0xff, 16, 15}, {0xff, 256, 255}, {7, 1, 0}, {7, 0, 0}} {
		r[0] = tc.first
		if got := QCShard(r, tc.shards); got != tc.want {
			t.Errorf("QCShard(%#x, %d) = %d, want %d", tc.first, tc.shards, got, tc.want)
		}
	}
}

func TestPeerIDValidatorIDRoundTrip(t *testing.T) {
	f := newFixture(t, 4)
	for i, s := range f.signers {
		pid, err := PeerIDFromValidatorID(s.ID())
		if err != nil {
			t.Fatal(err)
		}
		// The peer ID of the libp2p key made from the certificate key is
		// the same: a validator's identity is its certificate key.
		fromKey, err := peer.IDFromPrivateKey(libp2pKey(t, f.keys[i]))
		if err != nil {
			t.Fatal(err)
		}
		if pid != fromKey {
			t.Errorf("validator %d: %s != %s", i, pid, fromKey)
		}
		back, err := ValidatorIDFromPeerID(pid)
		if err != nil {
			t.Fatal(err)
		}
		if back != s.ID() {
			t.Errorf("validator %d: round trip gave %s", i, back.Hex())
		}
	}
	_, pub, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ValidatorIDFromPeerID(other); err == nil {
		t.Error("secp256k1 peer accepted as a validator id")
	}
}
