package p2p

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// The protobuf path the frame decoders replaced: proto.Unmarshal into the
// generated messages, then the conversions. The differential tests hold
// decodeBulletinFrame and decodeQCFrame to its verdicts and objects.

func refDecodeBulletinFrame(data []byte) (*bulletinFrame, error) {
	if err := checkFrameSize("bulletin", data); err != nil {
		return nil, err
	}
	m := new(fastpayv1.BulletinFrame)
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: bulletin frame: %v", ErrMalformed, err)
	}
	hdr, err := decodeHeader(m.GetHeader())
	if err != nil {
		return nil, err
	}
	if err := checkObjects("bulletin", len(m.GetCerts())+len(m.GetQcs())+2*len(m.GetEquivocations())); err != nil {
		return nil, err
	}
	f := &bulletinFrame{header: hdr}
	for i, w := range m.GetCerts() {
		c, err := w.ToCertificate()
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d of the frame: %v", ErrMalformed, i, err)
		}
		f.certs = append(f.certs, &c)
	}
	for i, w := range m.GetQcs() {
		q, err := refToQC(w)
		if err != nil {
			return nil, fmt.Errorf("qc %d of the frame: %w", i, err)
		}
		f.qcs = append(f.qcs, q)
	}
	for i, w := range m.GetEquivocations() {
		a, errA := w.GetFirst().ToCertificate()
		b, errB := w.GetSecond().ToCertificate()
		if err := errors.Join(errA, errB); err != nil {
			return nil, fmt.Errorf("%w: equivocation pair %d of the frame: %v", ErrMalformed, i, err)
		}
		f.pairs = append(f.pairs, &qc.Equivocation{First: a, Second: b})
	}
	return f, nil
}

func refDecodeQCFrame(data []byte) (*qcFrame, error) {
	if err := checkFrameSize("qc", data); err != nil {
		return nil, err
	}
	m := new(fastpayv1.QCFrame)
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: qc frame: %v", ErrMalformed, err)
	}
	hdr, err := decodeHeader(m.GetHeader())
	if err != nil {
		return nil, err
	}
	if err := checkObjects("qc", len(m.GetQcs())); err != nil {
		return nil, err
	}
	f := &qcFrame{header: hdr, qcs: make([]*qc.QC, len(m.GetQcs()))}
	for i, w := range m.GetQcs() {
		if f.qcs[i], err = refToQC(w); err != nil {
			return nil, fmt.Errorf("qc %d of the frame: %w", i, err)
		}
	}
	return f, nil
}

func refToQC(w *fastpayv1.QuorumCertificate) (*qc.QC, error) {
	q, err := w.ToQC()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(q.Certs) == 0 {
		return nil, fmt.Errorf("%w: qc without certificates", ErrMalformed)
	}
	return q, nil
}
