package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/safety"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// Fee terms of every payment the driver signs. Validators reserve the
// maximum fee, gas limit × fee cap, from the payer before signing (SPEC §4;
// the dev chain pays gas natively, so in wei of its native currency), and
// the fee-tight accounts are funded with exactly that: the driver passes
// these values explicitly rather than rely on the client's defaults.
const payGasLimit = client.DefaultGasLimit

var (
	payMaxFeePerGas = new(big.Int).Set(client.DefaultMaxFeePerGas)
	payTipPerGas    = new(big.Int).Set(client.DefaultMaxPriorityFeePerGas)
)

// payFeeOptions are the fee options of every payment.
func payFeeOptions() []client.PaymentOption {
	return []client.PaymentOption{client.WithGasLimit(payGasLimit), client.WithFees(payMaxFeePerGas, payTipPerGas)}
}

// payMaxFee is the maximum fee of every payment in wei.
func payMaxFee() *big.Int {
	return new(big.Int).Mul(new(big.Int).SetUint64(payGasLimit), payMaxFeePerGas)
}

// feeTerms reads the fee terms of a signed EVM payment on a chain whose gas
// is native, from the transaction itself: its sender pays at most
// gas_limit × max_fee_per_gas wei.
func feeTerms(req *fastpayv1.SubmitFastPayRequest) (*safety.PaymentFee, error) {
	if f := req.GetTx().GetTempoTxFormat(); f != fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1 {
		return nil, fmt.Errorf("fee terms: want an EVM transaction, got %s", f)
	}
	var tx types.Transaction
	if err := tx.UnmarshalBinary(req.GetTx().GetTempoTx().GetData()); err != nil {
		return nil, fmt.Errorf("fee terms: decode the transaction: %w", err)
	}
	sender, err := types.Sender(types.LatestSignerForChainID(tx.ChainId()), &tx)
	if err != nil {
		return nil, fmt.Errorf("fee terms: sender: %w", err)
	}
	return &safety.PaymentFee{Payer: qc.Address(sender), Token: safety.NativeToken,
		Max: new(big.Int).Mul(new(big.Int).SetUint64(tx.Gas()), tx.GasFeeCap())}, nil
}

// The fee-tight load probes the validators' fee rule with fresh accounts
// funded with exactly what a payment needs, or less. Each set is:
//
//	nofee       holds the amount, no native balance ("balance = amount"):
//	            its payment is refused, INSUFFICIENT_FUNDS;
//	short       holds the amount and the maximum fee less one wei: refused;
//	exact-a     holds the amount and exactly the maximum fee ("balance =
//	            amount + fee"): certified, and it settles; it pays heir-fee,
//	heir-fee    which holds nothing but exactly the maximum fee and spends
//	            what it received with exact-a's QC as parent: certified;
//	exact-b     like exact-a, pays heir-nofee,
//	heir-nofee  which holds nothing at all: spending its credit is refused.
//
// Each QC among them must settle, and no refused payment may get one.

// Roles of the fee-tight accounts.
const (
	roleNoFee     = "nofee"
	roleShort     = "short"
	roleExactA    = "exact-a"
	roleHeirFee   = "heir-fee"
	roleExactB    = "exact-b"
	roleHeirNoFee = "heir-nofee"
)

// feeTightLabelPrefix starts the name of every fee-tight payment.
const feeTightLabelPrefix = "feetight:"

// Expectations of fee-tight payments: a QC the driver saw, or the refusal
// of a payment its payer cannot pay the fee of.
const (
	expectQC      = "qc"
	expectRefused = safety.OutcomeRejectedPrefix + "INSUFFICIENT_FUNDS"
)

// feeTightAccount is one fresh account of the plan and its funding.
type feeTightAccount struct {
	name   string // "feetight1-exact-a"
	key    *ecdsa.PrivateKey
	addr   common.Address
	tokens uint64   // token units
	wei    *big.Int // native balance
}

// feeTightStep is one payment of the plan, made in order.
type feeTightStep struct {
	label  string // "feetight:1/exact-a"
	from   string // paying account's name
	to     string // recipient account's name; "" for a load account
	amount uint64
	parent string // label of the step whose QC is carried as parent
	expect string // expectQC or expectRefused
}

// feeTightPlan is the fee-tight accounts and payments of a run.
type feeTightPlan struct {
	amount   uint64
	fee      *big.Int
	accounts []*feeTightAccount
	steps    []feeTightStep
}

