package safety

import (
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"time"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// Payment is one payment the load driver attempted (filled by the e2e
// runner).
type Payment struct {
	Name        string     // driver's label, e.g. "load7#12" or "chain:alice->bob"
	TxHash      qc.Hash    // FastPay tx hash (zero if never computed)
	ChainTx     qc.Hash    // the chain's hash of the signed transaction, to find it on chain (zero if not recorded)
	Sender      qc.Address // the paying account
	Conflicting bool       // deliberately one of a double-spend pair
	// ConflictGroup names the double-spend set this payment belongs to:
	// payments sharing a non-empty group are mutually exclusive, so at most
	// one of them may get a QC. Empty: conflicting payments are grouped by
	// the contention key their certificates carry.
	ConflictGroup string
	ParentTx      qc.Hash   // non-zero for the child of a chained payment
	SubmittedTo   string    // sidecar name
	QuorumSide    bool      // submitted to a sidecar that was on a side with a quorum at that time
	Phase         string    // fault phase during which it was submitted ("baseline", "kill:v2", ...)
	Sent          time.Time // when the driver submitted it
	QCAt          time.Time // zero if the client never saw a QC
	// Outcome is what the entry sidecar answered: "certified" (it returned
	// its certificate: the payment was accepted), "rejected:<REJECT_CODE>"
	// or "error:<short text>" (transport failure, timeout, ...).
	Outcome string
	// Fee is what the payment's transaction may be charged for its
	// inclusion, as the driver signed it; nil when not recorded (runs
	// stored before fees were recorded). Check counts the maximum fee of a
	// certified payment against its payer and judges a 0x76 transaction's
	// validity window against the settlement margin (SPEC §4).
	Fee *PaymentFee
	// FeeTight marks a payment from an account funded with exactly what it
	// needs, or less: a probe of the validators' fee rule, counted apart in
	// the report.
	FeeTight bool
}

// PaymentFee is the fee side of a payment (SPEC §4, settlement
// guarantees): a certified payment must be able to pay for its own
// inclusion, and a 0x76 transaction must stay valid long enough to settle.
type PaymentFee struct {
	// Payer is the account charged: a sponsored 0x76 transaction's fee
	// payer, else the sender.
	Payer qc.Address
	// Token is what the fee is paid in: a TIP-20 token, or NativeToken
	// where gas is paid in the chain's native currency (the dev chain).
	Token qc.Address
	// Max is the maximum fee in Token's units: ceil(gas_limit ×
	// max_fee_per_gas / 10^12) of a USD token on Tempo, gas_limit ×
	// max_fee_per_gas wei in the native currency.
	Max *big.Int
	// ValidBefore and ValidAfter are a 0x76 transaction's validity window
	// in unix seconds; zero when the transaction sets none.
	ValidBefore, ValidAfter uint64
}

// NativeToken stands for a chain's native currency among fee tokens (the
// zero address, as tempo.NativeGas): Balances reads native balances for it.
var NativeToken = qc.Address(tempo.NativeGas)

// Outcomes of a Payment, and prefixes of the parametrised ones.
const (
	OutcomeCertified      = "certified"
	OutcomeRejectedPrefix = "rejected:"
	OutcomeErrorPrefix    = "error:"
)

// Accepted reports whether the entry sidecar returned its certificate.
func (p *Payment) Accepted() bool { return p.Outcome == OutcomeCertified }

// RejectCode returns the reject code of a rejected payment, or "".
func (p *Payment) RejectCode() string {
	code, ok := strings.CutPrefix(p.Outcome, OutcomeRejectedPrefix)
	if !ok {
		return ""
	}
	return code
}

// Phase is one period of a run: the baseline, a fault being applied, or the
// recovery after it. Phases may not overlap.
type Phase struct {
	Name       string
	Start, End time.Time
	// NoQuorum marks a phase in which no side of the network held a quorum
	// (a partition into minorities). Nothing may be certified during it
	// (SPEC §7.5): Check flags a QC that a source held before the phase
	// ended and whose certificates created during the phase do not all come
	// from one side (see Sides).
	NoQuorum bool
	// Sides are the groups of validators (committee names) that could
	// exchange messages with each other during the phase, each with fewer
	// members than a quorum when NoQuorum is set; a validator on no side
	// could reach nobody. Empty when not recorded (runs stored before sides
	// were recorded): Check then explains no certificate created during the
	// phase by a side.
	Sides [][]string
}

// Run is what the driver records.
type Run struct {
	Payments []Payment
	Phases   []Phase
	// Boundaries are the epoch boundaries the run crossed, in order
	// (empty on a network without epochs): Check reports the time to QC
	// of the payments sent around each.
	Boundaries []Boundary
}

// Boundary is the start of a mesh epoch as the driver saw it: the first
// time it found the chain's head at or past the epoch's first block.
type Boundary struct {
	Epoch  uint64
	Height uint64 // the epoch's first block
	At     time.Time
}

// Sidecar locates one sidecar's HTTP API for Collect.
type Sidecar struct {
	Name   string // committee member name
	APIURL string // base URL, e.g. http://127.0.0.1:7071
	Honest bool   // false for a deliberately Byzantine validator
}

// DefaultToken is the dev chain's TIP-20 token.
var DefaultToken = qc.Address(devkit.TokenAddress)

// Defaults of CollectConfig.
const (
	DefaultPageSize       = 1000
	DefaultMaxPages       = 10_000
	DefaultMaxTxLookups   = 200_000
	DefaultConcurrency    = 8
	DefaultRequestTimeout = 10 * time.Second
	DefaultCollectTimeout = 10 * time.Minute
)

// CollectConfig says where Collect gathers from. Zero values take the
// documented defaults.
type CollectConfig struct {
	// Sidecars are the validators' APIs. At least one is required.
	Sidecars []Sidecar
	// CommitteeFile is the network's committee file (committee.LoadFile
	// format). Required.
	CommitteeFile string
	// Epochs are the committees of the run's other epochs (from the chain's
	// validator set and the sidecars' bindings), each of the committee
	// file's chain and of an epoch of its own: the history is checked
	// against every epoch's committee (SPEC §5a). Optional, except when the
	// committee file takes its committees from the chain
	// (committee_source = "chain"): its members are then only an address
	// book, and Epochs, in order, are every committee (the first is the
	// history's Committee).
	Epochs []*qc.Committee
	// ChainRPC is the chain's JSON-RPC URL. When set, Collect reads the
	// chain nonce (key 0) of every sender of a certified payment, so a
	// payment that no sidecar reports as settled can still be shown on
	// chain. Optional.
	ChainRPC string
	// ChainTxs are transactions, by chain hash, whose receipts Collect
	// reads from ChainRPC (the run's payments' Payment.ChainTx): a payment
	// that got no QC may still have reached the chain, since anyone holding
	// its raw transaction can send it there. Optional.
	ChainTxs []qc.Hash
	// Token is the TIP-20 token InitialBalances are denominated in
	// (default DefaultToken).
	Token qc.Address
	// LightClientQCs maps a light client's name to the raw QC protobuf
	// bytes it accepted.
	LightClientQCs map[string][][]byte
	// InitialBalances are the Token balances at run start (see Balances).
	// Accounts missing here are reported as not checked for overdraft.
	InitialBalances map[qc.Address]*big.Int
	// InitialFeeBalances are the balances at run start of the fee tokens
	// other than Token, per fee token (NativeToken for the native
	// currency) and account: the payers' funds for the maximum fees of
	// their certified payments (Payment.Fee). A payer missing here is
	// reported as not checked for its fees.
	InitialFeeBalances map[qc.Address]map[qc.Address]*big.Int
	// TxHashes are transactions to look up on every sidecar besides those
	// of the certificates found (the run's payments).
	TxHashes []qc.Hash

	// PageSize is the bulletin page size requested (default 1000, the
	// sidecars' maximum).
	PageSize int
	// MaxPages bounds the bulletin pages read per sidecar (default 10,000).
	MaxPages int
	// MaxTxLookups bounds the transactions looked up per sidecar (default
	// 200,000).
	MaxTxLookups int
	// Concurrency is the number of requests in flight per sidecar
	// (default 8).
	Concurrency int
	// RequestTimeout bounds each HTTP request (default 10 s).
	RequestTimeout time.Duration
	// Timeout bounds the whole collection (default 10 min).
	Timeout time.Duration
	// Logger receives progress and warnings (default slog.Default()).
	Logger *slog.Logger
}

// withDefaults fills zero fields.
func (c CollectConfig) withDefaults() CollectConfig {
	if c.Token == (qc.Address{}) {
		c.Token = DefaultToken
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.MaxPages == 0 {
		c.MaxPages = DefaultMaxPages
	}
	if c.MaxTxLookups == 0 {
		c.MaxTxLookups = DefaultMaxTxLookups
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultCollectTimeout
	}
	return c
}

// Validate checks the configuration after defaults, naming the bad field.
func (c CollectConfig) Validate() error {
	c = c.withDefaults()
	if len(c.Sidecars) == 0 {
		return errors.New("safety: CollectConfig.Sidecars: at least one sidecar is required")
	}
	names := make(map[string]bool, len(c.Sidecars))
	for i, s := range c.Sidecars {
		if s.Name == "" {
			return fmt.Errorf("safety: CollectConfig.Sidecars[%d].Name is empty", i)
		}
		if names[s.Name] {
			return fmt.Errorf("safety: CollectConfig.Sidecars[%d].Name %q is listed twice", i, s.Name)
		}
		names[s.Name] = true
		if !strings.HasPrefix(s.APIURL, "http://") && !strings.HasPrefix(s.APIURL, "https://") {
			return fmt.Errorf("safety: CollectConfig.Sidecars[%d].APIURL %q must be an http:// or https:// URL", i, s.APIURL)
		}
	}
	if c.CommitteeFile == "" {
		return errors.New("safety: CollectConfig.CommitteeFile is required")
	}
	for i, e := range c.Epochs {
		if e == nil {
			return fmt.Errorf("safety: CollectConfig.Epochs[%d] is nil", i)
		}
	}
	for name := range c.LightClientQCs {
		if name == "" {
			return errors.New("safety: CollectConfig.LightClientQCs: a light client name is empty")
		}
		if names[name] {
			return fmt.Errorf("safety: CollectConfig.LightClientQCs: light client %q has a sidecar's name", name)
		}
	}
	for addr, b := range c.InitialBalances {
		if b == nil || b.Sign() < 0 {
			return fmt.Errorf("safety: CollectConfig.InitialBalances[%s] must be a non-negative amount", addr.Hex())
		}
	}
	for token, m := range c.InitialFeeBalances {
		for addr, b := range m {
			if b == nil || b.Sign() < 0 {
				return fmt.Errorf("safety: CollectConfig.InitialFeeBalances[%s][%s] must be a non-negative amount", token.Hex(), addr.Hex())
			}
		}
	}
	switch {
	case c.PageSize < 1 || c.PageSize > 1_000_000:
		return fmt.Errorf("safety: CollectConfig.PageSize must be between 1 and 1,000,000, got %d", c.PageSize)
	case c.MaxPages < 1:
		return fmt.Errorf("safety: CollectConfig.MaxPages must be positive, got %d", c.MaxPages)
	case c.MaxTxLookups < 1:
		return fmt.Errorf("safety: CollectConfig.MaxTxLookups must be positive, got %d", c.MaxTxLookups)
	case c.Concurrency < 1 || c.Concurrency > 256:
		return fmt.Errorf("safety: CollectConfig.Concurrency must be between 1 and 256, got %d", c.Concurrency)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("safety: CollectConfig.RequestTimeout must be positive, got %s", c.RequestTimeout)
	case c.Timeout <= 0:
		return fmt.Errorf("safety: CollectConfig.Timeout must be positive, got %s", c.Timeout)
	}
	return nil
}
