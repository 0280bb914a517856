package apiserver

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/qc"
)

func TestU64JSON(t *testing.T) {
	b, err := json.Marshal(struct {
		V U64 `json:"v"`
	}{18446744073709551615})
	if err != nil || string(b) != `{"v":"18446744073709551615"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	for in, want := range map[string]uint64{
		`"0"`: 0, `"123"`: 123, `123`: 123, `"18446744073709551615"`: 1<<64 - 1, ` 7 `: 7,
	} {
		var v U64
		if err := json.Unmarshal([]byte(in), &v); err != nil || uint64(v) != want {
			t.Errorf("%s: %d %v", in, v, err)
		}
	}
	for _, in := range []string{
		`"18446744073709551616"`, `"-1"`, `-1`, `1.5`, `1e3`, `""`, `" 1"`, `"+1"`, `"0x10"`, `true`, `"abc"`, `{}`,
	} {
		var v U64
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("%s accepted as %d", in, v)
		}
	}
	v := U64(5)
	if err := json.Unmarshal([]byte(`null`), &v); err != nil || v != 5 {
		t.Fatalf("null: %d %v", v, err)
	}
}

func TestParseHex(t *testing.T) {
	for in, want := range map[string]string{"0xABcd": "\xab\xcd", "abcd": "\xab\xcd", "0x": "", "": ""} {
		b, err := ParseHex(in)
		if err != nil || string(b) != want {
			t.Errorf("%q: %x %v", in, b, err)
		}
	}
	for _, in := range []string{"0x1", "0xzz", "0x 12", "12 "} {
		if _, err := ParseHex(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if _, err := ParseTxHash("0x" + strings.Repeat("00", 31)); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("short hash: %v", err)
	}
	if _, err := ParseAddress(alice.Hex()); err != nil {
		t.Fatal(err)
	}
}

func testQC(t *testing.T, f *fakeBackend) *qc.QC {
	t.Helper()
	h, e := mustEffects(t, testRequest(1, 99))
	a := qc.NewAssembler(f.committee, h, e.Hash())
	for i := range f.committee.Quorum() {
		if _, err := a.Add(f.sign(i, h, e)); err != nil {
			t.Fatal(err)
		}
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestCertificateJSON(t *testing.T) {
	f := newFake(t, 4)
	h, e := mustEffects(t, testRequest(4, 42))
	cert := f.signers[2].Sign(h, e, 1_700_000_000_123)

	b, err := json.Marshal(NewJSONCertificate(&cert))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`"signer":{"name":"v2","id":"` + cert.Signer.Hex() + `"}`,
		`"tx_hash":"` + h.Hex() + `"`,
		`"effects_hash":"` + e.Hash().Hex() + `"`,
		`"effects":{"sender":"` + alice.Hex() + `","recipient":"` + bob.Hex() + `","amount":"42","asset":"` + testAsset.Hex() +
			`","nonce_key":"0x` + strings.Repeat("00", 32) + `","nonce_seq":"4"}`,
		`"signature":"0x`,
		`"created_unix_millis":"1700000000123"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("certificate JSON lacks %s:\n%s", want, s)
		}
	}
	var back JSONCertificate
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got, err := back.ToCertificate("cert")
	if err != nil {
		t.Fatal(err)
	}
	if got != cert {
		t.Fatalf("round trip: %+v != %+v", got, cert)
	}

	for name, mutate := range map[string]func(*JSONCertificate){
		"cert.signer.id":         func(j *JSONCertificate) { j.Signer.ID = "0x01" },
		"cert.tx_hash":           func(j *JSONCertificate) { j.TxHash = "zz" },
		"cert.effects_hash":      func(j *JSONCertificate) { j.EffectsHash = "" },
		"cert.effects.sender":    func(j *JSONCertificate) { j.Effects.Sender = h.Hex() },
		"cert.effects.nonce_key": func(j *JSONCertificate) { j.Effects.NonceKey = "0x00" },
		"cert.signature":         func(j *JSONCertificate) { j.Signature = j.Signature[:20] },
	} {
		j := back
		mutate(&j)
		if _, err := j.ToCertificate("cert"); err == nil || !strings.HasPrefix(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestQCJSON(t *testing.T) {
	f := newFake(t, 4)
	q := testQC(t, f)
	j := NewJSONQC(q)
	if j.Threshold != 3 || len(j.Certs) != 3 || j.QCHash != q.Hash.Hex() || j.ProtoHex == "" {
		t.Fatalf("%+v", j)
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var back JSONQC
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got, err := back.ToQC("qc")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, q) {
		t.Fatal("JSON round trip changed the QC")
	}
	if err := f.committee.VerifyQC(got); err != nil {
		t.Fatal(err)
	}

	// proto_hex is the protobuf QuorumCertificate.
	want := fastpayv1.NewQuorumCertificate(q)
	pq, err := back.ToProto("qc")
	if err != nil || !proto.Equal(pq, want) {
		t.Fatalf("ToProto via proto_hex: %v", err)
	}
	noProto := back
	noProto.ProtoHex = ""
	if pq, err := noProto.ToProto("qc"); err != nil || !proto.Equal(pq, want) {
		t.Fatalf("ToProto via JSON fields: %v", err)
	}
	onlyProto := JSONQC{ProtoHex: j.ProtoHex}
	if pq, err := onlyProto.ToProto("qc"); err != nil || !proto.Equal(pq, want) {
		t.Fatalf("ToProto with proto_hex alone: %v", err)
	}
	mismatch := back
	mismatch.QCHash = qc.Hash{1}.Hex()
	if _, err := mismatch.ToProto("qc"); err == nil || !strings.Contains(err.Error(), "qc.qc_hash") {
		t.Fatalf("mismatched qc_hash accepted: %v", err)
	}
	badProto := JSONQC{ProtoHex: "0x0a0102"}
	if _, err := badProto.ToProto("qc"); err == nil {
		t.Fatal("truncated proto_hex accepted")
	}
}

func TestEventJSON(t *testing.T) {
	f := newFake(t, 4)
	q := testQC(t, f)
	cases := []struct {
		ev   bulletin.Event
		want []string
	}{
		{bulletin.Event{Kind: bulletin.EventCertificate, TxHash: q.TxHash, UnixMillis: 5, Cert: &q.Certs[0], Sender: alice, Recipient: bob},
			[]string{`"kind":"certificate"`, `"unix_millis":"5"`, `"sender":"` + alice.Hex(), `"certificate":{"signer"`}},
		{bulletin.Event{Kind: bulletin.EventQC, TxHash: q.TxHash, QC: q},
			[]string{`"kind":"qc"`, `"qc":{"tx_hash"`, `"proto_hex":"0x`}},
		{bulletin.Event{Kind: bulletin.EventLifecycle, TxHash: q.TxHash, Stage: fastpayv1.TxLifecycleUpdate_INCLUDED, BlockHeight: 77},
			[]string{`"kind":"lifecycle"`, `"stage":"INCLUDED"`, `"block_height":"77"`}},
		{bulletin.Event{Kind: bulletin.EventEquivocation, TxHash: q.TxHash, Evidence: &qc.Equivocation{First: q.Certs[0], Second: q.Certs[0]}},
			[]string{`"kind":"equivocation"`, `"evidence":{"signer"`, `"key":{"sender"`}},
		{bulletin.Event{Kind: bulletin.EventSettlementFailure, TxHash: q.TxHash, Reason: "reverted"},
			[]string{`"kind":"settlement_failure"`, `"reason":"reverted"`}},
	}
	for _, c := range cases {
		b, err := json.Marshal(NewJSONEvent(&c.ev))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %s", b, w)
			}
		}
		if c.ev.Sender == (qc.Address{}) && strings.Contains(string(b), `"sender":"0x0000`) {
			t.Errorf("zero sender encoded: %s", b)
		}
	}
}

