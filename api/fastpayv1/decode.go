package fastpayv1

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/allegro-mesh/allegro/qc"
)

// Decoders of bulletin and QC frames straight into domain types, for the
// mesh's hot path: proto.Unmarshal builds a dozen wire messages per
// certificate through reflection and copies every bytes field, only for
// the conversion to copy them again. These decoders accept and reject
// exactly what proto.Unmarshal followed by the conversions (ToCertificate,
// ToQC) does and yield the same domain objects: the conversions are shared
// (both go through the raw forms below), and a differential test and fuzz
// target hold the parsing to protobuf's. The protobuf rules they follow:
//   - a tag's field number must be 1..2^29−1, and an end-group tag outside a
//     group is an error;
//   - a known field with another wire type than its own is an unknown field,
//     skipped like any unknown field (groups included);
//   - a singular field that appears twice: the last scalar wins, and a
//     message is merged (parsing continues into the same message);
//   - a repeated message field appends one element per occurrence;
//   - string fields must be valid UTF-8 (proto3).

// ErrWireFormat wraps every failure to parse bytes as the protobuf encoding
// of the expected message: what proto.Unmarshal rejects. Well-formed
// messages that do not convert to domain types fail with ErrInvalidMessage.
var ErrWireFormat = errors.New("malformed protobuf encoding")

// DecodedFrame is a bulletin or QC frame decoded into domain types; nothing
// in it is verified.
type DecodedFrame struct {
	// Publisher and Seq are the header's fields as carried (Publisher is
	// empty when the header or the field is missing, and shares the input's
	// bytes).
	Publisher []byte
	Seq       uint64
	// Objects counts the objects the frame carries, converted or not: its
	// certificates, its QCs and twice its equivocation pairs.
	Objects int
	// Invalid is the first object that did not convert (wrapping
	// ErrInvalidMessage); such objects are left out of the slices below.
	// Objects after the first maxObjects are parsed but not converted:
	// the frame is too large anyway.
	Invalid error
	Certs   []qc.Certificate
	QCs     []*qc.QC
	Pairs   []qc.Equivocation
}

// Field numbers of mesh.proto and the message types of types.proto not in
// append.go.
const (
	fieldFrameHeader = 1

	fieldHeaderPublisher = 1
	fieldHeaderSeq       = 2

	fieldBulletinCerts         = 2
	fieldBulletinQCs           = 3
	fieldBulletinEquivocations = 4

	fieldQCFrameQCs = 2

	fieldPairFirst  = 1
	fieldPairSecond = 2

	fieldSignerPubkey = 3
)

// DecodeBulletinFrame decodes a BulletinFrame. It fails only when data is
// not a well-formed encoding (ErrWireFormat); objects that do not convert
// are reported in DecodedFrame.Invalid.
func DecodeBulletinFrame(data []byte, maxObjects int) (*DecodedFrame, error) {
	d := frameDecoder{out: &DecodedFrame{}, maxObjects: maxObjects}
	counts := countFields(data, maxObjects)
	d.out.Certs = make([]qc.Certificate, 0, counts[fieldBulletinCerts])
	d.out.QCs = make([]*qc.QC, 0, counts[fieldBulletinQCs])
	d.out.Pairs = make([]qc.Equivocation, 0, counts[fieldBulletinEquivocations])
	r := fieldReader{b: data}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		if typ != protowire.BytesType {
			r.skip(num, typ)
			continue
		}
		switch num {
		case fieldFrameHeader:
			r.message(d.parseHeader)
		case fieldBulletinCerts:
			r.message(d.parseCert)
		case fieldBulletinQCs:
			r.message(d.parseQC)
		case fieldBulletinEquivocations:
			r.message(d.parsePair)
		default:
			r.skip(num, typ)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return d.out, nil
}

// DecodeQCFrame decodes a QCFrame, as DecodeBulletinFrame does.
func DecodeQCFrame(data []byte, maxObjects int) (*DecodedFrame, error) {
	d := frameDecoder{out: &DecodedFrame{}, maxObjects: maxObjects}
	d.out.QCs = make([]*qc.QC, 0, countFields(data, maxObjects)[fieldQCFrameQCs])
	r := fieldReader{b: data}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		switch {
		case typ == protowire.BytesType && num == fieldFrameHeader:
			r.message(d.parseHeader)
		case typ == protowire.BytesType && num == fieldQCFrameQCs:
			r.message(d.parseQC)
		default:
			r.skip(num, typ)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return d.out, nil
}

// countFields counts the length-delimited fields 1 to 4 of a frame, so
// that the decoders allocate their slices once. Every object that converts
// carries at least a 64-byte signature, so a count is capped by what the
// frame's size allows (and by limit): a frame of empty objects does not
// reserve room for thousands of certificates. It stops quietly at
// malformed input, which the decoding proper reports.
func countFields(data []byte, limit int) (counts [5]int) {
	limit = min(limit, len(data)/qc.SignatureSize)
	r := fieldReader{b: data}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		if typ == protowire.BytesType && num < protowire.Number(len(counts)) && counts[num] < limit {
			counts[num]++
		}
		r.skip(num, typ)
	}
	return counts
}

// fieldReader walks the fields of one message's encoding. After an error
// next reports no more fields and err holds it.
type fieldReader struct {
	b   []byte
	err error
}

func (r *fieldReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrWireFormat, fmt.Sprintf(format, args...))
	}
}

