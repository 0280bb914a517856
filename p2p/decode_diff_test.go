package p2p

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/allegro-mesh/allegro/qc"
)

// errorClass is what a decode failure means to a validator.
func errorClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrTooLarge):
		return "too large"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	}
	return "unclassified: " + err.Error()
}

// sameAsProtobuf decodes data as a frame of kind k with the mesh's
// decoder and with the protobuf path and fails t unless both reject it the
// same way or both yield the same header and objects. It reports whether
// the frame decoded.
func sameAsProtobuf(t testing.TB, k TopicKind, data []byte) bool {
	t.Helper()
	var got, want any
	var err, refErr error
	switch k {
	case KindBulletin:
		var f, ref *bulletinFrame
		f, err = decodeBulletinFrame(data)
		ref, refErr = refDecodeBulletinFrame(data)
		if err == nil && refErr == nil {
			got, want = bulletinValues(f), bulletinValues(ref)
		}
	case KindQC:
		var f, ref *qcFrame
		f, err = decodeQCFrame(data)
		ref, refErr = refDecodeQCFrame(data)
		if err == nil && refErr == nil {
			got, want = f, ref
		}
	default:
		t.Fatalf("no differential decoder for %s", k)
	}
	if errorClass(err) != errorClass(refErr) {
		t.Fatalf("%s frame %x:\ndecoder:        %v\nprotobuf path:  %v", k, data, err, refErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s frame %x: the decoder yields\n%+v\nthe protobuf path\n%+v", k, data, got, want)
	}
	return err == nil
}

type bulletinObjects struct {
	header FrameHeader
	certs  []qc.Certificate
	qcs    []*qc.QC
	pairs  []qc.Equivocation
}

func bulletinValues(f *bulletinFrame) bulletinObjects {
	out := bulletinObjects{header: f.header, qcs: append([]*qc.QC(nil), f.qcs...)}
	for _, c := range f.certs {
		out.certs = append(out.certs, *c)
	}
	for _, p := range f.pairs {
		out.pairs = append(out.pairs, *p)
	}
	return out
}

// TestDecodeFramesMatchProtobuf runs random encodings of bulletin and QC
// frames through both decoders: mostly well-formed, with the encodings a
// protobuf decoder must accept (fields in any order, repeated singular
// fields, merged messages, unknown fields and groups, known fields with
// another wire type, non-minimal varints, the compact form) and the ones
// it must refuse (truncation, bad tags, invalid UTF-8, lengths past the
// end), and fields of wrong sizes that decode but do not convert.
func TestDecodeFramesMatchProtobuf(t *testing.T) {
	iterations := 4000
	if testing.Short() {
		iterations = 1000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	decoded := map[TopicKind]int{}
	for i := range iterations {
		for _, k := range []TopicKind{KindBulletin, KindQC} {
			g := &frameGen{rng: rng}
			data := g.frame(k)
			if sameAsProtobuf(t, k, data) {
				decoded[k]++
			}
			if t.Failed() {
				t.Fatalf("iteration %d", i)
			}
		}
	}
	// The generator must reach both outcomes, or the test proves little.
	for _, k := range []TopicKind{KindBulletin, KindQC} {
		if decoded[k] < iterations/20 || decoded[k] > iterations*19/20 {
			t.Errorf("%s: %d of %d random frames decoded; the generator should mix both outcomes", k, decoded[k], iterations)
		}
	}
	t.Logf("decoded: bulletin %d, qc %d of %d each", decoded[KindBulletin], decoded[KindQC], iterations)
}

// FuzzDecodeFramesMatchProtobuf: the decoder and the protobuf path agree
// on arbitrary bytes.
func FuzzDecodeFramesMatchProtobuf(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 16 {
		g := &frameGen{rng: rng}
		f.Add(uint8(KindBulletin), g.frame(KindBulletin))
		f.Add(uint8(KindQC), g.frame(KindQC))
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		k := KindBulletin
		if kind%2 == 1 {
			k = KindQC
		}
		sameAsProtobuf(t, k, data)
	})
}

// A schema of the messages in bulletin and QC frames, for the generator.
type genKind int

const (
	genVarint genKind = iota
	genBytes
	genString
	genMessage
)

type genField struct {
	num      protowire.Number
	kind     genKind
	size     int // bytes and strings: the size that converts
	msg      *genMsg
	repeated bool
}

type genMsg struct {
	name   string
	fields []genField
}

var (
	genAddress = &genMsg{"address", []genField{{num: 1, kind: genBytes, size: 20}}}
	genNonce   = &genMsg{"nonce", []genField{{num: 1, kind: genBytes, size: 32}, {num: 2, kind: genVarint}}}
	genEffects = &genMsg{"effects", []genField{
		{num: 1, kind: genMessage, msg: genAddress}, {num: 2, kind: genMessage, msg: genAddress},
		{num: 3, kind: genVarint}, {num: 4, kind: genMessage, msg: genAddress}, {num: 5, kind: genMessage, msg: genNonce},
	}}
	genSigner = &genMsg{"signer", []genField{{num: 1, kind: genString, size: 3}, {num: 2, kind: genBytes, size: 32}, {num: 3, kind: genBytes, size: 32}}}
	genCert   = &genMsg{"cert", []genField{
		{num: 1, kind: genMessage, msg: genSigner}, {num: 2, kind: genBytes, size: 32}, {num: 3, kind: genBytes, size: 32},
		{num: 4, kind: genMessage, msg: genEffects}, {num: 5, kind: genBytes, size: 64}, {num: 6, kind: genVarint},
	}}
	genQC = &genMsg{"qc", []genField{
		{num: 1, kind: genBytes, size: 32}, {num: 2, kind: genBytes, size: 32}, {num: 3, kind: genMessage, msg: genCert, repeated: true},
		{num: 4, kind: genVarint}, {num: 5, kind: genBytes, size: 32}, {num: 6, kind: genVarint},
	}}
	genHeader         = &genMsg{"header", []genField{{num: 1, kind: genBytes, size: 32}, {num: 2, kind: genVarint}}}
	genPair           = &genMsg{"pair", []genField{{num: 1, kind: genMessage, msg: genCert}, {num: 2, kind: genMessage, msg: genCert}}}
	genBulletinFrame  = &genMsg{"bulletin", []genField{{num: 1, kind: genMessage, msg: genHeader}, {num: 2, kind: genMessage, msg: genCert, repeated: true}, {num: 3, kind: genMessage, msg: genQC, repeated: true}, {num: 4, kind: genMessage, msg: genPair, repeated: true}}}
	genQCFrameMessage = &genMsg{"qc frame", []genField{{num: 1, kind: genMessage, msg: genHeader}, {num: 2, kind: genMessage, msg: genQC, repeated: true}}}
)

// frameGen writes random encodings of a schema. Its probabilities keep
// most frames well formed and about half convertible.
type frameGen struct {
	rng *rand.Rand
	// compact: certificates of a QC after the first leave out hashes and
	// effects, as the mesh's encoder writes them.
	compact bool
}

func (g *frameGen) chance(p float64) bool { return g.rng.Float64() < p }

func (g *frameGen) frame(k TopicKind) []byte {
	m := genBulletinFrame
	if k == KindQC {
		m = genQCFrameMessage
	}
	b := g.message(m, 0)
	switch {
	case len(b) > 0 && g.chance(0.02):
		b = b[:g.rng.IntN(len(b))] // truncated
	case len(b) > 0 && g.chance(0.02):
		b[g.rng.IntN(len(b))] ^= byte(1 + g.rng.IntN(255)) // one byte changed
	}
	return b
}

func (g *frameGen) message(m *genMsg, depth int) []byte {
	if m == genQC {
		g.compact = g.chance(0.5)
	}
	var fields [][]byte
	for _, f := range m.fields {
		n := 1
		switch {
		case f.repeated:
			n = g.rng.IntN(4)
			if depth == 0 {
				n = g.rng.IntN(3)
			}
		case g.chance(0.004):
			n = 0 // missing
		case g.chance(0.05):
			n = 2 // twice: the last scalar wins, messages merge
		}
		for j := range n {
			if m == genQC && f.num == 3 && j > 0 && g.compact {
				fields = append(fields, g.compactCert())
				continue
			}
			fields = append(fields, g.field(f, depth))
		}
	}
	if g.chance(0.03) {
		fields = append(fields, g.unknown())
	}
	if g.chance(0.2) {
		g.rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	}
	var b []byte
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

// compactCert is a QC's later certificate in compact form: signer,
// signature, time.
func (g *frameGen) compactCert() []byte {
	c := &genMsg{"compact cert", []genField{genCert.fields[0], genCert.fields[4], genCert.fields[5]}}
	return g.field(genField{num: 3, kind: genMessage, msg: c}, 2)
}

func (g *frameGen) field(f genField, depth int) []byte {
	if g.chance(0.003) {
		// A known number with another wire type: an unknown field.
		b := protowire.AppendTag(nil, f.num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, g.rng.Uint64())
	}
	switch f.kind {
	case genVarint:
		b := protowire.AppendTag(nil, f.num, protowire.VarintType)
		v := g.rng.Uint64() >> (64 - g.rng.IntN(65)) // of 0 to 64 bits
		if g.chance(0.03) {
			// Non-minimal: a redundant continuation byte.
			b = append(b, byte(v&0x7f)|0x80, byte(v>>7&0x7f))
			return b
		}
		return protowire.AppendVarint(b, v)
	case genBytes, genString:
		size := f.size
		if g.chance(0.004) {
			size = []int{0, f.size - 1, f.size + 1}[g.rng.IntN(3)]
		}
		v := make([]byte, size)
		// Mostly one filling, so that a signer's pubkey mostly equals its
		// id.
		fill := byte(0xaa)
		if g.chance(0.01) {
			fill = 0xbb
		}
		if f.kind == genString {
			fill = 'v'
			if g.chance(0.01) {
				fill = 0xff // not UTF-8
			}
		}
		for i := range v {
			v[i] = fill
		}
		b := protowire.AppendTag(nil, f.num, protowire.BytesType)
		return protowire.AppendBytes(b, v)
	default:
		b := protowire.AppendTag(nil, f.num, protowire.BytesType)
		return protowire.AppendBytes(b, g.message(f.msg, depth+1))
	}
}

func (g *frameGen) unknown() []byte {
	num := protowire.Number(7 + g.rng.IntN(20))
	switch g.rng.IntN(12) {
	case 0, 6, 7:
		b := protowire.AppendTag(nil, num, protowire.StartGroupType)
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, 5)
		return protowire.AppendTag(b, num, protowire.EndGroupType)
	case 1:
		return protowire.AppendTag(nil, num, protowire.EndGroupType) // no group started
	case 2:
		return protowire.AppendVarint(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType), 1) // number out of range
	case 3, 8:
		return protowire.AppendFixed32(protowire.AppendTag(nil, num, protowire.Fixed32Type), 7)
	case 4, 9, 10:
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), []byte{1, 2, 3})
	}
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), 300)
}