func TestDecodeSubmitRawTx(t *testing.T) {
	req, err := decodeSubmitRawTx([]byte(submitBody(7, 1234)), testChainID)
	if err != nil {
		t.Fatal(err)
	}
	want := testRequest(7, 1234)
	want.Tx.ClientRequestId = "req-7"
	if !proto.Equal(req, want) {
		t.Fatalf("got %v\nwant %v", req, want)
	}

	// Reference-style and alternative spellings.
	req, err = decodeSubmitRawTx([]byte(`{"signed_tx":"76aa","chain_id":42431,"nonce_key":"0x1","nonce_seq":3,`+
		`"expiry_max_block_height":"99","tempo_tx_format":"TEMPO_NATIVE_V1"}`), testChainID)
	if err != nil {
		t.Fatal(err)
	}
	tx := req.GetTx()
	if tx.GetChainId().GetValue() != 42431 || tx.GetTempoTxFormat() != fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1 ||
		tx.GetNonce().GetNonceKeyBe()[31] != 1 || len(tx.GetNonce().GetNonceKeyBe()) != 32 ||
		tx.GetExpiry().GetMaxBlockHeight() != 99 || tx.GetIntent() != nil {
		t.Fatalf("alternative body: %v", req)
	}
	req, err = decodeSubmitRawTx([]byte(`{"tempo_tx":"0x76aa","nonce_seq":"3","expiry":{"unix_millis":"9"},"tempo_tx_format":1}`), testChainID)
	if err != nil || req.GetTx().GetTempoTxFormat() != fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1 {
		t.Fatalf("numeric format: %v %v", req, err)
	}
	req, err = decodeSubmitRawTx([]byte(`{"tempo_tx":"0x76aa","nonce_seq":"3","expiry":{"unix_millis":"9"}}`), testChainID)
	if err != nil || req.GetTx().GetTempoTxFormat() != fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1 {
		t.Fatalf("format from the type byte: %v %v", req, err)
	}

	base := `"tempo_tx":"0x02","nonce_seq":"1","expiry":{"unix_millis":"5"}`
	for body, field := range map[string]string{
		`{"tempo_tx":"0x02","signed_tx":"0x02","nonce_seq":"1","expiry":{"unix_millis":"5"}}`:                        "signed_tx",
		`{"tempo_tx":"","nonce_seq":"1","expiry":{"unix_millis":"5"}}`:                                               "tempo_tx",
		`{"tempo_tx":2,"nonce_seq":"1","expiry":{"unix_millis":"5"}}`:                                                "tempo_tx",
		`{` + base + `,"tempo_tx_format":"EVM"}`:                                                                     "tempo_tx_format",
		`{` + base + `,"tempo_tx_format":7}`:                                                                         "tempo_tx_format",
		`{` + base + `,"chain_id":"0x1"}`:                                                                            "chain_id",
		`{` + base + `,"nonce_key":"0x` + strings.Repeat("11", 33) + `"}`:                                            "nonce_key",
		`{` + base + `,"nonce_key":"xyz"}`:                                                                           "nonce_key",
		`{"tempo_tx":"0x02","nonce_seq":"1","expiry":{"unix_millis":"5","max_block_height":"3"}}`:                    "expiry",
		`{"tempo_tx":"0x02","nonce_seq":"1","expiry":{"unix_millis":"5"},"expiry_unix_millis":"5"}`:                  "expiry",
		`{"tempo_tx":"0x02","nonce_seq":"1","expiry":{"seconds":"5"}}`:                                               "expiry.seconds",
		`{"tempo_tx":"0x02","nonce_seq":"1","expiry":"5"}`:                                                           "expiry",
		`{` + base + `,"parent_qc_hash":"0x1234"}`:                                                                   "parent_qc_hash",
		`{` + base + `,"client_request_id":5}`:                                                                       "client_request_id",
		`{` + base + `,"intent":{"sender":"0x12"}}`:                                                                  "intent.sender",
		`{` + base + `,"intent":{"recipient":"` + bob.Hex() + `"}}`:                                                  "intent.amount",
		`{` + base + `,"intent":{"asset":"0x1234","amount":"1"}}`:                                                    "intent.asset",
		`{` + base + `,"intent":{"amount":"1","memo":"x"}}`:                                                          "intent.memo",
		`{` + base + `,"parent_qcs":"0x12"}`:                                                                         "parent_qcs",
		`{` + base + `,"parent_qcs":[5]}`:                                                                            "parent_qcs[0]",
		`{` + base + `,"parent_qcs":[{"tx_hash":"0x12"}]}`:                                                           "parent_qcs[0].tx_hash",
		`{` + base + `,"parent_qcs":[{"bogus":1}]}`:                                                                  "parent_qcs[0]",
		`{` + base + `,"parent_qcs":[` + strings.TrimSuffix(strings.Repeat(`"0x",`, maxJSONParentQCs+1), ",") + `]}`: "parent_qcs",
		`[]`:              "body",
		`null`:            "body",
		`{` + base + `}x`: "body",
	} {
		_, err := decodeSubmitRawTx([]byte(body), testChainID)
		var fe *FieldError
		if err == nil || !strings.HasPrefix(err.Error(), field) {
			t.Errorf("%s: %v, want an error about %s", body, err, field)
		} else if !errors.As(err, &fe) {
			t.Errorf("%s: %T is not a *FieldError", body, err)
		}
	}
}
