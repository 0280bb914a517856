package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/allegro-mesh/allegro/qc"
)

func entryRouting(c *Config) { c.CertRouting = CertRoutingEntry }

func certProtocol() string { return string(CertProtocol(testDomain.ChainID, testDomain.Epoch)) }

// TestCertStreamDelivers: certificates sent to a member reach its bulletin
// handler, named as the certificate stream's, and nobody else's.
func TestCertStreamDelivers(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4, tweak: entryRouting})
	entry := c.validators[0]
	if !entry.RoutesCertificatesToEntry() {
		t.Fatal("cert_routing entry: RoutesCertificatesToEntry is false")
	}
	var keys []string
	for i := 1; i < 4; i++ {
		for seq := range uint64(3) {
			eff := testEffects(100+seq, 7)
			cert := c.f.cert(i, mustTxHash(t, testRequest(100+seq)), eff)
			if err := c.validators[i].SendCertificate(context.Background(), entry.selfID, cert); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, certKey(&cert))
		}
	}
	waitFor(t, 10*time.Second, "the entry's certificates", func() string {
		if !entry.bull.hasAll(keys) {
			return fmt.Sprintf("%d of %d delivered", entry.bull.count(func(Delivery[*BulletinItem]) bool { return true }), len(keys))
		}
		return ""
	})
	if n := entry.bull.count(func(d Delivery[*BulletinItem]) bool { return d.Topic != certProtocol() }); n != 0 {
		t.Errorf("%d deliveries not named as the certificate stream's", n)
	}
	// Every frame is acknowledged: nothing stays outstanding, nothing
	// falls back to the bulletin.
	waitFor(t, 10*time.Second, "the frames acknowledged", func() string {
		for _, v := range c.validators[1:] {
			if n := v.outstandingCertFrames(entry.ID()); n != 0 {
				return fmt.Sprintf("%s: %d frames unacknowledged", v.name, n)
			}
		}
		return ""
	})
	for _, v := range c.validators[1:] {
		if got := metricValue(t, v.reg, "allegro_p2p_cert_stream_frames_total", map[string]string{"direction": "sent", "result": "fallback"}); got != 0 {
			t.Errorf("%s: %v fallbacks to the bulletin", v.name, got)
		}
		if n := v.bull.count(func(Delivery[*BulletinItem]) bool { return true }); n != 0 {
			t.Errorf("%s received %d certificates meant for the entry", v.name, n)
		}
		if got := metricValue(t, v.reg, "allegro_p2p_cert_stream_frames_total", map[string]string{"direction": "sent", "result": "ok"}); got < 1 {
			t.Errorf("%s: no certificate frame counted as sent", v.name)
		}
	}
	// Sending to oneself or to a non-member is refused.
	own := c.f.cert(1, mustTxHash(t, testRequest(1)), testEffects(1, 7))
	if err := c.validators[1].SendCertificate(context.Background(), c.validators[1].selfID, own); err == nil {
		t.Error("a certificate sent to this node itself was accepted")
	}
	if err := c.validators[1].SendCertificate(context.Background(), outsiderID(0), own); err == nil {
		t.Error("a certificate sent to a non-member was accepted")
	}
}

// TestCertStreamFallsBackToBulletin: certificates for a member that cannot
// be reached, or that does not acknowledge them, are published on the
// bulletin, so none is lost.
func TestCertStreamFallsBackToBulletin(t *testing.T) {
	cases := []struct {
		name   string
		breaks func(t *testing.T, entry *node)
	}{
		{"entry stopped", func(t *testing.T, entry *node) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := entry.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		// A crashed entry whose connection still looks open, or one that
		// reads and drops: the stream takes the frame, no acknowledgement
		// comes back.
		{"entry never acknowledges", func(t *testing.T, entry *node) {
			entry.Host().LibP2P().SetStreamHandler(CertProtocol(testDomain.ChainID, testDomain.Epoch), func(st network.Stream) {
				_, _ = io.Copy(io.Discard, st)
			})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, clusterOpts{validators: 4, tweak: entryRouting})
			entry, sender := c.validators[0], c.validators[1]
			tc.breaks(t, entry)
			cert := c.f.cert(1, mustTxHash(t, testRequest(7)), testEffects(7, 3))
			if err := sender.SendCertificate(context.Background(), entry.selfID, cert); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 15*time.Second, "the certificate on the bulletin", func() string {
				for _, v := range c.validators[2:] {
					if !v.bull.has(certKey(&cert)) {
						return v.name + " lacks it"
					}
				}
				return ""
			})
			if got := metricValue(t, sender.reg, "allegro_p2p_cert_stream_frames_total", map[string]string{"direction": "sent", "result": "fallback"}); got < 1 {
				t.Error("the fallback was not counted")
			}
			if n := sender.outstandingCertFrames(entry.ID()); n != 0 {
				t.Errorf("%d frames still outstanding after the fallback", n)
			}
		})
	}
}

