package devkit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/allegro-mesh/allegro/tempo"
)

// ReadValidators returns the dev chain's ValidatorConfig set at its head.
func ReadValidators(ctx context.Context, ec *ethclient.Client) ([]tempo.Validator, error) {
	to := tempo.ValidatorConfigAddress
	ret, err := ec.CallContract(ctx, ethereum.CallMsg{To: &to, Data: tempo.GetValidatorsCalldata()}, nil)
	if err != nil {
		return nil, fmt.Errorf("getValidators: %w", err)
	}
	return tempo.DecodeValidators(ret)
}

// OwnerCall sends data to the ValidatorConfig from its owner
// (ValidatorConfigOwner) and waits for the receipt, failing on a revert. A
// call that would revert is refused before it is sent, with the contract's
// error named.
func OwnerCall(ctx context.Context, ec *ethclient.Client, data []byte) error {
	owner := ValidatorConfigOwner()
	chainID, err := ec.ChainID(ctx)
	if err != nil {
		return err
	}
	nonce, err := ec.PendingNonceAt(ctx, owner.Address)
	if err != nil {
		return err
	}
	tx, err := SignCall(owner.Key, nonce, tempo.ValidatorConfigAddress, data, chainID, 0, Fees{})
	if err != nil {
		return err
	}
	to := tempo.ValidatorConfigAddress
	if _, err := ec.CallContract(ctx, ethereum.CallMsg{From: owner.Address, To: &to, Data: data}, nil); err != nil {
		return fmt.Errorf("the ValidatorConfig refuses it: %w", revertReason(err))
	}
	if err := ec.SendTransaction(ctx, tx); err != nil {
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := ec.TransactionReceipt(ctx, tx.Hash())
		if err == nil {
			if r.Status != 1 {
				return fmt.Errorf("transaction %s reverted", tx.Hash())
			}
			return nil
		}
		if !errors.Is(err, ethereum.NotFound) && !strings.Contains(err.Error(), "indexing is in progress") {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no receipt for %s: %w", tx.Hash(), ctx.Err())
		case <-tick.C:
		}
	}
}

// revertReason names the ValidatorConfig error in a reverted call's data.
func revertReason(err error) error {
	var de interface{ ErrorData() any }
	if !errors.As(err, &de) {
		return err
	}
	s, _ := de.ErrorData().(string)
	data, decErr := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if decErr != nil || len(data) < 4 {
		return err
	}
	for name, e := range tempo.ValidatorConfigABI.Errors {
		if [4]byte(e.ID[:4]) == [4]byte(data[:4]) {
			return fmt.Errorf("%s()", name)
		}
	}
	return err
}