// BenchmarkDecodeFrame compares the frame decoders with the protobuf path
// on the frames a busy 4-validator mesh publishes: a bulletin frame of 10
// certificates and 2 QCs, and a QC frame of 8 QCs.
func BenchmarkDecodeFrame(b *testing.B) {
	fx := newFixture(b, 4)
	var certs []qc.Certificate
	var qcs []*qc.QC
	for i := range 10 {
		eff := testEffects(uint64(i), 0x23)
		h := mustTxHash(b, testRequest(uint64(i)))
		certs = append(certs, fx.cert(1, h, eff))
		qcs = append(qcs, fx.qcFrom(b, h, eff, 0, 1, 2))
	}
	bulletin := encBulletin(b, fx.hdr(1, 1), certs, qcs[:2], nil)
	qcFrame := encQC(b, fx.hdr(1, 2), qcs[:8]...)
	cases := []struct {
		name   string
		decode func([]byte) error
		data   []byte
	}{
		{"bulletin/decoder", func(d []byte) error { _, err := decodeBulletinFrame(d); return err }, bulletin},
		{"bulletin/protobuf", func(d []byte) error { _, err := refDecodeBulletinFrame(d); return err }, bulletin},
		{"qc/decoder", func(d []byte) error { _, err := decodeQCFrame(d); return err }, qcFrame},
		{"qc/protobuf", func(d []byte) error { _, err := refDecodeQCFrame(d); return err }, qcFrame},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				if err := c.decode(c.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