// newFeeTightPlan builds sets of fee-tight accounts for payments of amount
// with maximum fee fee. The keys derive from seed, so a run is repeatable;
// every run has a new chain, on which they hold nothing.
func newFeeTightPlan(sets int, amount uint64, fee *big.Int, seed int64) *feeTightPlan {
	p := &feeTightPlan{amount: amount, fee: new(big.Int).Set(fee)}
	for set := 1; set <= sets; set++ {
		name := func(role string) string { return fmt.Sprintf("feetight%d-%s", set, role) }
		label := func(role string) string { return fmt.Sprintf("%s%d/%s", feeTightLabelPrefix, set, role) }
		for _, f := range []struct {
			role   string
			tokens uint64
			wei    *big.Int
		}{
			{roleNoFee, amount, new(big.Int)},
			{roleShort, amount, new(big.Int).Sub(fee, big.NewInt(1))},
			{roleExactA, amount, new(big.Int).Set(fee)},
			{roleHeirFee, 0, new(big.Int).Set(fee)},
			{roleExactB, amount, new(big.Int).Set(fee)},
			{roleHeirNoFee, 0, new(big.Int)},
		} {
			key := devkit.DeterministicKey(fmt.Sprintf("allegro-e2e-%d-%s", seed, name(f.role)))
			p.accounts = append(p.accounts, &feeTightAccount{name: name(f.role), key: key,
				addr: crypto.PubkeyToAddress(key.PublicKey), tokens: f.tokens, wei: f.wei})
		}
		p.steps = append(p.steps,
			feeTightStep{label: label(roleNoFee), from: name(roleNoFee), amount: amount, expect: expectRefused},
			feeTightStep{label: label(roleShort), from: name(roleShort), amount: amount, expect: expectRefused},
			feeTightStep{label: label(roleExactA), from: name(roleExactA), to: name(roleHeirFee), amount: amount, expect: expectQC},
			feeTightStep{label: label(roleHeirFee), from: name(roleHeirFee), amount: amount, parent: label(roleExactA), expect: expectQC},
			feeTightStep{label: label(roleExactB), from: name(roleExactB), to: name(roleHeirNoFee), amount: amount, expect: expectQC},
			feeTightStep{label: label(roleHeirNoFee), from: name(roleHeirNoFee), amount: amount, parent: label(roleExactB), expect: expectRefused},
		)
	}
	return p
}

func (p *feeTightPlan) account(name string) *feeTightAccount {
	for _, a := range p.accounts {
		if a.name == name {
			return a
		}
	}
	return nil
}

// nativeTransferGas is the gas of a plain value transfer.
const nativeTransferGas = 21_000

// fundingTxs signs, from funder starting at nonce, a token transfer of
// every account's tokens and a native transfer of its wei (none for a zero
// amount).
func fundingTxs(funder *ecdsa.PrivateKey, nonce uint64, chainID *big.Int, accounts []*feeTightAccount) ([]*types.Transaction, error) {
	fees := devkit.DefaultFees()
	signer := types.LatestSignerForChainID(chainID)
	var txs []*types.Transaction
	for _, a := range accounts {
		if a.tokens > 0 {
			tx, err := devkit.SignTransfer(funder, nonce, a.addr, new(big.Int).SetUint64(a.tokens), chainID, 0, fees)
			if err != nil {
				return nil, fmt.Errorf("fund %s with tokens: %w", a.name, err)
			}
			txs = append(txs, tx)
			nonce++
		}
		if a.wei.Sign() > 0 {
			to := a.addr
			tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{ChainID: chainID, Nonce: nonce,
				GasTipCap: fees.MaxPriorityFeePerGas, GasFeeCap: fees.MaxFeePerGas, Gas: nativeTransferGas,
				To: &to, Value: new(big.Int).Set(a.wei)}), signer, funder)
			if err != nil {
				return nil, fmt.Errorf("fund %s with wei: %w", a.name, err)
			}
			txs = append(txs, tx)
			nonce++
		}
	}
	return txs, nil
}

// fund sends the funding of the plan's accounts from funder, waits until
// every funding transaction succeeded and every sidecar's chain head has
// passed the last of their blocks (a sidecar that has not seen the funding
// would refuse the exact-fee payments), and checks the balances.
func (p *feeTightPlan) fund(ctx context.Context, chainRPC string, chainID *big.Int, funder *ecdsa.PrivateKey, sidecarAPIs []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ec, err := ethclient.DialContext(ctx, chainRPC)
	if err != nil {
		return fmt.Errorf("fee-tight funding: dial %s: %w", chainRPC, err)
	}
	defer ec.Close()
	nonce, err := ec.PendingNonceAt(ctx, crypto.PubkeyToAddress(funder.PublicKey))
	if err != nil {
		return fmt.Errorf("fee-tight funding: funder nonce: %w", err)
	}
	txs, err := fundingTxs(funder, nonce, chainID, p.accounts)
	if err != nil {
		return err
	}
	for _, tx := range txs {
		if err := ec.SendTransaction(ctx, tx); err != nil {
			return fmt.Errorf("fee-tight funding: send %s: %w", tx.Hash(), err)
		}
	}
	var last uint64
	for _, tx := range txs {
		for {
			r, err := ec.TransactionReceipt(ctx, tx.Hash())
			if err == nil {
				if r.Status != types.ReceiptStatusSuccessful {
					return fmt.Errorf("fee-tight funding: transaction %s failed in block %d", tx.Hash(), r.BlockNumber)
				}
				last = max(last, r.BlockNumber.Uint64())
				break
			}
			if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
				return fmt.Errorf("fee-tight funding: transaction %s not included: %w", tx.Hash(), err)
			}
		}
	}
	if err := waitSidecarHeads(ctx, sidecarAPIs, last); err != nil {
		return fmt.Errorf("fee-tight funding: %w", err)
	}
	addrs := p.addresses()
	tokens, err := safety.Balances(ctx, chainRPC, qc.Address(devkit.TokenAddress), addrs)
	if err != nil {
		return err
	}
	native, err := safety.Balances(ctx, chainRPC, safety.NativeToken, addrs)
	if err != nil {
		return err
	}
	return p.checkFunded(tokens, native)
}

