package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

func init() {
	app.Register("pay", "submit a payment to a sidecar and print its certificates and QC as they arrive", runPay)
}

// payStrings collects a repeated (or comma-separated) string flag.
type payStrings []string

func (s *payStrings) String() string { return strings.Join(*s, ",") }

func (s *payStrings) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

const payUsage = `--sidecar HOST:PORT [--sidecar ...] --committee FILE
       (--from NAME | --key-file FILE | $ALLEGRO_PAY_KEY) --to NAME|0xADDR
       (--amount DOLLARS | --units N) [--nonce N | --wallet FILE] [--format evm|tempo]
       [--parent-qc FILE] [--qc-out FILE] [flags]

Signs a TIP-20 payment, submits it to the first --sidecar (the others are
fallbacks) and prints each certificate as it arrives, then the verified QC.

Accounts: alice, bob, carol and loadN (load-test account N) are the development
chain's demo accounts. Their private keys are PUBLICLY KNOWN (keccak256 of
"allegro-demo-<name>" / "allegro-load-<N>"): use them on development chains
only. Elsewhere the payer's hex secp256k1 private key comes from a file
(--key-file FILE, mode 0600, 0x optional) or from the environment variable
ALLEGRO_PAY_KEY, never from the command line, where ps and shell history
would show it; pay to --to 0xADDRESS.

Chained payments: write the QC with --qc-out, then let the recipient spend the
funds before they settle with --parent-qc pointing at that file.`

