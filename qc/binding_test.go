package qc

import (
	"crypto/ed25519"
	"errors"
	"testing"
)

func bindingFixture(t *testing.T) (b Binding, consensus, sidecar ed25519.PrivateKey) {
	t.Helper()
	consensus = ed25519.NewKeyFromSeed(make([]byte, 32))
	sidecarSeed := make([]byte, 32)
	sidecarSeed[0] = 1
	sidecar = ed25519.NewKeyFromSeed(sidecarSeed)
	b, err := SignBinding(consensus, sidecar, 1337, 7)
	if err != nil {
		t.Fatal(err)
	}
	return b, consensus, sidecar
}

func TestCheckBinding(t *testing.T) {
	valid, consensus, sidecar := bindingFixture(t)
	ck := valid.ConsensusKey
	activeOnly := func(id ValidatorID) bool { return id == ck }
	other := ed25519.NewKeyFromSeed(append(make([]byte, 31), 9))
	cases := []struct {
		name   string
		mutate func(b *Binding)
		active func(ValidatorID) bool
		want   error
	}{
		{"valid", func(*Binding) {}, activeOnly, nil},
		{"another chain", func(b *Binding) { b.ChainID = 4217 }, activeOnly, ErrBindingChain},
		{"first epoch changed after signing", func(b *Binding) { b.FirstEpoch++ }, activeOnly, ErrBindingSignature},
		{"sidecar key changed after signing", func(b *Binding) { b.SidecarKey[3] ^= 1 }, activeOnly, ErrBindingSignature},
		{"signature flipped", func(b *Binding) { b.Signature[10] ^= 1 }, activeOnly, ErrBindingSignature},
		{"signed by another key", func(b *Binding) {
			forged, err := SignBinding(other, sidecar, b.ChainID, b.FirstEpoch)
			if err != nil {
				t.Fatal(err)
			}
			b.Signature = forged.Signature
		}, activeOnly, ErrBindingSignature},
		{"another validator's sidecar key, without its consent", func(b *Binding) {
			// other binds valid's sidecar key: it can sign its own part only.
			stolen, err := SignBinding(other, other, b.ChainID, b.FirstEpoch)
			if err != nil {
				t.Fatal(err)
			}
			b.ConsensusKey = stolen.ConsensusKey
			d := b.Digest()
			b.Signature = [SignatureSize]byte(ed25519.Sign(other, d[:]))
		}, func(ValidatorID) bool { return true }, ErrBindingSidecarSignature},
		{"sidecar signature flipped", func(b *Binding) { b.SidecarSignature[0] ^= 1 }, activeOnly, ErrBindingSidecarSignature},
		{"consensus key not active", func(*Binding) {}, func(ValidatorID) bool { return false }, ErrBindingInactive},
		{"consensus key bound to itself", func(b *Binding) {
			self, err := SignBinding(consensus, consensus, b.ChainID, b.FirstEpoch)
			if err != nil {
				t.Fatal(err)
			}
			*b = self
		}, activeOnly, ErrBindingSelf},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := valid
			tc.mutate(&b)
			err := CheckBinding(&b, 1337, tc.active)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("CheckBinding: %v, want %v", err, tc.want)
			}
		})
	}
}

// The digest commits to every field and to the domain tag.
func TestBindingDigestSeparatesFields(t *testing.T) {
	b, _, _ := bindingFixture(t)
	base := b.Digest()
	seen := map[Hash]string{base: "base"}
	for name, d := range map[string]Hash{
		"chain":     BindingDigest(b.ChainID+1, b.ConsensusKey, b.SidecarKey, b.FirstEpoch),
		"swapped":   BindingDigest(b.ChainID, b.SidecarKey, b.ConsensusKey, b.FirstEpoch),
		"epoch":     BindingDigest(b.ChainID, b.ConsensusKey, b.SidecarKey, b.FirstEpoch+1),
		"cert-like": CertDigest(Domain{ChainID: b.ChainID}, Hash(b.ConsensusKey), Hash(b.SidecarKey)),
	} {
		if prev, dup := seen[d]; dup {
			t.Fatalf("digest of %s equals that of %s", name, prev)
		}
		seen[d] = name
	}
}
