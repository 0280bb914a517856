package sidecar

import (
	"bytes"
	"testing"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// TestSyncBudgetKeepsBatchReadable: QCs of a large committee (201
// certificates each) offered until the budget refuses one make a batch
// that the peer's reader accepts, while the same batch with the refused QC
// added is refused by it whole.
func TestSyncBudgetKeepsBatchReadable(t *testing.T) {
	const signers = 201
	bigQC := func(i int) *fastpayv1.QuorumCertificate {
		q := &qc.QC{TxHash: qc.Hash{byte(i), byte(i >> 8)}, Threshold: signers, Epoch: 1}
		for j := range signers {
			c := qc.Certificate{Signer: qc.ValidatorID{byte(j), byte(j >> 8)}, SignerName: "validator", TxHash: q.TxHash,
				Effects: qc.Effects{Amount: uint64(i), NonceSeq: uint64(j)}, CreatedUnixMillis: uint64(i)}
			for k := range c.Signature {
				c.Signature[k] = byte(i + j + k)
			}
			q.Certs = append(q.Certs, c)
		}
		return fastpayv1.NewQuorumCertificate(q)
	}
	budget := newSyncBudget()
	batch := &fastpayv1.SyncBatch{}
	var refused *fastpayv1.QuorumCertificate
	for i := range maxSyncQCs {
		wire := bigQC(i)
		if !budget.take(wire) {
			refused = wire
			break
		}
		batch.Qcs = append(batch.Qcs, wire)
	}
	if refused == nil {
		t.Fatalf("%d QCs of %d certificates fit in one batch: the budget was never reached", maxSyncQCs, signers)
	}
	var buf bytes.Buffer
	if err := writeSyncBatch(&buf, batch); err != nil {
		t.Fatal(err)
	}
	var got fastpayv1.SyncBatch
	if err := readSyncBatch(bytes.NewReader(buf.Bytes()), &got); err != nil {
		t.Fatalf("a batch within the budget (%d bytes, %d QCs) is refused by the reader: %v", buf.Len(), len(batch.Qcs), err)
	}
	if len(got.Qcs) != len(batch.Qcs) {
		t.Fatalf("read %d QCs of %d", len(got.Qcs), len(batch.Qcs))
	}
	batch.Qcs = append(batch.Qcs, refused)
	buf.Reset()
	if err := writeSyncBatch(&buf, batch); err != nil {
		t.Fatal(err)
	}
	if err := readSyncBatch(bytes.NewReader(buf.Bytes()), &got); err == nil {
		t.Fatalf("a batch of %d bytes, past the budget, was read: the budget is looser than the reader", buf.Len())
	}
}