func runPay(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("pay", payUsage)
	var sidecars payStrings
	fs.Var(&sidecars, "sidecar", "sidecar gRPC address host:port (repeat for fallbacks)")
	committeePath := fs.String("committee", "", "committee file (its chain_id is the payment's chain)")
	from := fs.String("from", "", "payer: a development account (alice, bob, carol, loadN); other keys: --key-file or $"+payKeyEnv)
	keyFile := fs.String("key-file", "", "file holding the payer's hex secp256k1 private key (mode 0600)")
	to := fs.String("to", "", "recipient: alice, bob, carol, loadN, or 0xADDRESS")
	amount := fs.String("amount", "", "amount in dollars (6 decimals, e.g. 10 or 0.25)")
	units := fs.Uint64("units", 0, "amount in token units (1 dollar = 1000000); instead of --amount")
	tokenFlag := fs.String("token", devkit.TokenAddress.Hex(), "TIP-20 token address")
	var nonce, chainNonce payOptionalU64
	fs.Var(&nonce, "nonce", "nonce (default 0 when neither --nonce nor --wallet is given)")
	nonceKeyFlag := fs.String("nonce-key", "0", "Tempo nonce key, decimal or 0x hex (--format tempo)")
	walletPath := fs.String("wallet", "", "wallet journal: reserve the nonce durably, resubmit pending payments first")
	fs.Var(&chainNonce, "chain-nonce", "with --wallet: the chain's next nonce for the key; drops pending payments below it")
	parentPath := fs.String("parent-qc", "", "file with the parent payment's QC (from --qc-out)")
	format := fs.String("format", "evm", "transaction format: evm (EIP-1559) or tempo (type 0x76)")
	qcOut := fs.String("qc-out", "", "write the QC here (hex protobuf) for a chained payment's --parent-qc")
	memo := fs.String("memo", "", "memo of up to 32 bytes (pays with transferWithMemo)")
	expiry := fs.Duration("expiry", client.DefaultExpiry, "the payment expires this long after signing")
	timeout := fs.Duration("timeout", client.DefaultTimeout, "time limit per attempt")
	retries := fs.Int("retries", client.DefaultRetries, "further attempts on the next sidecars after a failure")
	waitSettled := fs.Duration("wait-settled", 0, "after the QC, wait up to this long for FINALIZED (0: do not wait)")
	chainRPC := fs.String("chain-rpc", "", "chain node JSON-RPC URL: on a network whose committee changes with epochs (epoch_length in the committee file), the current epoch and, with committee_source = \"chain\", its committee are read from it")
	bindingsDir := fs.String("bindings", "bindings", "with committee_source = \"chain\": directory of the validators' binding files")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	usageErr := func(format string, a ...any) error {
		fmt.Fprintf(fs.Output(), "allegro pay: "+format+"\n", a...)
		return cli.ErrUsage
	}
	switch {
	case len(sidecars) == 0:
		return usageErr("--sidecar is required")
	case *committeePath == "":
		return usageErr("--committee is required")
	case *to == "":
		return usageErr("--to is required")
	case (*amount == "") == (*units == 0):
		return usageErr("give exactly one of --amount and --units (positive)")
	case nonce.set && *walletPath != "":
		return usageErr("--nonce and --wallet exclude each other")
	case chainNonce.set && *walletPath == "":
		return usageErr("--chain-nonce needs --wallet")
	case *format != "evm" && *format != "tempo":
		return usageErr("--format must be evm or tempo")
	case len(*memo) > 32:
		return usageErr("--memo is %d bytes, at most 32", len(*memo))
	}
	value := *units
	if *amount != "" {
		v, err := payParseDollars(*amount)
		if err != nil {
			return usageErr("--amount: %v", err)
		}
		value = v
	}
	if value == 0 {
		return usageErr("the amount must be positive")
	}
	if !common.IsHexAddress(*tokenFlag) {
		return usageErr("--token %q is not an address", *tokenFlag)
	}
	token := common.HexToAddress(*tokenFlag)
	nonceKey, err := payParseNonceKey(*nonceKeyFlag)
	if err != nil {
		return usageErr("--nonce-key: %v", err)
	}
	if *format == "evm" && nonceKey != (qc.NonceKey{}) {
		return usageErr("--nonce-key applies to --format tempo (EVM transactions use the protocol nonce)")
	}

	cf, err := committee.LoadFile(*committeePath)
	if err != nil {
		return err
	}
	committee, committeeOf, closeChain, err := payCommittee(ctx, cf, *chainRPC, *bindingsDir)
	if errors.Is(err, errPayNeedsChain) {
		return usageErr("%v", err)
	}
	if err != nil {
		return err
	}
	defer closeChain()
	key, payerName, err := payLoadKey(*from, *keyFile, os.Getenv)
	if errors.Is(err, errPayKeySource) {
		return usageErr("%v", err)
	}
	if err != nil {
		return err
	}
	recipient, err := payResolveAddress(*to)
	if err != nil {
		return err
	}

	opts := []client.PaymentOption{client.WithExpiryAt(time.Now().Add(*expiry))}
	if *memo != "" {
		var m [32]byte
		copy(m[:], *memo)
		opts = append(opts, client.WithMemo(m))
	}
	if *parentPath != "" {
		text, err := os.ReadFile(*parentPath)
		if err != nil {
			return fmt.Errorf("--parent-qc: %w", err)
		}
		parent, err := client.DecodeQCHexOf(string(text), committee, committeeOf)
		if err != nil {
			return fmt.Errorf("--parent-qc %s: %w", *parentPath, err)
		}
		opts = append(opts, client.WithParent(parent))
		fmt.Fprintf(stdout, "parent QC %s: %s paid %s %s\n", parent.Hash.Hex(), payName(common.Address(parent.Effects().Sender)),
			payName(common.Address(parent.Effects().Recipient)), payDollars(parent.Effects().Amount))
	}

	cfgRetries := *retries
	if cfgRetries <= 0 {
		cfgRetries = -1 // Config reads 0 as "the default"; the flag means none
	}
	c, err := client.New(client.Config{Endpoints: sidecars, Committee: committee, CommitteeOf: committeeOf, Timeout: *timeout, Retries: cfgRetries})
	if err != nil {
		return err
	}
	defer c.Close()
	pr := &payPrinter{w: stdout, quorum: committee.Quorum()}

	build := func(n uint64) (*fastpayv1.SubmitFastPayRequest, error) {
		if *format == "tempo" {
			return client.NewTempoPayment(key, cf.ChainID, nonceKey, n, token, recipient, value, opts...)
		}
		return client.NewEVMPayment(key, cf.ChainID, n, token, recipient, value, opts...)
	}
	var req *fastpayv1.SubmitFastPayRequest
	var wallet *client.Wallet
	if *walletPath == "" {
		req, err = build(nonce.v)
		if err != nil {
			return err
		}
	} else {
		wallet, err = client.OpenWallet(*walletPath, key, cf.ChainID)
		if err != nil {
			return err
		}
		defer wallet.Close()
		if chainNonce.set {
			if err := wallet.SyncChainNonce(nonceKey, chainNonce.v); err != nil {
				return err
			}
		}
		if err := payResolvePending(ctx, c, wallet, pr, payFollow{sidecars: sidecars, committeePath: *committeePath, walletPath: *walletPath}, stdout); err != nil {
			return err
		}
		if *format == "tempo" {
			req, err = wallet.NewTempoPayment(nonceKey, token, recipient, value, opts...)
		} else {
			req, err = wallet.NewEVMPayment(token, recipient, value, opts...)
		}
		if err != nil {
			return err
		}
	}

	txHash, _, err := client.Expected(req)
	if err != nil {
		return err
	}
	seq := req.Tx.Nonce.NonceSeq
	fmt.Fprintf(stdout, "payment %s\n  %s → %s  %s (%d units)  %s nonce %d", txHash.Hex(), payerName,
		payName(recipient), payDollars(value), value, strings.ToUpper(*format), seq)
	if *format == "tempo" {
		fmt.Fprintf(stdout, " key %s", payNonceKeyString(nonceKey))
	}
	fmt.Fprintf(stdout, "  chain %d\n", cf.ChainID)

	follow := payFollow{sidecars: sidecars, committeePath: *committeePath, walletPath: *walletPath}
	res, err := c.Pay(ctx, req, pr.event)
	var rej *client.RejectError
	switch {
	case errors.As(err, &rej):
		if wallet != nil {
			payAfterReject(ctx, c, wallet, req, stdout)
		}
		return err
	case err != nil:
		return follow.pending(ctx, c, pr, req, stdout)
	}
	pr.result(res, committee)
	if wallet != nil {
		k, n, _ := req.Tx.Nonce.ToNonce("nonce")
		if err := wallet.Done(k, n); err != nil {
			return err
		}
	}
	if *qcOut != "" {
		text, err := client.EncodeQCHex(res.QC)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*qcOut, []byte(text), 0o644); err != nil {
			return fmt.Errorf("--qc-out: %w", err)
		}
		fmt.Fprintf(stdout, "QC written to %s (hex protobuf; the recipient passes it as --parent-qc to spend the funds now)\n", *qcOut)
	}
	if *waitSettled > 0 {
		wctx, cancel := context.WithTimeout(ctx, *waitSettled)
		defer cancel()
		fmt.Fprintf(stdout, "waiting up to %s for settlement...\n", *waitSettled)
		st, err := c.WaitSettled(wctx, res.TxHash)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "settled: %s in block %d (seen by %s)\n", st.Stage, st.BlockHeight, st.Endpoint)
	}
	return nil
}

