package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

func init() {
	app.Register("validators", "list, add, activate or deactivate validators of a dev chain's ValidatorConfig (as its owner)", runValidators)
}

const validatorsUsage = `list | add (--key-file FILE | --public-key HEX) [--inbound HOST:PORT] | activate KEY | deactivate KEY
  KEY is a validator's ed25519 public key (hex) or its validator address (0x…)`

func runValidators(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("validators", validatorsUsage)
	rpcURL := fs.String("rpc", "http://127.0.0.1:8545", "the dev chain's JSON-RPC URL")
	keyFile := fs.String("key-file", "", "add: the validator's key file (only its public key is read)")
	pubHex := fs.String("public-key", "", "add: the validator's ed25519 public key (hex)")
	inbound := fs.String("inbound", "", "add: the validator's inbound address, HOST:PORT")
	timeout := fs.Duration("timeout", 30*time.Second, "give up waiting for the owner's transaction after this long")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return cli.Parse(fs, args)
		}
		return errors.New("want a command first: list, add, activate or deactivate (-h for flags)")
	}
	cmd := args[0]
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ec, err := ethclient.DialContext(ctx, *rpcURL)
	if err != nil {
		return fmt.Errorf("dial %s: %w", *rpcURL, err)
	}
	defer ec.Close()
	switch cmd {
	case "list":
		vs, err := devkit.ReadValidators(ctx, ec)
		if err != nil {
			return err
		}
		return printValidators(stdout, vs)
	case "add":
		pub, err := publicKeyArg(*keyFile, *pubHex)
		if err != nil {
			return fmt.Errorf("add: %w", err)
		}
		v := tempo.Validator{PublicKey: pub, Active: true, ValidatorAddress: devkit.ValidatorAddress(pub), InboundAddress: *inbound}
		data, err := tempo.AddValidatorCalldata(v)
		if err != nil {
			return err
		}
		if err := devkit.OwnerCall(ctx, ec, data); err != nil {
			return fmt.Errorf("add %x: %w", pub, err)
		}
		fmt.Fprintf(stdout, "added validator %x (address %s)\n", pub, v.ValidatorAddress)
		return nil
	case "activate", "deactivate":
		if fs.NArg() != 1 {
			return fmt.Errorf("%s: want one KEY (a public key or a validator address), after the flags", cmd)
		}
		vs, err := devkit.ReadValidators(ctx, ec)
		if err != nil {
			return err
		}
		v, err := findValidator(vs, fs.Arg(0))
		if err != nil {
			return err
		}
		if err := devkit.OwnerCall(ctx, ec, tempo.ChangeValidatorStatusCalldata(v.ValidatorAddress, cmd == "activate")); err != nil {
			return fmt.Errorf("%s %x: %w", cmd, v.PublicKey, err)
		}
		fmt.Fprintf(stdout, "%sd validator %x\n", cmd, v.PublicKey)
		return nil
	default:
		return fmt.Errorf("unknown command %q: want list, add, activate or deactivate", cmd)
	}
}

// devValidatorsFromCommittee turns a committee file's members into genesis
// validators of the dev chain, active, in the file's order.
func devValidatorsFromCommittee(path string) ([]tempo.Validator, error) {
	f, err := committee.LoadFile(path)
	if err != nil {
		return nil, err
	}
	vs := make([]tempo.Validator, 0, len(f.Members))
	for _, m := range f.Members {
		pub, err := parsePublicKey(m.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("committee file %s: member %q: %w", path, m.Name, err)
		}
		v := tempo.Validator{PublicKey: pub, Active: true, ValidatorAddress: devkit.ValidatorAddress(pub)}
		if len(m.Addrs) > 0 {
			v.InboundAddress = m.Addrs[0]
		}
		vs = append(vs, v)
	}
	return vs, nil
}

func publicKeyArg(keyFile, pubHex string) ([32]byte, error) {
	switch {
	case (keyFile == "") == (pubHex == ""):
		return [32]byte{}, errors.New("add wants exactly one of --key-file and --public-key")
	case keyFile != "":
		_, key, err := committee.LoadKeyFile(keyFile)
		if err != nil {
			return [32]byte{}, err
		}
		return [32]byte(key.Public().(ed25519.PublicKey)), nil
	default:
		return parsePublicKey(pubHex)
	}
}

func parsePublicKey(s string) ([32]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil || len(b) != 32 {
		return [32]byte{}, fmt.Errorf("public key %q is not 32 bytes of hex", s)
	}
	return [32]byte(b), nil
}

func findValidator(vs []tempo.Validator, key string) (tempo.Validator, error) {
	for _, v := range vs {
		if strings.EqualFold(strings.TrimPrefix(key, "0x"), hex.EncodeToString(v.PublicKey[:])) ||
			(common.IsHexAddress(key) && common.HexToAddress(key) == v.ValidatorAddress) {
			return v, nil
		}
	}
	return tempo.Validator{}, fmt.Errorf("no validator %s on chain", key)
}

func printValidators(w io.Writer, vs []tempo.Validator) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tACTIVE\tPUBLIC KEY\tADDRESS\tINBOUND")
	for _, v := range vs {
		fmt.Fprintf(tw, "%d\t%v\t%x\t%s\t%s\n", v.Index, v.Active, v.PublicKey, v.ValidatorAddress, v.InboundAddress)
	}
	return tw.Flush()
}