// TestCertStreamStopsWithQuietEntry: a sender's mesh stops at once while
// its stream to a member is open and that member stays quiet: it
// acknowledged everything and never ends the stream or the connection, as
// a member across a partition, or crashed with its connection open, does
// not. (A running member's mesh would close the connection when the
// sender's pubsub streams end, which frees the stream on its own.) Before,
// the stop waited out its deadline for the acknowledgement reader, and an
// epoch change then found the old epoch's store still locked.
func TestCertStreamStopsWithQuietEntry(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4, tweak: entryRouting})
	entry, sender := c.validators[0], c.validators[1]
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelStop()
	if err := entry.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	// The entry's identity on a bare host: it acknowledges the frame and
	// then holds the stream open until the test ends.
	quiet, err := libp2p.New(libp2p.Identity(libp2pKey(t, c.f.keys[0])), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	release := make(chan struct{})
	defer close(release)
	quiet.SetStreamHandler(CertProtocol(testDomain.ChainID, testDomain.Epoch), func(st network.Stream) {
		if _, err := readCertFrame(bufio.NewReader(st)); err != nil {
			return
		}
		if _, err := st.Write(binary.AppendUvarint(nil, 1)); err != nil {
			return
		}
		<-release
	})
	connectCtx, cancelConnect := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelConnect()
	if err := sender.Host().LibP2P().Connect(connectCtx, peer.AddrInfo{ID: quiet.ID(), Addrs: quiet.Addrs()}); err != nil {
		t.Fatal(err)
	}
	cert := c.f.cert(1, mustTxHash(t, testRequest(8)), testEffects(8, 3))
	if err := sender.SendCertificate(context.Background(), entry.selfID, cert); err != nil {
		t.Fatal(err)
	}
	sent := func(result string) float64 {
		return metricValue(t, sender.reg, "allegro_p2p_cert_stream_frames_total", map[string]string{"direction": "sent", "result": result})
	}
	waitFor(t, 10*time.Second, "the frame written and acknowledged", func() string {
		if n := sender.outstandingCertFrames(quiet.ID()); sent("ok") < 1 || n != 0 {
			return fmt.Sprintf("%v frames written, %d outstanding", sent("ok"), n)
		}
		return ""
	})
	if sent("fallback") > 0 {
		t.Fatal("the certificate went to the bulletin: the stream was not used")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sender.Stop(ctx); err != nil {
		t.Fatalf("stop with a stream open to a quiet member: %v", err)
	}
}

// outstandingCertFrames counts the frames sent to a member and not yet
// acknowledged.
func (m *Mesh) outstandingCertFrames(to peer.ID) int {
	m.mu.Lock()
	s := m.certSenders[to]
	m.mu.Unlock()
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.unacked)
}

// writeFrames writes length-prefixed frames on a new certificate stream
// from one node to another and reports how many frames the receiver
// acknowledged and whether it reset the stream (a read then fails with
// something other than a clean EOF).
func writeFrames(t *testing.T, from, to *node, frames ...[]byte) (acked uint64, reset bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := from.Host().LibP2P().NewStream(ctx, to.ID(), CertProtocol(testDomain.ChainID, testDomain.Epoch))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, f := range frames {
		if _, err := st.Write(f); err != nil {
			return 0, true
		}
	}
	if err := st.CloseWrite(); err != nil {
		return 0, true
	}
	// The receiver acknowledges what it took, then closes its side.
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	acks, err := io.ReadAll(st)
	for len(acks) > 0 {
		n, k := binary.Uvarint(acks)
		if k <= 0 {
			t.Fatalf("malformed acknowledgement %x", acks)
		}
		acked += n
		acks = acks[k:]
	}
	return acked, err != nil
}

func lengthPrefixed(data []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(data))), data...)
}