// payOptionalU64 is a uint64 flag that records whether it was given.
type payOptionalU64 struct {
	v   uint64
	set bool
}

func (o *payOptionalU64) String() string {
	if !o.set {
		return ""
	}
	return strconv.FormatUint(o.v, 10)
}

func (o *payOptionalU64) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return errors.New("want a non-negative integer")
	}
	o.v, o.set = v, true
	return nil
}

// payExitPending is pay's process status when the payment was submitted
// but the wait for its QC ended first (a time limit, a broken stream, an
// interrupt): unlike a reject (status 1) the payment may still complete.
const payExitPending = 3

// payStatusTimeout bounds the status queries pay makes on its way out.
const payStatusTimeout = 5 * time.Second

// payFollow is what pay needs to tell the user how to follow a payment.
type payFollow struct {
	sidecars      []string
	committeePath string
	walletPath    string
}

// statusCommand is the allegro status command line for txHash.
func (f payFollow) statusCommand(txHash qc.Hash) string {
	var b strings.Builder
	b.WriteString("allegro status")
	for _, s := range f.sidecars {
		b.WriteString(" --sidecar " + s)
	}
	b.WriteString(" --committee " + f.committeePath + " " + txHash.Hex())
	return b.String()
}

// pending reports, in plain words, a payment whose QC did not arrive before
// the wait ended: how far it got by a sidecar's account, how to follow it,
// and what the wallet does with it next. The transport's error is not shown:
// it says nothing about the payment, which the validators may still certify.
func (f payFollow) pending(ctx context.Context, c *client.Client, pr *payPrinter, req *fastpayv1.SubmitFastPayRequest, stdout io.Writer) error {
	txHash, _, err := client.Expected(req)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), payStatusTimeout)
	defer cancel()
	certs, quorum := pr.certs, pr.quorum
	st, serr := c.Status(sctx, txHash)
	if serr == nil {
		certs = max(certs, st.CertCount)
	}
	switch {
	case serr == nil && st.QCFormed:
		fmt.Fprintf(stdout, "submitted as tx %s; the QC %s formed after the wait ended (%d of %d certificates, seen by %s)\n", txHash.Hex(), st.QCHash.Hex(), certs, quorum, st.Endpoint)
	case serr != nil && certs == 0 && !pr.accepted:
		why := "no sidecar could be asked"
		if errors.Is(serr, client.ErrNotFoundAnywhere) {
			why = "the sidecars asked do not know it"
		}
		fmt.Fprintf(stdout, "sent tx %s, but no sidecar confirmed receiving it (%s); it may not have been submitted\n", txHash.Hex(), why)
	default:
		fmt.Fprintf(stdout, "submitted as tx %s; %d of %d certificates so far; the QC has not formed yet — the payment may still complete\n", txHash.Hex(), certs, quorum)
	}
	fmt.Fprintf(stdout, "follow it: %s\n", f.statusCommand(txHash))
	if f.walletPath != "" {
		fmt.Fprintf(stdout, "the wallet %s keeps it pending at nonce %d: the next pay with --wallet asks a sidecar how it ended before using another nonce\n", f.walletPath, req.GetTx().GetNonce().GetNonceSeq())
	} else {
		fmt.Fprintf(stdout, "do not pay again at nonce %d until it has ended: the validators that signed it refuse another transaction for that nonce\n", req.GetTx().GetNonce().GetNonceSeq())
	}
	if serr == nil && st.QCFormed {
		return &cli.ExitError{Code: payExitPending, Err: fmt.Errorf("payment %s has its QC, formed after the wait ended: allegro status shows it", txHash.Hex())}
	}
	return &cli.ExitError{Code: payExitPending, Err: fmt.Errorf("payment %s is not certified yet (it may still complete)", txHash.Hex())}
}

