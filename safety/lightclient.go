package safety

import (
	"errors"
	"fmt"
	"sort"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/qc"
)

// SPEC §7.4: every QC a light client accepts verifies against the
// committee of its epoch. The QCs light clients accepted are decoded and
// verified here; the valid ones join the certified set like any other, and
// one of an epoch without a committee cannot be vouched for.

func (c *checker) lightClients() {
	per := make(map[string]*LightClientStats)
	var order []string
	for _, l := range c.h.LightClientQCs {
		s := per[l.Client]
		if s == nil {
			s = &LightClientStats{Client: l.Client}
			per[l.Client] = s
			order = append(order, l.Client)
		}
		s.Accepted++
		q, err := decodeQC(l.Raw)
		var com *qc.Committee
		if err == nil {
			com, err = c.committees.VerifyQC(q)
			c.addQCSignatures(q, com, []string{l.Client})
		}
		if errors.Is(err, ErrUnknownEpoch) {
			c.unverifiable(q, err, []string{l.Client}, []string{l.Client})
			continue
		}
		if err != nil {
			v := Violation{Kind: KindLightClientInvalidQC,
				Message: fmt.Sprintf("light client %s accepted a QC that does not verify: %v", l.Client, err), Sources: []string{l.Client}}
			if q != nil {
				v.TxHashes = []string{q.TxHash.Hex()}
				v.Validators = c.signerNames(q)
			}
			c.violate(v)
			continue
		}
		s.Verified++
		c.addValid(q, com, []string{l.Client})
	}
	sort.Strings(order)
	for _, name := range order {
		c.r.LightClients = append(c.r.LightClients, *per[name])
	}
}

func decodeQC(raw []byte) (*qc.QC, error) {
	pq, err := apiserver.ParseQCProto(raw)
	if err != nil {
		return nil, err
	}
	return pq.ToQC()
}
