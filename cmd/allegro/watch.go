package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/lightclient"
)

func init() {
	app.Register("watch", "light client: print verified incoming payments to addresses (joins only their QC shards)", runWatch)
}

// watchAddressFlag collects repeated --address values.
type watchAddressFlag []common.Address

func (w *watchAddressFlag) String() string { return fmt.Sprint(len(*w), " addresses") }

func (w *watchAddressFlag) Set(v string) error {
	if !common.IsHexAddress(v) {
		return fmt.Errorf("%q is not a 20-byte hex address", v)
	}
	*w = append(*w, common.HexToAddress(v))
	return nil
}

// watchJSON is one --json output line.
type watchJSON struct {
	Time        string   `json:"time"`
	From        string   `json:"from"`
	To          string   `json:"to"`
	Amount      string   `json:"amount"` // dollars, 6 decimals
	AmountUnits uint64   `json:"amount_units"`
	Asset       string   `json:"asset"`
	NonceKey    string   `json:"nonce_key"`
	NonceSeq    uint64   `json:"nonce_seq"`
	TxHash      string   `json:"tx_hash"`
	QCHash      string   `json:"qc_hash"`
	Signers     []string `json:"signers"`
	// QCProtoHex is the accepted QC as a QuorumCertificate protobuf in hex
	// (with --with-qc), so a safety checker can verify it again.
	QCProtoHex string `json:"qc_proto_hex,omitempty"`
}

// dollars formats token units (6 decimals) as dollars.
func dollars(units uint64) string {
	return fmt.Sprintf("%d.%06d", units/1_000_000, units%1_000_000)
}

const watchTimeFormat = "2006-01-02T15:04:05.000Z07:00"

func printPayment(w io.Writer, p lightclient.Payment, asJSON, withQC bool) error {
	if asJSON {
		out := watchJSON{
			Time: p.ReceivedAt.UTC().Format(watchTimeFormat), From: p.From.Hex(), To: p.To.Hex(),
			Amount: dollars(p.Amount), AmountUnits: p.Amount, Asset: p.Asset.Hex(),
			NonceKey: "0x" + hex.EncodeToString(p.NonceKey[:]), NonceSeq: p.NonceSeq,
			TxHash: p.TxHash.Hex(), QCHash: p.QCHash.Hex(), Signers: p.Signers,
		}
		if withQC && p.QC != nil {
			b, err := client.MarshalQC(p.QC)
			if err != nil {
				return fmt.Errorf("encode QC %s: %w", p.QCHash, err)
			}
			out.QCProtoHex = hex.EncodeToString(b)
		}
		line, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", line)
		return err
	}
	_, err := fmt.Fprintf(w, "%s from=%s to=%s amount=$%s tx=%s qc=%s signers=%s\n",
		p.ReceivedAt.UTC().Format(watchTimeFormat), p.From.Hex(), p.To.Hex(), dollars(p.Amount),
		p.TxHash.Hex(), p.QCHash.Hex(), strings.Join(p.Signers, ","))
	return err
}

