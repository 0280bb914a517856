package chain

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/allegro-mesh/allegro/tempo"
)

// Validators returns the chain's validator set, ValidatorConfig's
// getValidators(), in the state after block. Committees are derived from
// finalized blocks only, so the answer is never cached against a head.
func (c *Client) Validators(ctx context.Context, block uint64) ([]tempo.Validator, error) {
	var vs []tempo.Validator
	decode := func(raw json.RawMessage) error {
		var b []byte
		if err := decodeData(&b)(raw); err != nil {
			return err
		}
		var err error
		vs, err = tempo.DecodeValidators(b)
		return err
	}
	args := callArgs(tempo.ValidatorConfigAddress, tempo.GetValidatorsCalldata())
	if err := c.call(ctx, "eth_call", decode, args, hexutil.EncodeUint64(block)); err != nil {
		return nil, fmt.Errorf("chain: getValidators at block %d: %w", block, err)
	}
	return vs, nil
}