// next reads the next tag the way protobuf-go's unmarshaller does.
func (r *fieldReader) next() (protowire.Number, protowire.Type, bool) {
	if r.err != nil || len(r.b) == 0 {
		return 0, 0, false
	}
	tag, n := protowire.ConsumeVarint(r.b)
	if n < 0 {
		r.fail("tag: %v", protowire.ParseError(n))
		return 0, 0, false
	}
	r.b = r.b[n:]
	num, typ := tag>>3, protowire.Type(tag&7)
	if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
		r.fail("field number %d", num)
		return 0, 0, false
	}
	if typ == protowire.EndGroupType {
		r.fail("end of a group that was not started")
		return 0, 0, false
	}
	return protowire.Number(num), typ, true
}

// skip consumes the value of an unknown field.
func (r *fieldReader) skip(num protowire.Number, typ protowire.Type) {
	n := protowire.ConsumeFieldValue(num, typ, r.b)
	if n < 0 {
		r.fail("field %d: %v", num, protowire.ParseError(n))
		return
	}
	r.b = r.b[n:]
}

// bytes consumes a length-delimited value; the result aliases the input.
func (r *fieldReader) bytes() []byte {
	v, n := protowire.ConsumeBytes(r.b)
	if n < 0 {
		r.fail("length-delimited value: %v", protowire.ParseError(n))
		return nil
	}
	r.b = r.b[n:]
	return v
}

func (r *fieldReader) varint() uint64 {
	v, n := protowire.ConsumeVarint(r.b)
	if n < 0 {
		r.fail("varint: %v", protowire.ParseError(n))
		return 0
	}
	r.b = r.b[n:]
	return v
}

// str consumes a string value, which proto3 requires to be UTF-8.
func (r *fieldReader) str() []byte {
	v := r.bytes()
	if r.err == nil && !utf8.Valid(v) {
		r.fail("string field is not valid UTF-8")
	}
	return v
}

// message consumes a length-delimited value and parses it with parse.
func (r *fieldReader) message(parse func([]byte) error) {
	v := r.bytes()
	if r.err == nil {
		if err := parse(v); err != nil {
			r.err = err
		}
	}
}

// The raw forms hold what a message's encoding carried (bytes alias the
// input) and which message fields were present, so that the conversion sees
// exactly what the generated message would hold.
type rawAddress struct {
	present bool
	data    []byte
}

type rawNonce struct {
	present bool
	key     []byte
	seq     uint64
}

type rawEffects struct {
	present                  bool
	sender, recipient, asset rawAddress
	amount                   uint64
	nonce                    rawNonce
}

type rawSigner struct {
	present    bool
	name       string
	id, pubkey []byte
}

type rawCert struct {
	present                        bool
	signer                         rawSigner
	txHash, effectsHash, signature []byte
	effects                        rawEffects
	created                        uint64
}

