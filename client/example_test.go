package client_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/qc"
)

// Example keys for the examples. Never use well-known keys outside
// development chains.
var (
	exampleAlice = crypto.ToECDSAUnsafe(crypto.Keccak256([]byte("example-alice")))
	exampleBob   = crypto.PubkeyToAddress(crypto.ToECDSAUnsafe(crypto.Keccak256([]byte("example-bob"))).PublicKey)
	exampleToken = common.HexToAddress("0x20c0000000000000000000000000000000000001") // a TIP-20 token
)

// exampleSidecar starts a stand-in sidecar on loopback; a real deployment
// has the sidecars' addresses and the committee file instead.
func exampleSidecar() (addr string, committee *qc.Committee, stop func()) {
	fake := newFakeSidecar(1337)
	addr, stop, err := fake.serve()
	if err != nil {
		panic(err)
	}
	return addr, fake.committee, stop
}

func ExampleNewEVMPayment() {
	// Alice pays Bob 2.50 dollars (the token has 6 decimals) with EVM nonce 0
	// on chain 1337, valid for a minute.
	req, err := client.NewEVMPayment(exampleAlice, 1337, 0, exampleToken, exampleBob, 2_500_000,
		client.WithExpiryAt(time.Now().Add(time.Minute)))
	if err != nil {
		panic(err)
	}
	tx := req.Tx
	fmt.Println("format:", tx.TempoTxFormat)
	fmt.Println("nonce:", tx.Nonce.NonceSeq, "amount:", tx.Overlay.Payment.Amount)
	_, effects, _ := client.Expected(req)
	fmt.Println("sender is Alice:", common.Address(effects.Sender) == crypto.PubkeyToAddress(exampleAlice.PublicKey))
	// Output:
	// format: EVM_OPAQUE_BYTES_V1
	// nonce: 0 amount: 2500000
	// sender is Alice: true
}

func ExampleNewTempoPayment() {
	// A type-0x76 payment on nonce key 1: a lane independent of the
	// protocol nonce.
	lane := qc.NonceKey{31: 1}
	req, err := client.NewTempoPayment(exampleAlice, 1337, lane, 0, exampleToken, exampleBob, 1_000_000,
		client.WithMemo([32]byte{'i', 'n', 'v', 'o', 'i', 'c', 'e', '-', '7'}))
	if err != nil {
		panic(err)
	}
	fmt.Println("format:", req.Tx.TempoTxFormat)
	fmt.Printf("first byte: %#x\n", req.Tx.TempoTx.Data[0])
	// Output:
	// format: TEMPO_NATIVE_V1
	// first byte: 0x76
}

func ExampleClient_Pay() {
	addr, committee, stop := exampleSidecar()
	defer stop()

	c, err := client.New(client.Config{Endpoints: []string{addr}, Committee: committee})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	req, err := client.NewEVMPayment(exampleAlice, 1337, 0, exampleToken, exampleBob, 1_000_000)
	if err != nil {
		panic(err)
	}
	res, err := c.Pay(context.Background(), req, func(ev client.Event) {
		switch ev.Kind {
		case client.EventAccepted:
			fmt.Println("accepted")
		case client.EventCertificate:
			// ev.Elapsed is the time since Pay was called.
			fmt.Printf("certificate %d from %s\n", ev.Certs, ev.SignerName)
		}
	})
	if err != nil {
		panic(err)
	}
	// The QC is verified against the committee before Pay returns it.
	fmt.Printf("QC with %d of %d signers (quorum %d)\n", len(res.QC.Certs), committee.N(), committee.Quorum())
	// Output:
	// accepted
	// certificate 1 from v0
	// certificate 2 from v1
	// certificate 3 from v2
	// QC with 3 of 4 signers (quorum 3)
}

func ExampleFanOut() {
	// One stand-in sidecar per validator.
	var endpoints []string
	var committee *qc.Committee
	for i := range 4 {
		fake := newFakeSidecar(1337)
		fake.self = i
		addr, stop, err := fake.serve()
		if err != nil {
			panic(err)
		}
		defer stop()
		endpoints, committee = append(endpoints, addr), fake.committee
	}
	req, err := client.NewEVMPayment(exampleAlice, 1337, 0, exampleToken, exampleBob, 1_000_000)
	if err != nil {
		panic(err)
	}
	res, err := client.FanOut(context.Background(), endpoints, committee, req)
	if err != nil {
		panic(err)
	}
	fmt.Println("QC verifies:", committee.VerifyQC(res.QC) == nil, "signers:", len(res.QC.Certs))
	// Output:
	// QC verifies: true signers: 3
}

func ExampleOpenWallet() {
	dir, err := os.MkdirTemp("", "wallet")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "alice.wallet")

	w, err := client.OpenWallet(path, exampleAlice, 1337)
	if err != nil {
		panic(err)
	}
	// Reserve, build, record BEFORE submitting. (w.NewEVMPayment does all
	// three.)
	nonce, _ := w.Reserve(qc.NonceKey{})
	req, _ := client.NewEVMPayment(exampleAlice, 1337, nonce, exampleToken, exampleBob, 1_000_000)
	if err := w.RecordRequest(req); err != nil {
		panic(err)
	}
	w.Close() // ... the wallet crashes before the payment gets its QC

	w, err = client.OpenWallet(path, exampleAlice, 1337)
	if err != nil {
		panic(err)
	}
	defer w.Close()
	for _, p := range w.Pending() {
		again, _ := p.SubmitRequest()
		fmt.Println("resubmit nonce", p.Nonce, "same request:", again.Tx.ClientRequestId == req.Tx.ClientRequestId)
		// ... c.Pay(ctx, again, nil), then on success:
		_ = w.Done(p.NonceKey, p.Nonce)
	}
	next, _ := w.Reserve(qc.NonceKey{})
	fmt.Println("next nonce", next)
	// Output:
	// resubmit nonce 0 same request: true
	// next nonce 1
}
