package safety

import (
	"fmt"
	"sort"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/qc"
)

// SPEC §7.4: every QC a light client accepts verifies against the
// committee. The QCs light clients accepted are decoded and verified here;
// the valid ones join the certified set like any other.

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
		if err == nil {
			err = c.committee.VerifyQC(q)
			c.addQCSignatures(q, []string{l.Client}, err == nil)
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
		c.addValid(q, []string{l.Client})
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