// TestCertStreamRejects: each provably bad frame resets the stream, counts
// against its sender, and delivers nothing, not even its valid
// certificates; a non-member's stream is refused outright; and a member
// past the strike limit has its streams refused.
func TestCertStreamRejects(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4, lights: 1, tweak: entryRouting})
	entry, sender := c.validators[0], c.validators[1]
	f := c.f
	valid := func(seq uint64) qc.Certificate {
		return f.cert(1, mustTxHash(t, testRequest(seq)), testEffects(seq, 5))
	}
	bad := valid(3)
	bad.Signature[0] ^= 1
	q := f.qcFrom(t, mustTxHash(t, testRequest(9)), testEffects(9, 5), 0, 1, 2)
	cases := []struct {
		name  string
		frame func() []byte
		certs []qc.Certificate // must not be delivered
	}{
		{"garbage", func() []byte { return lengthPrefixed([]byte("not a frame at all")) }, nil},
		{"oversized", func() []byte { return binary.AppendUvarint(nil, MaxFrameSize+1) }, nil},
		{"truncated", func() []byte {
			return lengthPrefixed(encBulletin(t, f.hdr(1, 1), []qc.Certificate{valid(1)}, nil, nil))[:20]
		}, []qc.Certificate{valid(1)}},
		{"another signer's certificate", func() []byte {
			return lengthPrefixed(encBulletin(t, f.hdr(1, 2), []qc.Certificate{valid(4), f.cert(2, mustTxHash(t, testRequest(4)), testEffects(4, 5))}, nil, nil))
		}, []qc.Certificate{valid(4)}},
		{"another publisher", func() []byte {
			return lengthPrefixed(encBulletin(t, f.hdr(2, 3), []qc.Certificate{valid(5)}, nil, nil))
		}, []qc.Certificate{valid(5)}},
		{"one bad signature among valid ones", func() []byte {
			return lengthPrefixed(encBulletin(t, f.hdr(1, 4), []qc.Certificate{valid(1), valid(2), bad}, nil, nil))
		}, []qc.Certificate{valid(1), valid(2)}},
		{"a QC", func() []byte {
			return lengthPrefixed(encBulletin(t, f.hdr(1, 5), []qc.Certificate{valid(6)}, []*qc.QC{q}, nil))
		}, []qc.Certificate{valid(6)}},
	}
	rejects := func() float64 {
		return metricValue(t, entry.reg, "allegro_p2p_cert_stream_frames_total", map[string]string{"direction": "received", "result": "reject"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			entry.certStrikes.mu.Lock()
			clear(entry.certStrikes.peers)
			entry.certStrikes.mu.Unlock()
			before := rejects()
			if _, reset := writeFrames(t, sender, entry, tc.frame()); !reset {
				t.Error("the stream was not reset")
			}
			waitFor(t, 5*time.Second, "the reject counted", func() string {
				if rejects() <= before {
					return "not yet"
				}
				return ""
			})
			for _, cert := range tc.certs {
				if entry.bull.has(certKey(&cert)) {
					t.Errorf("certificate of %s delivered from a rejected frame", cert.TxHash)
				}
			}
		})
	}

	t.Run("valid frame", func(t *testing.T) {
		cert := valid(50)
		if acked, reset := writeFrames(t, sender, entry, lengthPrefixed(encBulletin(t, f.hdr(1, 50), []qc.Certificate{cert}, nil, nil))); reset || acked != 1 {
			t.Errorf("a valid frame: reset %v, %d frames acknowledged", reset, acked)
		}
		waitFor(t, 5*time.Second, "the certificate", func() string {
			if !entry.bull.has(certKey(&cert)) {
				return "not delivered"
			}
			return ""
		})
		// The same certificate again, in a new frame: nothing new, so
		// ignored, without a strike and without delivering it twice.
		before := rejects()
		if acked, reset := writeFrames(t, sender, entry, lengthPrefixed(encBulletin(t, f.hdr(1, 51), []qc.Certificate{cert}, nil, nil))); reset || acked != 1 {
			t.Errorf("a repeat: reset %v, %d frames acknowledged", reset, acked)
		}
		waitFor(t, 5*time.Second, "the repeat ignored", func() string {
			if entry.Stats().CertStream.Ignored == 0 {
				return "not yet"
			}
			return ""
		})
		if rejects() != before || entry.bull.times(certKey(&cert)) != 1 {
			t.Errorf("repeat: %v rejects (was %v), delivered %d times", rejects(), before, entry.bull.times(certKey(&cert)))
		}
	})

	t.Run("reset mid-frame", func(t *testing.T) {
		// A stream that fails halfway (the sender's write timed out, its
		// connection dropped) proves nothing against the sender.
		entry.certStrikes.mu.Lock()
		clear(entry.certStrikes.peers)
		entry.certStrikes.mu.Unlock()
		before := rejects()
		inbound := func() int {
			entry.certStrikes.mu.Lock()
			defer entry.certStrikes.mu.Unlock()
			return entry.certStrikes.inbound[sender.ID()]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := sender.Host().LibP2P().NewStream(ctx, entry.ID(), CertProtocol(testDomain.ChainID, testDomain.Epoch))
		if err != nil {
			t.Fatal(err)
		}
		frame := lengthPrefixed(encBulletin(t, f.hdr(1, 70), []qc.Certificate{valid(70)}, nil, nil))
		if _, err := st.Write(frame[:len(frame)/2]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the entry reading the stream", func() string {
			if inbound() == 0 {
				return "not admitted yet"
			}
			return ""
		})
		_ = st.Reset()
		waitFor(t, 5*time.Second, "the entry done with the stream", func() string {
			if inbound() != 0 {
				return "still reading"
			}
			return ""
		})
		entry.certStrikes.mu.Lock()
		r := entry.certStrikes.peers[sender.ID()]
		entry.certStrikes.mu.Unlock()
		if rejects() != before || r != nil {
			t.Errorf("a reset stream counted against its sender: %v rejects (was %v), strikes %+v", rejects(), before, r)
		}
	})

	t.Run("non-member", func(t *testing.T) {
		light := c.lights[0]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := light.Host().LibP2P().NewStream(ctx, entry.ID(), CertProtocol(testDomain.ChainID, testDomain.Epoch))
		if err != nil {
			return // refused at negotiation: light clients do not even get a stream
		}
		defer st.Close()
		if !refused(st) {
			t.Error("a non-member's certificate stream was not reset")
		}
	})

	t.Run("strikes", func(t *testing.T) {
		entry.certStrikes.mu.Lock()
		clear(entry.certStrikes.peers)
		entry.certStrikes.mu.Unlock()
		for i := range certStreamStrikes {
			if _, reset := writeFrames(t, sender, entry, lengthPrefixed([]byte{0xff, byte(i)})); !reset {
				t.Fatalf("bad frame %d: stream not reset", i)
			}
		}
		cert := valid(60)
		waitFor(t, 5*time.Second, "the sender blocked", func() string {
			entry.certStrikes.mu.Lock()
			defer entry.certStrikes.mu.Unlock()
			if r := entry.certStrikes.peers[sender.ID()]; r == nil || !time.Now().Before(r.blockedUntil) {
				return "not blocked"
			}
			return ""
		})
		if _, reset := writeFrames(t, sender, entry, lengthPrefixed(encBulletin(t, f.hdr(1, 60), []qc.Certificate{cert}, nil, nil))); !reset {
			t.Error("a blocked member's stream was not reset")
		}
		if entry.bull.has(certKey(&cert)) {
			t.Error("a blocked member's certificate was delivered")
		}
		if got := metricValue(t, entry.reg, "allegro_p2p_cert_stream_frames_total", map[string]string{"direction": "received", "result": "refused"}); got < 1 {
			t.Error("the refused stream was not counted")
		}
	})
}