// payResolvePending settles, before a new payment, every payment the wallet
// recorded but never saw certified (a previous run crashed, failed or gave
// up waiting). A sidecar is asked first: a payment with its QC is done. One
// it does not know, or knows without a QC, is resubmitted unchanged; a
// final reject frees the nonce when no sidecar knows the transaction (see
// payAfterReject), and a nonce the chain has passed (NONCE_SEQ_TOO_LOW) is
// done. A payment still without its QC stops the run: it blocks later
// nonces.
func payResolvePending(ctx context.Context, c *client.Client, w *client.Wallet, pr *payPrinter, follow payFollow, stdout io.Writer) error {
	for _, p := range w.Pending() {
		if p.Request == nil {
			continue // a gap: the new payment fills it
		}
		req, err := p.SubmitRequest()
		if err != nil {
			return err
		}
		txHash, _, err := client.Expected(req)
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, payStatusTimeout)
		st, serr := c.Status(sctx, txHash)
		cancel()
		if serr == nil && (st.QCFormed || st.Stage >= fastpayv1.TxLifecycleUpdate_CERTIFIED) {
			fmt.Fprintf(stdout, "the pending payment at nonce %d (tx %s) has its QC %s (%s, seen by %s); done\n", p.Nonce, txHash.Hex(), st.QCHash.Hex(), st.Stage, st.Endpoint)
			if err := w.Done(p.NonceKey, p.Nonce); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(stdout, "resubmitting the pending payment at nonce %d (tx %s, recorded by an earlier run)\n", p.Nonce, txHash.Hex())
		pr.certs, pr.accepted = 0, false
		res, err := c.Pay(ctx, req, pr.event)
		var rej *client.RejectError
		switch {
		case errors.As(err, &rej) && rej.Code == fastpayv1.RejectCode_NONCE_SEQ_TOO_LOW:
			fmt.Fprintf(stdout, "  nonce %d is already used on chain; dropped\n", p.Nonce)
		case errors.As(err, &rej):
			if payAfterReject(ctx, c, w, req, stdout) {
				continue
			}
			return fmt.Errorf("pending payment at nonce %d: %w (it blocks later nonces: once the chain has passed it run with --chain-nonce)", p.Nonce, err)
		case err != nil:
			return follow.pending(ctx, c, pr, req, stdout)
		default:
			pr.result(res, c.Committee())
		}
		if err := w.Done(p.NonceKey, p.Nonce); err != nil {
			return err
		}
	}
	pr.certs, pr.accepted = 0, false
	return nil
}

