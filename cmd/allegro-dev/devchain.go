package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

func init() {
	app.Register("devchain", "run the embedded development chain (EVM with a TIP-20 token and funded demo accounts)", runDevchain)
}

func runDevchain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("devchain", "[flags]")
	host := fs.String("host", "127.0.0.1", "JSON-RPC listen host")
	port := fs.Int("port", 8545, "HTTP JSON-RPC port (WebSocket on the same port unless --ws-port)")
	wsPort := fs.Int("ws-port", 0, "WebSocket port (0: same as --port)")
	period := fs.Duration("block-period", time.Second, "time between blocks")
	chainID := fs.Uint64("chain-id", devchain.DefaultChainID, "chain id")
	dataDir := fs.String("datadir", "", "keep chain state here (empty: in memory)")
	loadAccounts := fs.Int("load-accounts", 64, "number of funded load-test accounts")
	validatorsFrom := fs.String("validators", "", "committee file whose members are the genesis validators of the chain's ValidatorConfig (empty: none)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	var validators []tempo.Validator
	if *validatorsFrom != "" {
		var err error
		if validators, err = devValidatorsFromCommittee(*validatorsFrom); err != nil {
			return fmt.Errorf("devchain --validators: %w", err)
		}
	}
	chain, err := devchain.New(devchain.Config{
		ChainID: *chainID, BlockPeriod: *period, Host: *host, HTTPPort: *port, WSPort: *wsPort,
		DataDir: *dataDir, LoadAccounts: *loadAccounts, Validators: validators,
	})
	if err != nil {
		return err
	}
	if err := chain.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dev chain %d: HTTP %s  WS %s  block every %s\n", *chainID, chain.HTTPEndpoint(), chain.WSEndpoint(), *period)
	fmt.Fprintf(stdout, "token %s (6 decimals)\n", devkit.TokenAddress.Hex())
	for _, a := range devkit.DemoAccounts() {
		fmt.Fprintf(stdout, "  %-6s %s  %s dollars\n", a.Name, a.Address.Hex(), strconv.FormatUint(a.Tokens/devkit.Dollar, 10))
	}
	fmt.Fprintf(stdout, "validator config %s: %d genesis validators, owner %s (allegro-dev validators)\n",
		tempo.ValidatorConfigAddress.Hex(), len(validators), devkit.ValidatorConfigOwner().Address.Hex())
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return chain.Stop(stopCtx)
}
