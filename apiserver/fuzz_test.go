package apiserver

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzSubmitRawTxJSON feeds arbitrary bodies to the submit-raw-tx decoder: it
// must never panic, must fail only with a *FieldError, and on success must
// produce a request whose transaction can be hashed and marshalled.
func FuzzSubmitRawTxJSON(f *testing.F) {
	f.Add([]byte(submitBody(1, 10)))
	f.Add([]byte(`{"signed_tx":"0x76aa","nonce_seq":3,"expiry_max_block_height":"99","nonce_key":"0x1"}`))
	f.Add([]byte(`{"tempo_tx":"0x02","nonce_seq":"1","expiry":{"unix_millis":"5"},"parent_qcs":["0x0a20",{"tx_hash":"0x00"}]}`))
	f.Add([]byte(`{"tempo_tx":"0x02","nonce_seq":"18446744073709551616","expiry":{}}`))
	f.Add([]byte(`{"tempo_tx":"0x02","nonce_seq":"1","expiry":{"unix_millis":"5"},"intent":{"amount":1,"sender":null}}`))
	f.Add([]byte(`{"parent_qcs":[{"proto_hex":"0x0a"}],"tempo_tx_format":2}`))
	f.Add([]byte(`{"a":`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeSubmitRawTx(body, testChainID)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FieldError", err, err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if _, err := req.GetTx().TxHashInput(); err != nil {
			t.Fatalf("decoded request cannot be hashed: %v", err)
		}
		if _, err := proto.Marshal(req); err != nil {
			t.Fatalf("decoded request does not marshal: %v", err)
		}
	})
}
