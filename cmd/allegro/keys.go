package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

func init() {
	app.Register("keygen", "create a validator key file (ed25519, mode 0600)", runKeygen)
	app.Register("committee", "build a committee file from validators' public keys and addresses; derive: print an epoch's committee from the chain and bindings; mesh: the mesh its sidecars form under given dials", runCommittee)
}

func runKeygen(_ context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("keygen", "--out FILE [--name NAME]")
	out := fs.String("out", "validator.key", "key file to create (never overwritten)")
	name := fs.String("name", "", "validator name recorded in the key file (default: the file name)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *name == "" {
		*name = strings.TrimSuffix(filepath.Base(*out), filepath.Ext(*out))
	}
	key, err := committee.GenerateKey()
	if err != nil {
		return err
	}
	// The key usually goes into the sidecar's data directory, which need
	// not exist yet; only its owner should list it.
	if err := os.MkdirAll(filepath.Dir(*out), 0o700); err != nil {
		return fmt.Errorf("keygen: create the directory of --out: %w", err)
	}
	if err := committee.WriteKeyFile(*out, *name, key); err != nil {
		return err
	}
	return printIdentity(stdout, *name, key, *out)
}

func printIdentity(w io.Writer, name string, key ed25519.PrivateKey, path string) error {
	id, err := qc.ValidatorIDFromBytes(key.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	pid, err := p2p.PeerIDFromValidatorID(id)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "key file:    %s\nname:        %s\npublic key:  %s\npeer id:     %s\n", path, name, hex.EncodeToString(id[:]), pid)
	return nil
}

// memberFlag collects repeated --member NAME=PUBKEY[@ADDR,ADDR...] values.
type memberFlag []committee.Member

func (m *memberFlag) String() string { return fmt.Sprint(len(*m), " members") }

func (m *memberFlag) Set(v string) error {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return errors.New("want NAME=PUBLIC_KEY[@MULTIADDR[,MULTIADDR...]]")
	}
	pub, addrs, _ := strings.Cut(rest, "@")
	member := committee.Member{Name: name, PublicKey: strings.TrimPrefix(pub, "0x")}
	if addrs != "" {
		for _, a := range strings.Split(addrs, ",") {
			if _, err := ma.NewMultiaddr(a); err != nil {
				return fmt.Errorf("member %s: address %q: %w", name, a, err)
			}
			member.Addrs = append(member.Addrs, a)
		}
	}
	*m = append(*m, member)
	return nil
}

func runCommittee(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "derive" {
		return runCommitteeDerive(ctx, args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "mesh" {
		return runCommitteeMesh(ctx, args[1:], stdout)
	}
	fs := app.Flags("committee", "--chain-id N --member NAME=PUBKEY@ADDR ... [--key-file FILE@ADDR ...] --out FILE\n   or: allegro committee "+deriveSynopsis+"\n   or: allegro committee "+meshSynopsis)
	chainID := fs.Uint64("chain-id", 1337, "chain id (Tempo mainnet 4217, testnet 42431, dev 1337)")
	epoch := fs.Uint64("epoch", 1, "committee epoch (with --epoch-length: the network's first)")
	epochLength := fs.Uint64("epoch-length", 0, "blocks per mesh epoch: the mesh changes epochs with the chain (0: one epoch, for good)")
	source := fs.String("committee-source", committee.SourceFile, `where each epoch's committee comes from: "file" (the members given here) or "chain" (the chain's validator set and the bindings; the members given here are then an address book of sidecar keys); "chain" needs --epoch-length`)
	shards := fs.Int("qc-shards", 16, "number of QC topics")
	testNet := fs.Bool("test-network", false, "mark the network as a test network (allows test-only sidecar modes)")
	feeModel := fs.String("fee-model", "tempo", `how the chain charges fees: "tempo" (a USD TIP-20 fee token) or "native" (native gas, as on allegro-dev devchain)`)
	margin := fs.Duration("settlement-margin", 10*time.Second, "how long a 0x76 transaction must stay valid after it is certified")
	out := fs.String("out", "committee.toml", "committee file to write")
	var members memberFlag
	fs.Var(&members, "member", "a validator: NAME=HEX_PUBLIC_KEY[@MULTIADDR[,MULTIADDR...]] (repeat)")
	var keyFiles []string
	fs.Func("key-file", "a validator from its key file: FILE[@MULTIADDR[,...]] (repeat; reads only the public key)", func(v string) error {
		keyFiles = append(keyFiles, v)
		return nil
	})
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	for _, kf := range keyFiles {
		path, addrs, _ := strings.Cut(kf, "@")
		name, key, err := committee.LoadKeyFile(path)
		if err != nil {
			return err
		}
		spec := name + "=" + hex.EncodeToString(key.Public().(ed25519.PublicKey))
		if addrs != "" {
			spec += "@" + addrs
		}
		if err := members.Set(spec); err != nil {
			return err
		}
	}
	f := &committee.File{ChainID: *chainID, Epoch: *epoch, QCShards: *shards, TestNetwork: *testNet,
		FeeModel: *feeModel, SettlementMargin: *margin, Members: members, EpochLength: *epochLength}
	if *source != committee.SourceFile {
		f.CommitteeSource = *source
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("committee: %w", err)
	}
	if err := f.Write(*out); err != nil {
		return err
	}
	if f.FromChain() {
		fmt.Fprintf(stdout, "wrote %s: %d sidecar addresses; each epoch's committee (%d blocks) comes from chain %d's validator set and the bindings, from epoch %d\n",
			*out, len(f.Members), f.EpochLength, *chainID, *epoch)
		return nil
	}
	c, _ := f.Committee()
	fmt.Fprintf(stdout, "wrote %s: %d validators, quorum %d, chain %d epoch %d, committee hash %s\n", *out, c.N(), c.Quorum(), *chainID, *epoch, c.Hash())
	return nil
}