// payAfterReject frees the nonce of a recorded payment a sidecar refused
// outright when no sidecar asked knows the transaction: then no validator
// can hold a certificate for it, and a new payment may take the nonce. A
// known transaction keeps its nonce pending (a validator may have signed it
// before the reject). It reports whether the nonce was freed.
func payAfterReject(ctx context.Context, c *client.Client, w *client.Wallet, req *fastpayv1.SubmitFastPayRequest, stdout io.Writer) bool {
	txHash, _, err := client.Expected(req)
	if err != nil {
		return false
	}
	key, n, err := req.GetTx().GetNonce().ToNonce("nonce")
	if err != nil {
		return false
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), payStatusTimeout)
	defer cancel()
	st, serr := c.Status(sctx, txHash)
	if !errors.Is(serr, client.ErrNotFoundAnywhere) {
		if serr == nil {
			fmt.Fprintf(stdout, "nonce %d stays pending: %s knows tx %s with %d certificates\n", n, st.Endpoint, txHash.Hex(), st.CertCount)
		}
		return false
	}
	if err := w.Release(key, n); err != nil {
		fmt.Fprintf(stdout, "nonce %d stays pending: %v\n", n, err)
		return false
	}
	fmt.Fprintf(stdout, "nonce %d is free again: the refused payment %s is unknown to the sidecars asked\n", n, txHash.Hex())
	return true
}

// payPrinter prints a payment's progress.
type payPrinter struct {
	w      io.Writer
	quorum int
	certs  int // verified certificates of the current payment so far
	// accepted: a sidecar confirmed it validated and signed the current
	// payment.
	accepted bool
}

func payMillis(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
}

func (p *payPrinter) event(ev client.Event) {
	switch ev.Kind {
	case client.EventAccepted:
		p.accepted = true
		fmt.Fprintf(p.w, "  accepted by %-28s +%s\n", ev.Endpoint, payMillis(ev.Elapsed))
	case client.EventCertificate:
		p.certs = max(p.certs, ev.Certs)
		fmt.Fprintf(p.w, "  certificate %d/%d  %-10s %s  +%s\n", ev.Certs, p.quorum, ev.SignerName, ev.Cert.Signer.Hex()[:18]+"…", payMillis(ev.Elapsed))
	case client.EventRetry:
		fmt.Fprintf(p.w, "  attempt %d at %s failed: %v; retrying\n", ev.Attempt, ev.Endpoint, ev.Err)
	case client.EventStage:
		if ev.Stage != fastpayv1.TxLifecycleUpdate_CERTIFIED {
			fmt.Fprintf(p.w, "  %s  +%s\n", ev.Stage, payMillis(ev.Elapsed))
		}
	}
}

func (p *payPrinter) result(res *client.Result, committee *qc.Committee) {
	names := make([]string, len(res.QC.Certs))
	for i, c := range res.QC.Certs {
		names[i] = c.SignerName
		if m, ok := committee.Member(c.Signer); ok {
			names[i] = m.Name
		}
	}
	fmt.Fprintf(p.w, "QC %s\n", res.QC.Hash.Hex())
	fmt.Fprintf(p.w, "  tx hash     %s\n", res.TxHash.Hex())
	fmt.Fprintf(p.w, "  signers     %s (%d of %d, quorum %d; verified)\n", strings.Join(names, ", "), len(names), committee.N(), committee.Quorum())
	fmt.Fprintf(p.w, "  time to QC  %s via %s (attempt %d)\n", payMillis(res.TimeToQC), res.Entry, res.Attempts)
}

