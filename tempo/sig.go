package tempo

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"unicode/utf8"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// SignatureType says which scheme signed a transaction.
type SignatureType uint8

// Signature schemes of Tempo transactions. EVM envelopes are always secp256k1.
const (
	SigSecp256k1 SignatureType = iota // 65 bytes r ‖ s ‖ v, no type byte
	SigP256                           // 0x01 ‖ r ‖ s ‖ x ‖ y ‖ pre_hash
	SigWebAuthn                       // 0x02 ‖ authenticatorData ‖ clientDataJSON ‖ r ‖ s ‖ x ‖ y
)

// String returns the scheme's name as used in the test vectors.
func (t SignatureType) String() string {
	switch t {
	case SigSecp256k1:
		return "secp256k1"
	case SigP256:
		return "p256"
	case SigWebAuthn:
		return "webauthn"
	}
	return fmt.Sprintf("SignatureType(%d)", uint8(t))
}

// Wire constants of Tempo signatures.
const (
	sigTypeP256        = 0x01
	sigTypeWebAuthn    = 0x02
	sigTypeKeychain    = 0x03
	sigTypeKeychainV2  = 0x04
	secp256k1SigLen    = 65           // r ‖ s ‖ v; a 65-byte signature is secp256k1 whatever its first byte
	p256SigLen         = 1 + 4*32 + 1 // type ‖ r ‖ s ‖ x ‖ y ‖ pre_hash
	webAuthnTailLen    = 4 * 32       // r ‖ s ‖ x ‖ y after the WebAuthn data
	maxWebAuthnSigLen  = 1 + 2048     // the node caps the signature body at 2 KiB
	webAuthnAuthLen    = 37           // rpIdHash(32) ‖ flags(1) ‖ signCount(4); extensions are refused
	minClientDataJSON  = 32           // the node's lower bound; a real clientDataJSON is far longer
	webAuthnFlagUP     = 0x01
	webAuthnFlagUV     = 0x04
	webAuthnFlagAT     = 0x40
	webAuthnFlagED     = 0x80
	webAuthnTypeGet    = "webauthn.get"
	webAuthnTypeNeedle = `"type":"webauthn.get"`
)

// Curve orders and their halves, for the range and low-s checks.
var (
	secp256k1N     = mustHexBig("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
	secp256k1HalfN = new(big.Int).Rsh(secp256k1N, 1)
	p256N          = elliptic.P256().Params().N
	p256HalfN      = new(big.Int).Rsh(p256N, 1)
)

func mustHexBig(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("tempo: bad constant " + s)
	}
	return n
}

// checkScalars enforces 0 < r < n and 0 < s <= n/2. The low-s rule removes
// the second valid signature (r, n-s) of every message: without it anyone
// could re-encode a submitted transaction under a different tx hash.
func checkScalars(field string, r, s []byte, n, halfN *big.Int) error {
	rb, sb := new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)
	switch {
	case rb.Sign() == 0:
		return malformedf("%s: r is zero", field)
	case rb.Cmp(n) >= 0:
		return malformedf("%s: r is not below the curve order", field)
	case sb.Sign() == 0:
		return malformedf("%s: s is zero", field)
	case sb.Cmp(halfN) > 0:
		hint := "use n - s"
		if n == secp256k1N {
			hint = "use n - s and flip the recovery id"
		}
		return malformedf("%s: s is in the upper half of the curve order (high-s, malleable); %s", field, hint)
	}
	return nil
}

// senderSig is a parsed sender signature. Parsing checks everything that does
// not need the signing hash; verify does the cryptography.
type senderSig struct {
	typ      SignatureType
	r, s     []byte
	v        byte   // secp256k1 recovery id, 0 or 1
	x, y     []byte // P256 / WebAuthn public key
	preHash  bool   // P256: the signed digest is sha256(signing hash)
	authData []byte // WebAuthn authenticatorData (37 bytes)
	client   []byte // WebAuthn clientDataJSON
}

