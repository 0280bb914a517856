package validator

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

const testChainID = 1337

var (
	token     = common.HexToAddress("0x20c0000000000000000000000000000000000001")
	aliceKey  = mustKey("alice")
	bobKey    = mustKey("bob")
	carolKey  = mustKey("carol")
	alice     = crypto.PubkeyToAddress(aliceKey.PublicKey)
	bob       = crypto.PubkeyToAddress(bobKey.PublicKey)
	carol     = crypto.PubkeyToAddress(carolKey.PublicKey)
	testEpoch = uint64(1)
	domain    = qc.Domain{ChainID: testChainID, Epoch: testEpoch}
)

func mustKey(name string) *ecdsa.PrivateKey {
	k, err := crypto.ToECDSA(crypto.Keccak256([]byte("allegro-test-" + name)))
	if err != nil {
		panic(err)
	}
	return k
}

func dollars(n int64) *big.Int { return big.NewInt(n * 1_000_000) }

func addressOf(k *ecdsa.PrivateKey) common.Address { return crypto.PubkeyToAddress(k.PublicKey) }

// testFee is the maximum fee of every fixture payment under Tempo's fee
// rule, in token units: gas 250,000 × max_fee_per_gas 1 gwei / 10^12.
const testFee = 250

// dollarsLess returns n dollars less units token units.
func dollarsLess(n, units int64) *big.Int { return big.NewInt(n*1_000_000 - units) }

// cluster is a committee of n validators sharing one in-memory chain.
type cluster struct {
	committee *qc.Committee
	signers   []*qc.Signer
	chain     *tempo.MemChain
}

func newCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{chain: tempo.NewMemChain()}
	members := make([]qc.Member, n)
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		c.signers = append(c.signers, qc.NewSigner(ed25519.NewKeyFromSeed(seed), fmt.Sprintf("v%d", i), domain))
		members[i] = qc.Member{Name: c.signers[i].Name(), ID: c.signers[i].ID()}
	}
	var err error
	if c.committee, err = qc.NewCommittee(domain, members); err != nil {
		t.Fatal(err)
	}
	c.chain.SetBalance(token, alice, dollars(15))
	c.chain.SetBalance(token, bob, dollars(5))
	c.chain.SetBalance(token, carol, dollars(5))
	c.chain.SetHead(10)
	return c
}

// validator opens validator i on dir (a fresh temp dir when empty).
func (c *cluster) validator(t testing.TB, i int, dir string) *Validator {
	t.Helper()
	return c.validatorWith(t, i, dir, DefaultConfig())
}

// validatorWith is validator with cfg.
func (c *cluster) validatorWith(t testing.TB, i int, dir string, cfg Config) *Validator {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := OpenStore(dir, DefaultGroupCommitWindow, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	v, err := New(cfg, c.signers[i], c.committee, c.chain, store, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// payment describes one EVM transfer request; mutators edit it before the
// request is built.
type payment struct {
	key        *ecdsa.PrivateKey
	chainID    int64
	nonce      uint64
	to         common.Address // token contract called
	recipient  common.Address
	amount     *big.Int
	value      *big.Int
	calldata   []byte // overrides the transfer calldata when set
	parentHash []byte
	parents    []*fastpayv1.QuorumCertificate
	expiry     *fastpayv1.Expiry
	requestID  string
	mutateTx   func(*fastpayv1.FastPayTx)
}

func pay(key *ecdsa.PrivateKey, nonce uint64, recipient common.Address, amount *big.Int) *payment {
	return &payment{key: key, chainID: testChainID, nonce: nonce, to: token, recipient: recipient, amount: amount,
		expiry: &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_MaxBlockHeight{MaxBlockHeight: 1_000}}}
}

func transferCalldata(to common.Address, amount *big.Int) []byte {
	data := make([]byte, 4+64)
	copy(data, []byte{0xa9, 0x05, 0x9c, 0xbb})
	copy(data[4+12:], to[:])
	amount.FillBytes(data[4+32:])
	return data
}

func (p *payment) rawTx(t testing.TB) []byte {
	t.Helper()
	data := p.calldata
	if data == nil {
		data = transferCalldata(p.recipient, p.amount)
	}
	value := p.value
	if value == nil {
		value = new(big.Int)
	}
	to := p.to
	tx := types.NewTx(&types.DynamicFeeTx{
		ChainID: big.NewInt(p.chainID), Nonce: p.nonce, GasTipCap: big.NewInt(1), GasFeeCap: big.NewInt(1_000_000_000),
		Gas: 250_000, To: &to, Value: value, Data: data,
	})
	signed, err := types.SignTx(tx, types.LatestSignerForChainID(big.NewInt(p.chainID)), p.key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := signed.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (p *payment) request(t testing.TB) *fastpayv1.SubmitFastPayRequest {
	t.Helper()
	sender := crypto.PubkeyToAddress(p.key.PublicKey)
	amount := uint64(0)
	if p.amount.IsUint64() {
		amount = p.amount.Uint64()
	}
	tx := &fastpayv1.FastPayTx{
		ChainId:         &fastpayv1.ChainId{Value: testChainID},
		TempoTx:         &fastpayv1.TempoTxBytes{Data: p.rawTx(t)},
		Nonce:           &fastpayv1.Nonce2D{NonceKeyBe: make([]byte, 32), NonceSeq: p.nonce},
		Expiry:          p.expiry,
		ParentQcHash:    p.parentHash,
		TempoTxFormat:   fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1,
		ClientRequestId: p.requestID,
		Overlay: &fastpayv1.OverlayMetadata{Payment: &fastpayv1.PaymentIntent{
			Sender: &fastpayv1.Address{Data: sender[:]}, Recipient: &fastpayv1.Address{Data: p.recipient[:]},
			Amount: amount, Asset: &fastpayv1.AssetId{Data: token[:]},
		}},
	}
	if p.mutateTx != nil {
		p.mutateTx(tx)
	}
	return &fastpayv1.SubmitFastPayRequest{Tx: tx, ParentQcs: p.parents}
}

// certifyAll has validators 0..q-1 of c sign req directly and returns the QC.
func (c *cluster) certify(t testing.TB, req *fastpayv1.SubmitFastPayRequest) *qc.QC {
	t.Helper()
	return c.certifyBy(t, req, c.signers[:c.committee.Quorum()]...)
}

// certifyBy builds the QC of req signed by signers.
func (c *cluster) certifyBy(t testing.TB, req *fastpayv1.SubmitFastPayRequest, signers ...*qc.Signer) *qc.QC {
	t.Helper()
	p, err := Decode(req, domain, 8)
	if err != nil {
		t.Fatal(err)
	}
	a := qc.NewAssembler(c.committee, p.TxHash, p.Effects.Hash())
	for _, s := range signers {
		if _, err := a.Add(s.Sign(p.TxHash, p.Effects, uint64(time.Now().UnixMilli()))); err != nil {
			t.Fatal(err)
		}
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	return q
}