// payKeyEnv names the environment variable that may hold the payer's key.
const payKeyEnv = "ALLEGRO_PAY_KEY"

// errPayKeySource: not exactly one source of the payer's key was given.
var errPayKeySource = errors.New("the payer's key")

// payLoadKey returns the payer's key from exactly one source: a development
// account named by --from, the file --key-file, or $ALLEGRO_PAY_KEY. A
// private key is never read from the command line: other users see argv in
// ps, and shells keep it in their history. Giving two sources is refused
// rather than ranked, so a key left in the environment never silently pays
// instead of the one meant.
func payLoadKey(from, keyFile string, getenv func(string) string) (*ecdsa.PrivateKey, string, error) {
	if strings.HasPrefix(from, "0x") || strings.HasPrefix(from, "0X") {
		return nil, "", fmt.Errorf("%w: --from takes a development account name, not a private key (ps and shell history would show it): put the hex key in a file and pass --key-file FILE, or set %s", errPayKeySource, payKeyEnv)
	}
	env := getenv(payKeyEnv)
	var given []string
	for _, g := range []struct {
		set  bool
		name string
	}{{from != "", "--from"}, {keyFile != "", "--key-file"}, {env != "", payKeyEnv}} {
		if g.set {
			given = append(given, g.name)
		}
	}
	switch len(given) {
	case 0:
		return nil, "", fmt.Errorf("%w is required: --key-file FILE or %s (or --from NAME for a development account)", errPayKeySource, payKeyEnv)
	case 1:
	default:
		return nil, "", fmt.Errorf("%w comes from one source, got %s: drop all but one", errPayKeySource, strings.Join(given, " and "))
	}
	switch {
	case keyFile != "":
		if err := committee.CheckSecretFileMode(keyFile); err != nil {
			return nil, "", err
		}
		f, err := os.Open(keyFile)
		if err != nil {
			return nil, "", fmt.Errorf("--key-file: %w", err)
		}
		defer f.Close()
		text, err := io.ReadAll(io.LimitReader(f, 4096))
		if err != nil {
			return nil, "", fmt.Errorf("--key-file: %w", err)
		}
		key, err := payParseKeyHex(string(text))
		if err != nil {
			return nil, "", fmt.Errorf("key file %s: %w", keyFile, err)
		}
		return key, crypto.PubkeyToAddress(key.PublicKey).Hex(), nil
	case env != "":
		key, err := payParseKeyHex(env)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", payKeyEnv, err)
		}
		return key, crypto.PubkeyToAddress(key.PublicKey).Hex(), nil
	}
	if acct, ok := payDevAccount(from); ok {
		return acct.Key, acct.Name + " " + acct.Address.Hex(), nil
	}
	return nil, "", fmt.Errorf("--from %q: use alice, bob, carol or loadN (other keys: --key-file or %s)", from, payKeyEnv)
}

// payParseKeyHex parses a hex secp256k1 private key, 0x optional, ignoring
// surrounding white space such as a trailing newline. The error never
// repeats the text: it may be a key with a typo.
func payParseKeyHex(text string) (*ecdsa.PrivateKey, error) {
	h := strings.TrimSpace(text)
	if strings.HasPrefix(h, "0x") || strings.HasPrefix(h, "0X") {
		h = h[2:]
	}
	if len(h) != 64 {
		return nil, fmt.Errorf("want a secp256k1 private key of 64 hex digits (0x optional), got %d characters", len(h))
	}
	key, err := crypto.HexToECDSA(h)
	if err != nil {
		return nil, errors.New("not a secp256k1 private key in hex")
	}
	return key, nil
}

// payResolveAddress resolves --to.
func payResolveAddress(s string) (common.Address, error) {
	if common.IsHexAddress(s) && strings.HasPrefix(strings.ToLower(s), "0x") {
		return common.HexToAddress(s), nil
	}
	if acct, ok := payDevAccount(s); ok {
		return acct.Address, nil
	}
	return common.Address{}, fmt.Errorf("--to %q: use alice, bob, carol, loadN or 0xADDRESS", s)
}