// parseSenderSignature checks the layout of a sender signature.
func parseSenderSignature(sig []byte) (senderSig, error) {
	const field = "sender_signature"
	if len(sig) == secp256k1SigLen {
		v := sig[64]
		switch v {
		case 27, 28:
			v -= 27
		case 0, 1:
		default:
			return senderSig{}, malformedf("%s: secp256k1 v byte must be 27 or 28 (0 or 1 accepted), got %d", field, v)
		}
		if err := checkScalars(field, sig[:32], sig[32:64], secp256k1N, secp256k1HalfN); err != nil {
			return senderSig{}, err
		}
		return senderSig{typ: SigSecp256k1, r: sig[:32], s: sig[32:64], v: v}, nil
	}
	if len(sig) == 0 {
		return senderSig{}, malformedf("%s: empty signature", field)
	}
	switch sig[0] {
	case sigTypeP256:
		if len(sig) != p256SigLen {
			return senderSig{}, malformedf("%s: P256 signature must be %d bytes (0x01 ‖ r ‖ s ‖ x ‖ y ‖ pre_hash), got %d", field, p256SigLen, len(sig))
		}
		body := sig[1:]
		if err := checkScalars(field+" (P256)", body[:32], body[32:64], p256N, p256HalfN); err != nil {
			return senderSig{}, err
		}
		ph := body[128]
		if ph > 1 {
			return senderSig{}, malformedf("%s: P256 pre_hash flag must be 0 or 1, got %d", field, ph)
		}
		return senderSig{typ: SigP256, r: body[:32], s: body[32:64], x: body[64:96], y: body[96:128], preHash: ph == 1}, nil
	case sigTypeWebAuthn:
		minLen := 1 + webAuthnAuthLen + minClientDataJSON + webAuthnTailLen
		if len(sig) < minLen || len(sig) > maxWebAuthnSigLen {
			return senderSig{}, malformedf("%s: WebAuthn signature must be %d to %d bytes (0x02 ‖ authenticatorData(37) ‖ clientDataJSON ‖ r ‖ s ‖ x ‖ y), got %d", field, minLen, maxWebAuthnSigLen, len(sig))
		}
		data, tail := sig[1:len(sig)-webAuthnTailLen], sig[len(sig)-webAuthnTailLen:]
		flags := data[32]
		switch {
		case flags&webAuthnFlagUP == 0:
			// The Tempo node requires user presence; a UV-only assertion would
			// be certified here yet rejected on chain, so it is refused.
			return senderSig{}, malformedf("%s: WebAuthn authenticatorData flags 0x%02x: user presence (UP) flag not set", field, flags)
		case flags&webAuthnFlagAT != 0:
			return senderSig{}, malformedf("%s: WebAuthn authenticatorData flags 0x%02x: attested credential data (AT) must not be set in an assertion", field, flags)
		case flags&webAuthnFlagED != 0:
			return senderSig{}, malformedf("%s: WebAuthn authenticatorData flags 0x%02x: extension data (ED) is not supported (authenticatorData must be exactly 37 bytes)", field, flags)
		}
		if err := checkScalars(field+" (WebAuthn)", tail[:32], tail[32:64], p256N, p256HalfN); err != nil {
			return senderSig{}, err
		}
		return senderSig{
			typ: SigWebAuthn, r: tail[:32], s: tail[32:64], x: tail[64:96], y: tail[96:128],
			authData: data[:webAuthnAuthLen], client: data[webAuthnAuthLen:],
		}, nil
	case sigTypeKeychain, sigTypeKeychainV2:
		return senderSig{}, unsupportedf("%s: keychain signatures are not supported (type 0x%02x: an access key signing for a root account needs on-chain keychain state)", field, sig[0])
	}
	return senderSig{}, malformedf("%s: unknown signature type 0x%02x in a %d-byte signature (expected 65 bytes for secp256k1, or type 0x01 P256 / 0x02 WebAuthn)", field, sig[0], len(sig))
}

// recoverSecp256k1 recovers the address that produced the 65-byte [r ‖ s ‖ v]
// signature (v 0/1) over hash.
func recoverSecp256k1(field string, hash common.Hash, r, s []byte, v byte) (common.Address, error) {
	var sig [65]byte
	copy(sig[:32], r)
	copy(sig[32:64], s)
	sig[64] = v
	pub, err := crypto.Ecrecover(hash[:], sig[:])
	if err != nil {
		return common.Address{}, malformedf("%s: secp256k1 public key recovery failed: %v", field, err)
	}
	return common.BytesToAddress(crypto.Keccak256(pub[1:])[12:]), nil
}

// verify checks the signature over the signing hash and returns the signer.
func (sg senderSig) verify(hash common.Hash) (common.Address, error) {
	const field = "sender_signature"
	switch sg.typ {
	case SigSecp256k1:
		return recoverSecp256k1(field, hash, sg.r, sg.s, sg.v)
	case SigP256:
		digest := hash[:]
		if sg.preHash {
			h := sha256.Sum256(hash[:])
			digest = h[:]
		}
		if err := verifyP256(field+" (P256)", sg, digest); err != nil {
			return common.Address{}, err
		}
	case SigWebAuthn:
		if err := checkClientData(sg.client, hash); err != nil {
			return common.Address{}, err
		}
		ch := sha256.Sum256(sg.client)
		h := sha256.New()
		h.Write(sg.authData)
		h.Write(ch[:])
		if err := verifyP256(field+" (WebAuthn)", sg, h.Sum(nil)); err != nil {
			return common.Address{}, err
		}
	default:
		return common.Address{}, malformedf("%s: unknown signature type %d", field, sg.typ)
	}
	return p256AddressXY(sg.x, sg.y), nil
}