// checkFunded compares the accounts' balances with the plan.
func (p *feeTightPlan) checkFunded(tokens, native map[qc.Address]*big.Int) error {
	var errs []error
	for _, a := range p.accounts {
		t, w := tokens[qc.Address(a.addr)], native[qc.Address(a.addr)]
		if t == nil || w == nil || t.Cmp(new(big.Int).SetUint64(a.tokens)) != 0 || w.Cmp(a.wei) != 0 {
			errs = append(errs, fmt.Errorf("fee-tight account %s holds %v tokens and %v wei, want %d and %s", a.name, t, w, a.tokens, a.wei))
		}
	}
	return errors.Join(errs...)
}

func (p *feeTightPlan) addresses() []qc.Address {
	out := make([]qc.Address, len(p.accounts))
	for i, a := range p.accounts {
		out[i] = qc.Address(a.addr)
	}
	return out
}

// waitSidecarHeads polls GET /api/v1/chain/head of every sidecar until each
// reports block height at least height.
func waitSidecarHeads(ctx context.Context, apis []string, height uint64) error {
	hc := &http.Client{Timeout: 3 * time.Second}
	for _, api := range apis {
		for {
			got, err := sidecarHead(ctx, hc, api)
			if err == nil && got >= height {
				break
			}
			if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
				return fmt.Errorf("sidecar %s: chain head %d (%v), waiting for block %d: %w", api, got, err, height, ctx.Err())
			}
		}
	}
	return nil
}

func sidecarHead(ctx context.Context, hc *http.Client, api string) (uint64, error) {
	var head apiserver.ChainHeadResponse
	if err := getJSON(ctx, hc, "http://"+api+"/api/v1/chain/head", &head); err != nil {
		return 0, err
	}
	return uint64(head.BlockHeight), nil
}

// feeTight makes the plan's payments in order, from entry sidecars picked
// in turn. A child whose parent got no QC is not sent.
func (d *driver) feeTight(ctx context.Context, p *feeTightPlan, accts map[string]*account, seed uint64) {
	qcs := make(map[string]*qc.QC)
	rng := rand.New(rand.NewPCG(seed, 11))
	for i, st := range p.steps {
		if d.stopping() || ctx.Err() != nil {
			return
		}
		var parent *qc.QC
		if st.parent != "" {
			if parent = qcs[st.parent]; parent == nil {
				d.log.Warn("fee-tight payment not sent: its parent got no QC", "label", st.label, "parent", st.parent)
				continue
			}
		}
		to := d.pick(rng, accts[st.from].addr)
		if st.to != "" {
			to = accts[st.to].addr
		}
		if q := d.payAs(ctx, st.label, true, accts[st.from], to, st.amount, parent, i); q != nil {
			qcs[st.label] = q
		}
	}
}

// feeTightVerdict compares the recorded fee-tight payments with the plan:
// a planned QC must have been seen by the driver, a planned refusal must be
// the recorded outcome without a QC. It returns one line per step and
// whether all met their expectation.
func feeTightVerdict(p *feeTightPlan, payments []safety.Payment) ([]string, bool) {
	byLabel := make(map[string]*safety.Payment)
	for i := range payments {
		if strings.HasPrefix(payments[i].Name, feeTightLabelPrefix) {
			byLabel[payments[i].Name] = &payments[i]
		}
	}
	var lines []string
	ok := true
	for _, st := range p.steps {
		got := "not sent"
		if pay := byLabel[st.label]; pay != nil {
			switch {
			case !pay.QCAt.IsZero():
				got = expectQC
			case pay.Accepted():
				got = "accepted without a QC"
			case pay.Outcome != "":
				got = pay.Outcome
			default:
				got = "no outcome"
			}
		}
		mark := "ok"
		if got != st.expect {
			mark, ok = "UNEXPECTED", false
		}
		lines = append(lines, fmt.Sprintf("%-28s %-32s expected %-32s %s", st.label, got, st.expect, mark))
	}
	return lines, ok
}
