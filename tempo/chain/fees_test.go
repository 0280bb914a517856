package chain

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/allegro-mesh/allegro/tempo"
)

// TestTempoFeesOverRPC: Tempo's fee rule resolved through the chain client
// against a scripted Tempo-shaped node: the payer's preference is read from
// the FeeManager (getUserToken), for the fee payer of a sponsored
// transaction, and without one the fee is taken from the transferred token;
// a native-gas chain's balance is eth_getBalance.
func TestTempoFeesOverRPC(t *testing.T) {
	sender := common.HexToAddress("0x00000000000000000000000000000000000a11ce")
	sponsor := common.HexToAddress("0x000000000000000000000000000000000000fee5")
	preferred := common.HexToAddress("0x20c0000000000000000000000000000000000002")
	asset := testToken
	prefs := map[common.Address]common.Address{sponsor: preferred}

	f := newFakeNode(t)
	var feeManagerCalls []common.Address
	f.handle("eth_call", func(params []json.RawMessage) fakeAnswer {
		var call struct {
			To   common.Address `json:"to"`
			Data string         `json:"data"`
		}
		_ = json.Unmarshal(params[0], &call)
		if call.To != tempo.FeeManager || !strings.HasPrefix(call.Data, "0x91b24b58") {
			return fakeAnswer{err: `{"code":-32000,"message":"unexpected call"}`}
		}
		who := common.HexToAddress(call.Data[len(call.Data)-40:])
		feeManagerCalls = append(feeManagerCalls, who)
		token := prefs[who]
		return fakeAnswer{result: `"0x000000000000000000000000` + hex.EncodeToString(token.Bytes()) + `"`}
	})
	f.answer("eth_getBalance", `"0x3b9aca00"`) // 1 gwei worth of wei, for NativeGas
	cfg := fakeConfig(f)
	cfg.CacheBlocks = -1
	c := startClient(t, cfg, nil)
	ctx := context.Background()
	v, err := c.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// 200,000 gas × 3 gwei = 6×10^14 → ceil(/10^12) = 600 units.
	tx := func(feePayer *common.Address, feeToken *common.Address) *tempo.DecodedTx {
		return &tempo.DecodedTx{Type: tempo.TempoTxType, Sender: sender, FeePayer: feePayer, FeeToken: feeToken,
			GasLimit: 200_000, MaxFeePerGas: big.NewInt(3_000_000_001)}
	}
	cases := []struct {
		name  string
		tx    *tempo.DecodedTx
		payer common.Address
		token common.Address
		asked []common.Address // whose preference was read
	}{
		{"no preference: the transferred token", tx(nil, nil), sender, asset, []common.Address{sender}},
		{"sponsored: the fee payer's preference", tx(&sponsor, nil), sponsor, preferred, []common.Address{sponsor}},
		{"fee_token set: no preference read", tx(nil, &preferred), sender, preferred, nil},
	}
	for _, tc := range cases {
		feeManagerCalls = nil
		fee, err := tempo.TempoFees{}.MaxFee(ctx, v, tc.tx, asset)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if fee.Payer != tc.payer || fee.Token != tc.token || fee.Amount.Int64() != 601 {
			t.Errorf("%s: fee %+v, want payer %s token %s amount 601", tc.name, fee, tc.payer, tc.token)
		}
		if len(feeManagerCalls) != len(tc.asked) || (len(tc.asked) > 0 && feeManagerCalls[0] != tc.asked[0]) {
			t.Errorf("%s: FeeManager asked about %v, want %v", tc.name, feeManagerCalls, tc.asked)
		}
	}

	// The native balance a dev chain's fees are checked against.
	bal, err := v.BalanceOf(ctx, tempo.NativeGas, sender)
	if err != nil || bal.Int64() != 1_000_000_000 {
		t.Fatalf("native balance %v, %v", bal, err)
	}
	if calls := f.calls("eth_getBalance"); len(calls) != 1 || !strings.Contains(string(calls[0].Params[0]), strings.ToLower(sender.Hex()[2:])) {
		t.Fatalf("eth_getBalance calls %+v", calls)
	}

	// A chain without a FeeManager answers getUserToken with no data: no
	// preference.
	f.answer("eth_call", `"0x"`)
	fee, err := tempo.TempoFees{}.MaxFee(ctx, v, tx(nil, nil), asset)
	if err != nil || fee.Token != asset {
		t.Fatalf("no FeeManager: %+v %v", fee, err)
	}
}