// refused reports whether the receiver resets st without reading a frame.
func refused(st network.Stream) bool {
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := st.Read(make([]byte, 1))
	return err != nil && err != io.EOF
}

// TestTxRepeatReported: a member's tx frame carrying a transaction
// accepted before is reported with its publisher (another entry for the
// transaction); the first frame is not.
func TestTxRepeatReported(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 3})
	ctx := testCtx(t, 30*time.Second)
	var mu sync.Mutex
	var got []string
	c.validators[2].OnTxRepeat(func(publisher qc.ValidatorID, txs []qc.Hash) {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range txs {
			got = append(got, publisher.Hex()+" "+h.Hex())
		}
	})
	reported := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
	req := testRequest(40)
	h := mustTxHash(t, req)
	if err := c.validators[0].PublishTx(ctx, req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the transaction", func() string {
		if !c.validators[2].txs.has(txKey(h)) {
			return "not delivered"
		}
		return ""
	})
	if r := reported(); len(r) != 0 {
		t.Fatalf("the first frame was reported as a repeat: %v", r)
	}
	if err := c.validators[1].PublishTx(ctx, req); err != nil {
		t.Fatal(err)
	}
	want := c.f.signers[1].ID().Hex() + " " + h.Hex()
	waitFor(t, 10*time.Second, "the repeat reported", func() string {
		for _, r := range reported() {
			if r == want {
				return ""
			}
		}
		return fmt.Sprintf("reported %v", reported())
	})
	if n := c.validators[2].txs.times(txKey(h)); n != 1 {
		t.Errorf("the transaction was delivered %d times", n)
	}
}