type rawQC struct {
	txHash, effectsHash, qcHash []byte
	threshold                   uint32
	epoch                       uint64
	certs                       []rawCert
	// count is the number of certificates carried; only the first
	// MaxQCCerts+1 are kept, enough to reject the QC.
	count int
}

func parseAddress(b []byte, a *rawAddress) error {
	a.present = true
	r := fieldReader{b: b}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		if num == fieldAddressData && typ == protowire.BytesType {
			a.data = r.bytes()
		} else {
			r.skip(num, typ)
		}
	}
	return r.err
}

func parseNonce(b []byte, n *rawNonce) error {
	n.present = true
	r := fieldReader{b: b}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		switch {
		case num == fieldNonceKey && typ == protowire.BytesType:
			n.key = r.bytes()
		case num == fieldNonceSeq && typ == protowire.VarintType:
			n.seq = r.varint()
		default:
			r.skip(num, typ)
		}
	}
	return r.err
}

func parseEffects(b []byte, e *rawEffects) error {
	e.present = true
	r := fieldReader{b: b}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		switch {
		case num == fieldEffectsAmount && typ == protowire.VarintType:
			e.amount = r.varint()
		case typ != protowire.BytesType:
			r.skip(num, typ)
		case num == fieldEffectsSender:
			r.message(func(v []byte) error { return parseAddress(v, &e.sender) })
		case num == fieldEffectsRecipient:
			r.message(func(v []byte) error { return parseAddress(v, &e.recipient) })
		case num == fieldEffectsAsset:
			r.message(func(v []byte) error { return parseAddress(v, &e.asset) })
		case num == fieldEffectsNonce:
			r.message(func(v []byte) error { return parseNonce(v, &e.nonce) })
		default:
			r.skip(num, typ)
		}
	}
	return r.err
}

func parseSigner(b []byte, s *rawSigner) error {
	s.present = true
	r := fieldReader{b: b}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		switch {
		case typ != protowire.BytesType:
			r.skip(num, typ)
		case num == fieldSignerName:
			s.name = string(r.str())
		case num == fieldSignerID:
			s.id = r.bytes()
		case num == fieldSignerPubkey:
			s.pubkey = r.bytes()
		default:
			r.skip(num, typ)
		}
	}
	return r.err
}

func parseCert(b []byte, c *rawCert) error {
	c.present = true
	r := fieldReader{b: b}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		switch {
		case num == fieldCertCreated && typ == protowire.VarintType:
			c.created = r.varint()
		case typ != protowire.BytesType:
			r.skip(num, typ)
		case num == fieldCertSigner:
			r.message(func(v []byte) error { return parseSigner(v, &c.signer) })
		case num == fieldCertTxHash:
			c.txHash = r.bytes()
		case num == fieldCertEffectsHash:
			c.effectsHash = r.bytes()
		case num == fieldCertEffects:
			r.message(func(v []byte) error { return parseEffects(v, &c.effects) })
		case num == fieldCertSignature:
			c.signature = r.bytes()
		default:
			r.skip(num, typ)
		}
	}
	return r.err
}

// parseQC parses a QuorumCertificate into q, reusing q.certs.
func parseQC(b []byte, q *rawQC) error {
	certs := q.certs[:0]
	*q = rawQC{}
	r := fieldReader{b: b}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		switch {
		case num == fieldQCThreshold && typ == protowire.VarintType:
			q.threshold = uint32(r.varint())
		case num == fieldQCEpoch && typ == protowire.VarintType:
			q.epoch = r.varint()
		case typ != protowire.BytesType:
			r.skip(num, typ)
		case num == fieldQCTxHash:
			q.txHash = r.bytes()
		case num == fieldQCEffectsHash:
			q.effectsHash = r.bytes()
		case num == fieldQCHash:
			q.qcHash = r.bytes()
		case num == fieldQCCerts:
			q.count++
			if len(certs) > MaxQCCerts {
				// Too many already: parse the rest only for errors.
				var spare rawCert
				r.message(func(v []byte) error { return parseCert(v, &spare) })
				continue
			}
			certs = append(certs, rawCert{})
			r.message(func(v []byte) error { return parseCert(v, &certs[len(certs)-1]) })
		default:
			r.skip(num, typ)
		}
	}
	q.certs = certs
	return r.err
}

