package tempo

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// signWebAuthn signs tx as a WebAuthn authenticator would: authenticatorData
// with the given flags, a clientDataJSON made by client from the expected
// challenge, and a P-256 signature over sha256(authData ‖ sha256(clientData)).
func signWebAuthn(t *testing.T, tx *TempoTx, key *ecdsa.PrivateKey, flags byte, client func(challenge string) string) {
	t.Helper()
	h := tx.SigningHash()
	cdj := []byte(client(base64.RawURLEncoding.EncodeToString(h[:])))
	rp := sha256.Sum256([]byte("example.com"))
	auth := append(rp[:], flags, 0, 0, 0, 1)
	ch := sha256.Sum256(cdj)
	digest := sha256.Sum256(append(append([]byte{}, auth...), ch[:]...))
	r, s, err := signP256Digest(key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	x, y, err := p256PublicXY(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sig := append([]byte{sigTypeWebAuthn}, auth...)
	sig = append(sig, cdj...)
	sig = append(append(append(append(sig, r[:]...), s[:]...), x...), y...)
	tx.Signature = sig
}

func standardClient(c string) string {
	return `{"type":"webauthn.get","challenge":"` + c + `","origin":"https://example.com","crossOrigin":false}`
}

func TestWebAuthn(t *testing.T) {
	key := p256Key(t)
	sender, _ := P256Address(&key.PublicKey)
	tests := []struct {
		name   string
		flags  byte
		client func(string) string
		want   string // empty: accepted
	}{
		{"UP|UV", 0x05, standardClient, ""},
		{"UP only", 0x01, standardClient, ""},
		{"UP with backup flags", 0x1d, standardClient, ""},
		{"UV without UP", 0x04, standardClient, "user presence (UP) flag not set"},
		{"AT flag", 0x45, standardClient, "attested credential data (AT)"},
		{"ED flag", 0x85, standardClient, "extension data (ED) is not supported"},
		{"type create", 0x05, func(c string) string { return `{"type":"webauthn.create","challenge":"` + c + `"}` }, `type must be "webauthn.get", got "webauthn.create"`},
		{"wrong challenge", 0x05, func(c string) string { return standardClient(c[1:] + "A") }, "challenge must be"},
		{"padded challenge", 0x05, func(c string) string { return standardClient(c + "=") }, "challenge must be"},
		{"whitespace after colon", 0x05, func(c string) string { return `{"type": "webauthn.get","challenge":"` + c + `"}` }, "must appear literally"},
		{"escaped key", 0x05, func(c string) string {
			return `{"typ\u0065":"webauthn.get","challenge":"` + c + `","x":"\"type\":\"webauthn.get\""}`
		}, "must appear literally"},
		{"duplicate type", 0x05, func(c string) string {
			return `{"type":"webauthn.get","challenge":"` + c + `","type":"webauthn.create"}`
		}, "duplicate key"},
		{"trailing comma", 0x05, func(c string) string { return `{"type":"webauthn.get","challenge":"` + c + `",}` }, "not valid JSON"},
		{"trailing whitespace", 0x05, func(c string) string { return standardClient(c) + " " }, "must start with '{' and end with '}'"},
		{"challenge in nested object only", 0x05, func(c string) string {
			return `{"type":"webauthn.get","x":{"challenge":"` + c + `"},"pad":"` + strings.Repeat("a", 40) + `"}`
		}, "type and challenge must be top-level keys"},
		{"challenge not a string", 0x05, func(c string) string {
			return `{"type":"webauthn.get","challenge":1,"c":"\"challenge\":\"` + c + `\""}`
		}, `"challenge" must be a string`},
		{"too long", 0x05, func(c string) string {
			return `{"type":"webauthn.get","challenge":"` + c + `","pad":"` + strings.Repeat("a", 2000) + `"}`
		}, "WebAuthn signature must be"},
		{"not UTF-8", 0x05, func(c string) string { return standardClient(c)[:10] + "\xff" + standardClient(c)[10:] }, "not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx := sampleTx()
			signWebAuthn(t, tx, key, tc.flags, tc.client)
			raw, err := tx.MarshalBinary()
			if err == nil {
				var d *DecodedTx
				d, err = DecodeTempoTx(raw)
				if err == nil && (d.Sender != sender || d.SigType != SigWebAuthn) {
					t.Fatalf("sender %s type %s", d.Sender, d.SigType)
				}
			}
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				roundTrip(t, tx, sender, SigWebAuthn)
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestP256Refusals(t *testing.T) {
	key := p256Key(t)
	tests := []struct {
		name   string
		mutate func(sig []byte)
		want   string
	}{
		{"pre_hash 2", func(sig []byte) { sig[129] = 2 }, "pre_hash flag must be 0 or 1, got 2"},
		{"pre_hash flipped", func(sig []byte) { sig[129] = 1 }, "does not verify"},
		{"wrong key", func(sig []byte) { copy(sig[65:129], mustPub(t, p256Key(t))) }, "does not verify"},
		{"key not on curve", func(sig []byte) { sig[128] ^= 1 }, "not a point on the P-256 curve"},
		{"r zero", func(sig []byte) { clear(sig[1:33]) }, "r is zero"},
		{"r = n", func(sig []byte) { p256N.FillBytes(sig[1:33]) }, "r is not below the curve order"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx := sampleTx()
			if err := tx.SignP256(key, false); err != nil {
				t.Fatal(err)
			}
			tc.mutate(tx.Signature)
			raw := tx.encode(encSigned, [20]byte{})
			_, err := DecodeTempoTx(raw)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func mustPub(t *testing.T, k *ecdsa.PrivateKey) []byte {
	x, y, err := p256PublicXY(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return append(append([]byte{}, x...), y...)
}