func runWatch(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("watch", "--address 0x... [--address ...] --committee committee.toml [--bootstrap MULTIADDR/p2p/ID ...] [flags]")
	var addrs watchAddressFlag
	fs.Var(&addrs, "address", "address whose incoming payments to print (repeat)")
	committeePath := fs.String("committee", "", "committee file of the network (required)")
	var bootstrap []ma.Multiaddr
	fs.Func("bootstrap", "sidecar to connect to, as MULTIADDR/p2p/PEER_ID (repeat; default: the committee file's member addresses)", func(v string) error {
		a, err := ma.NewMultiaddr(v)
		if err != nil {
			return err
		}
		bootstrap = append(bootstrap, a)
		return nil
	})
	var listen []string
	fs.Func("listen", "libp2p listen multiaddr (repeat; default: 127.0.0.1 TCP and QUIC on OS-chosen ports, enough to dial out)", func(v string) error {
		listen = append(listen, v)
		return nil
	})
	count := fs.Int("count", 0, "exit after this many payments (0: run until interrupted)")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	withQC := fs.Bool("with-qc", false, "with --json: add the accepted QC (protobuf, hex) as qc_proto_hex")
	logLevel := fs.String("log-level", "info", "log level on stderr: debug, info, warn, error")
	chainRPC := fs.String("chain-rpc", "", "chain node JSON-RPC URL: on a network that changes epochs (epoch_length in the committee file) the light client follows the chain's epochs, verifying each payment against its epoch's committee (with committee_source = \"chain\", derived from chain state and --bindings)")
	bindingsDir := fs.String("bindings", "bindings", `with committee_source = "chain": directory of the validators' binding files`)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if len(addrs) == 0 {
		return errors.New("at least one --address is required")
	}
	if *committeePath == "" {
		return errors.New("--committee is required")
	}
	if *count < 0 {
		return fmt.Errorf("--count must not be negative, got %d", *count)
	}
	logger, err := cli.NewLogger(*logLevel, "")
	if err != nil {
		return err
	}
	f, err := committee.LoadFile(*committeePath)
	if err != nil {
		return err
	}
	if f.EpochLength > 0 && *chainRPC == "" {
		return fmt.Errorf("%s sets epoch_length: give --chain-rpc, the chain node whose head tells the epoch to follow", *committeePath)
	}
	var boot []peer.AddrInfo
	if len(bootstrap) > 0 {
		if boot, err = peer.AddrInfosFromP2pAddrs(bootstrap...); err != nil {
			return fmt.Errorf("--bootstrap: %w (want MULTIADDR/p2p/PEER_ID)", err)
		}
	} else {
		members, err := f.Bootstrap()
		if err != nil {
			return err
		}
		for _, m := range members {
			if len(m.Addrs) > 0 {
				boot = append(boot, m)
			}
		}
		if len(boot) == 0 {
			return fmt.Errorf("no --bootstrap given and %s lists no member addresses", *committeePath)
		}
	}

	cfg := lightclient.DefaultConfig()
	cfg.QCShards = f.QCShards
	cfg.Bootstrap = boot
	cfg.Watch = addrs
	cfg.Logger = logger
	if len(listen) > 0 {
		cfg.P2P.ListenAddrs = listen
	}
	var lc interface {
		Start(context.Context) error
		Stop(context.Context) error
		Payments() <-chan lightclient.Payment
	}
	if f.EpochLength > 0 {
		cl, err := dialChain(ctx, *chainRPC, f.ChainID, logger)
		if err != nil {
			return fmt.Errorf("--chain-rpc: %w", err)
		}
		defer cl.Stop(context.Background())
		res, err := committee.NewResolver(f, cl, *bindingsDir)
		if err != nil {
			return err
		}
		if lc, err = lightclient.NewFollower(cfg, lightclient.FollowConfig{Committees: res, Chain: cl, EpochOf: f.EpochOf}); err != nil {
			return err
		}
	} else {
		if cfg.Committee, err = f.Committee(); err != nil {
			return err
		}
		if lc, err = lightclient.New(cfg, nil); err != nil {
			return err
		}
	}
	if err := lc.Start(ctx); err != nil {
		_ = lc.Stop(context.Background())
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := lc.Stop(stopCtx); err != nil {
			logger.Warn("light client stop", "err", err)
		}
	}()
	logger.Info("watching", "addresses", len(addrs), "chain_id", f.ChainID, "epoch_length", f.EpochLength)

	received := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case p, ok := <-lc.Payments():
			if !ok {
				return errors.New("light client stopped")
			}
			if err := printPayment(stdout, p, *asJSON, *withQC); err != nil {
				return err
			}
			received++
			if *count > 0 && received >= *count {
				return nil
			}
		}
	}
}