// frameDecoder converts a frame's objects as they are parsed.
type frameDecoder struct {
	out        *DecodedFrame
	maxObjects int
	qc         rawQC // scratch, reused for every QC of the frame
}

// counted counts k more objects and reports whether they are to be
// converted.
func (d *frameDecoder) counted(k int) bool {
	d.out.Objects += k
	return d.out.Objects <= d.maxObjects
}

func (d *frameDecoder) invalid(err error, format string, args ...any) {
	if d.out.Invalid == nil {
		d.out.Invalid = fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
	}
}

func (d *frameDecoder) parseHeader(b []byte) error {
	r := fieldReader{b: b}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		switch {
		case num == fieldHeaderPublisher && typ == protowire.BytesType:
			d.out.Publisher = r.bytes()
		case num == fieldHeaderSeq && typ == protowire.VarintType:
			d.out.Seq = r.varint()
		default:
			r.skip(num, typ)
		}
	}
	return r.err
}

func (d *frameDecoder) parseCert(b []byte) error {
	var raw rawCert
	if err := parseCert(b, &raw); err != nil {
		return err
	}
	if !d.counted(1) {
		return nil
	}
	c, err := raw.toCertificate()
	if err != nil {
		d.invalid(err, "certificate %d of the frame", len(d.out.Certs))
		return nil
	}
	d.out.Certs = append(d.out.Certs, c)
	return nil
}

func (d *frameDecoder) parseQC(b []byte) error {
	if err := parseQC(b, &d.qc); err != nil {
		return err
	}
	if !d.counted(1) {
		return nil
	}
	q, err := d.qc.toQC()
	if err != nil {
		d.invalid(err, "qc %d of the frame", len(d.out.QCs))
		return nil
	}
	d.out.QCs = append(d.out.QCs, q)
	return nil
}

func (d *frameDecoder) parsePair(b []byte) error {
	var first, second rawCert
	r := fieldReader{b: b}
	for num, typ, ok := r.next(); ok; num, typ, ok = r.next() {
		switch {
		case num == fieldPairFirst && typ == protowire.BytesType:
			r.message(func(v []byte) error { return parseCert(v, &first) })
		case num == fieldPairSecond && typ == protowire.BytesType:
			r.message(func(v []byte) error { return parseCert(v, &second) })
		default:
			r.skip(num, typ)
		}
	}
	if r.err != nil {
		return r.err
	}
	if !d.counted(2) {
		return nil
	}
	a, errA := first.toCertificate()
	b2, errB := second.toCertificate()
	if err := errors.Join(errA, errB); err != nil {
		d.invalid(err, "equivocation pair %d of the frame", len(d.out.Pairs))
		return nil
	}
	d.out.Pairs = append(d.out.Pairs, qc.Equivocation{First: a, Second: b2})
	return nil
}

// The conversions to domain types, on the raw forms: the frame decoders
// and the generated messages' conversions (ToCertificate, ToEffects, ToQC,
// ToAddress, ToNonce, through the raw*Of functions) share them, so both
// accept exactly the same objects.

func rawAddressOf(data []byte, present bool) rawAddress {
	return rawAddress{present: present, data: data}
}

func rawNonceOf(n *Nonce2D) rawNonce {
	if n == nil {
		return rawNonce{}
	}
	return rawNonce{present: true, key: n.NonceKeyBe, seq: n.NonceSeq}
}

func rawEffectsOf(e *EffectsSummary) rawEffects {
	if e == nil {
		return rawEffects{}
	}
	return rawEffects{present: true, amount: e.Amount, nonce: rawNonceOf(e.Nonce),
		sender:    rawAddressOf(e.Sender.GetData(), e.Sender != nil),
		recipient: rawAddressOf(e.Recipient.GetData(), e.Recipient != nil),
		asset:     rawAddressOf(e.Asset.GetData(), e.Asset != nil)}
}