// verifyP256 verifies an ECDSA P-256 signature over digest with the public key
// carried in the signature.
func verifyP256(field string, sg senderSig, digest []byte) error {
	enc := make([]byte, 0, 65)
	enc = append(append(append(enc, 0x04), sg.x...), sg.y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), enc)
	if err != nil {
		return malformedf("%s: public key (x, y) is not a point on the P-256 curve", field)
	}
	if !ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sg.r), new(big.Int).SetBytes(sg.s)) {
		return malformedf("%s: signature does not verify against the signing hash and the embedded public key", field)
	}
	return nil
}

// p256AddressXY is the Tempo address of a P-256 key: keccak256(x ‖ y)[12:].
func p256AddressXY(x, y []byte) common.Address {
	return common.BytesToAddress(crypto.Keccak256(x, y)[12:])
}

// P256Address returns the Tempo address of a P-256 public key, the sender of
// transactions it signs with P256 or WebAuthn signatures.
func P256Address(pub *ecdsa.PublicKey) (common.Address, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return common.Address{}, errors.New("tempo: not a P-256 public key")
	}
	enc, err := pub.Bytes()
	if err != nil {
		return common.Address{}, fmt.Errorf("tempo: P-256 public key: %w", err)
	}
	return p256AddressXY(enc[1:33], enc[33:65]), nil
}

// checkClientData validates a WebAuthn clientDataJSON against the signing
// hash. It applies both a real JSON parse (one top-level object, no duplicate
// keys, type and challenge equal to the expected values) and the Tempo node's
// byte-level rules (the literal `"type":"webauthn.get"` and
// `"challenge":"<b64url>"` properties must occur), so that nothing the node
// would refuse, and no JSON the two readings disagree on, is accepted.
func checkClientData(cdj []byte, hash common.Hash) error {
	const field = "sender_signature: WebAuthn clientDataJSON"
	challenge := base64.RawURLEncoding.EncodeToString(hash[:])
	if !utf8.Valid(cdj) {
		return malformedf("%s is not valid UTF-8", field)
	}
	if len(cdj) < 2 || cdj[0] != '{' || cdj[len(cdj)-1] != '}' {
		// The node requires these exact first and last bytes (no whitespace).
		return malformedf("%s must start with '{' and end with '}'", field)
	}
	dec := json.NewDecoder(bytes.NewReader(cdj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return malformedf("%s is not a JSON object", field)
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return malformedf("%s is not valid JSON: %v", field, err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return malformedf("%s: duplicate key %q", field, key)
		}
		seen[key] = true
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return malformedf("%s is not valid JSON: %v", field, err)
		}
		if key != "type" && key != "challenge" {
			continue
		}
		var str string
		if err := json.Unmarshal(val, &str); err != nil {
			return malformedf("%s: %q must be a string", field, key)
		}
		if key == "type" && str != webAuthnTypeGet {
			return malformedf("%s: type must be %q, got %q", field, webAuthnTypeGet, str)
		}
		if key == "challenge" && str != challenge {
			return malformedf("%s: challenge must be %q, got %q", field, challenge, str)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return malformedf("%s is not a well-formed JSON object", field)
	}
	if _, err := dec.Token(); err != io.EOF {
		return malformedf("%s: trailing data after the JSON object", field)
	}
	if !seen["type"] || !seen["challenge"] {
		return malformedf("%s: type and challenge must be top-level keys", field)
	}
	if !bytes.Contains(cdj, []byte(webAuthnTypeNeedle)) {
		return malformedf("%s: the property %s must appear literally (no whitespace or escapes), as the Tempo node matches it byte for byte", field, webAuthnTypeNeedle)
	}
	if !bytes.Contains(cdj, []byte(`"challenge":"`+challenge+`"`)) {
		return malformedf("%s: the property \"challenge\":\"%s\" must appear literally (no whitespace or escapes), as the Tempo node matches it byte for byte", field, challenge)
	}
	return nil
}

// signP256Digest signs digest with a P-256 key and returns low-s (r, s) as
// 32-byte big-endian words.
func signP256Digest(key *ecdsa.PrivateKey, digest []byte) (r, s [32]byte, err error) {
	if key == nil || key.Curve != elliptic.P256() {
		return r, s, errors.New("tempo: not a P-256 private key")
	}
	rb, sb, err := ecdsa.Sign(rand.Reader, key, digest)
	if err != nil {
		return r, s, fmt.Errorf("tempo: P-256 sign: %w", err)
	}
	if sb.Cmp(p256HalfN) > 0 {
		sb.Sub(p256N, sb) // Tempo accepts only low-s; (r, n-s) is the same signature
	}
	rb.FillBytes(r[:])
	sb.FillBytes(s[:])
	return r, s, nil
}

// p256PublicXY returns the affine coordinates of a P-256 key.
func p256PublicXY(pub *ecdsa.PublicKey) (x, y []byte, err error) {
	enc, err := pub.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("tempo: P-256 public key: %w", err)
	}
	return enc[1:33], enc[33:65], nil
}