// payDevAccount looks a development account up by name: a demo account or
// loadN / load-N.
func payDevAccount(name string) (devkit.Account, bool) {
	name = strings.ToLower(name)
	for _, a := range devkit.DemoAccounts() {
		if a.Name == name {
			return a, true
		}
	}
	if rest, ok := strings.CutPrefix(name, "load"); ok {
		rest = strings.TrimPrefix(rest, "-")
		i, err := strconv.ParseUint(rest, 10, 31)
		if err != nil || strconv.FormatUint(i, 10) != rest {
			return devkit.Account{}, false
		}
		// LoadAccounts documents the derivation: keccak256("allegro-load-<i>").
		key := devkit.DeterministicKey("allegro-load-" + rest)
		return devkit.Account{Name: "load-" + rest, Key: key, Address: crypto.PubkeyToAddress(key.PublicKey)}, true
	}
	return devkit.Account{}, false
}

// payName renders an address with its demo name when it has one.
func payName(a common.Address) string {
	for _, d := range devkit.DemoAccounts() {
		if d.Address == a {
			return d.Name + " " + a.Hex()
		}
	}
	return a.Hex()
}

// payParseDollars parses a non-negative decimal dollar amount with at most 6
// decimals into token units.
func payParseDollars(s string) (uint64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" {
		return 0, errors.New("empty amount")
	}
	if len(frac) > devkit.TokenDecimals {
		return 0, fmt.Errorf("%q has more than %d decimals", s, devkit.TokenDecimals)
	}
	digits := whole + frac + strings.Repeat("0", devkit.TokenDecimals-len(frac))
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal amount", s)
		}
	}
	v, ok := new(big.Int).SetString(digits, 10)
	if !ok || !v.IsUint64() {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return v.Uint64(), nil
}

// payDollars renders units as dollars.
func payDollars(units uint64) string {
	s := fmt.Sprintf("%d.%06d", units/devkit.Dollar, units%devkit.Dollar)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + " dollars"
}

func payParseNonceKey(s string) (qc.NonceKey, error) {
	var k qc.NonceKey
	v, ok := new(big.Int).SetString(s, 0)
	if !ok || v.Sign() < 0 || v.BitLen() > 256 {
		return k, fmt.Errorf("%q is not a 256-bit unsigned integer", s)
	}
	v.FillBytes(k[:])
	return k, nil
}

func payNonceKeyString(k qc.NonceKey) string {
	return new(big.Int).SetBytes(k[:]).String()
}

var errPayNeedsChain = errors.New("the committee file sets epoch_length: give --chain-rpc, the chain node whose head tells the current epoch")

// payCommittee returns the committee to verify the payment's QC against:
// the file's, or on a network that changes epochs the current epoch's (from
// the file's members, or derived from the chain and the bindings), with the
// committees of other epochs, read when needed, for a QC that crosses a
// boundary or a parent of an earlier epoch. closeChain ends the chain
// connection.
func payCommittee(ctx context.Context, cf *committee.File, chainRPC, bindings string) (current *qc.Committee, committeeOf func(uint64) *qc.Committee, closeChain func(), err error) {
	if cf.EpochLength == 0 {
		c, err := cf.Committee()
		return c, nil, func() {}, err
	}
	if chainRPC == "" {
		return nil, nil, nil, errPayNeedsChain
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := dialChain(startCtx, chainRPC, cf.ChainID, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--chain-rpc: %w", err)
	}
	closeChain = func() { _ = cl.Stop(context.Background()) }
	view, err := cl.Latest(startCtx)
	if err != nil {
		closeChain()
		return nil, nil, nil, fmt.Errorf("--chain-rpc: %w", err)
	}
	res, err := committee.NewResolver(cf, cl, bindings)
	if err != nil {
		closeChain()
		return nil, nil, nil, err
	}
	if current, err = res.Committee(startCtx, cf.EpochOf(view.Head().Number)); err != nil {
		closeChain()
		return nil, nil, nil, err
	}
	return current, res.Func(ctx), closeChain, nil
}