func rawCertOf(c *ValidatorCertificate) rawCert {
	if c == nil {
		return rawCert{}
	}
	r := rawCert{present: true, txHash: c.TxHash, effectsHash: c.EffectsHash, signature: c.Signature,
		effects: rawEffectsOf(c.Effects), created: c.CreatedUnixMillis}
	if s := c.Signer; s != nil {
		r.signer = rawSigner{present: true, name: s.Name, id: s.Id, pubkey: s.Pubkey}
	}
	return r
}

func (a rawAddress) toAddress(field string) (qc.Address, error) {
	var out qc.Address
	if !a.present {
		return out, invalid("%s is missing", field)
	}
	return out, fixedBytes(out[:], a.data, field)
}

func (e *rawEffects) toEffects() (qc.Effects, error) {
	var out qc.Effects
	if !e.present {
		return out, invalid("effects is missing")
	}
	var err error
	if out.Sender, err = e.sender.toAddress("effects.sender"); err != nil {
		return out, err
	}
	if out.Recipient, err = e.recipient.toAddress("effects.recipient"); err != nil {
		return out, err
	}
	if out.Asset, err = e.asset.toAddress("effects.asset"); err != nil {
		return out, err
	}
	out.Amount = e.amount
	out.NonceKey, out.NonceSeq, err = e.nonce.toNonce("effects.nonce")
	return out, err
}

func (n rawNonce) toNonce(field string) (qc.NonceKey, uint64, error) {
	var key qc.NonceKey
	if !n.present {
		return key, 0, invalid("%s is missing", field)
	}
	if len(n.key) != len(key) {
		// Named here rather than through fixedBytes: the field's name is
		// built only for the error.
		return key, 0, invalid("%s.nonce_key_be must be %d bytes, got %d", field, len(key), len(n.key))
	}
	copy(key[:], n.key)
	return key, n.seq, nil
}

func (c *rawCert) toCertificate() (qc.Certificate, error) {
	var out qc.Certificate
	if !c.present {
		return out, invalid("certificate is missing")
	}
	if !c.signer.present {
		return out, invalid("certificate signer is missing")
	}
	if err := fixedBytes(out.Signer[:], c.signer.id, "signer.id"); err != nil {
		return out, err
	}
	if len(c.signer.pubkey) != 0 && string(c.signer.pubkey) != string(c.signer.id) {
		return out, invalid("signer.pubkey differs from signer.id")
	}
	out.SignerName = c.signer.name
	if err := fixedBytes(out.TxHash[:], c.txHash, "tx_hash"); err != nil {
		return out, err
	}
	if err := fixedBytes(out.EffectsHash[:], c.effectsHash, "effects_hash"); err != nil {
		return out, err
	}
	var err error
	if out.Effects, err = c.effects.toEffects(); err != nil {
		return out, err
	}
	if err := fixedBytes(out.Signature[:], c.signature, "signature"); err != nil {
		return out, err
	}
	out.CreatedUnixMillis = c.created
	return out, nil
}

func (q *rawQC) toQC() (*qc.QC, error) {
	if q.count > MaxQCCerts {
		return nil, invalid("qc carries %d certificates, at most %d allowed", q.count, MaxQCCerts)
	}
	out := &qc.QC{Threshold: q.threshold, Epoch: q.epoch, Certs: make([]qc.Certificate, len(q.certs))}
	if err := fixedBytes(out.TxHash[:], q.txHash, "qc.tx_hash"); err != nil {
		return nil, err
	}
	if err := fixedBytes(out.EffectsHash[:], q.effectsHash, "qc.effects_hash"); err != nil {
		return nil, err
	}
	if err := fixedBytes(out.Hash[:], q.qcHash, "qc.qc_hash"); err != nil {
		return nil, err
	}
	for i := range q.certs {
		// The compact form: what a certificate leaves out is the QC's
		// (hashes) or the first certificate's (effects).
		c := q.certs[i]
		if len(c.txHash) == 0 {
			c.txHash = q.txHash
		}
		if len(c.effectsHash) == 0 {
			c.effectsHash = q.effectsHash
		}
		if !c.effects.present && i > 0 {
			c.effects = q.certs[0].effects
		}
		cert, err := c.toCertificate()
		if err != nil {
			return nil, fmt.Errorf("qc certificate %d: %w", i, err)
		}
		out.Certs[i] = cert
	}
	return out, nil
}
