package sim

import (
	"fmt"
	"time"
)

// Profile is a network: regions and the round-trip time between each pair.
// Validators are placed in the regions round-robin.
type Profile struct {
	// Name identifies the profile in reports ("wan", "lan").
	Name string
	// Regions names the regions.
	Regions []string
	// RTT[i][j] is the round-trip time between regions i and j (symmetric;
	// the diagonal is the round trip between two machines of one region).
	RTT [][]time.Duration
}

// Validate checks that the matrix is square, symmetric and non-negative.
func (p Profile) Validate() error {
	if len(p.Regions) == 0 {
		return fmt.Errorf("profile %q: Regions is empty", p.Name)
	}
	if len(p.RTT) != len(p.Regions) {
		return fmt.Errorf("profile %q: RTT has %d rows for %d regions", p.Name, len(p.RTT), len(p.Regions))
	}
	for i, row := range p.RTT {
		if len(row) != len(p.Regions) {
			return fmt.Errorf("profile %q: RTT row %d has %d entries for %d regions", p.Name, i, len(row), len(p.Regions))
		}
		for j, d := range row {
			if d < 0 || d != p.RTT[j][i] {
				return fmt.Errorf("profile %q: RTT[%d][%d] = %s must be non-negative and equal RTT[%d][%d]", p.Name, i, j, d, j, i)
			}
		}
	}
	return nil
}

// Region returns the region of validator i (round-robin).
func (p Profile) Region(i int) int { return i % len(p.Regions) }

// PairRTT returns the round-trip time between validators i and j (0 for a
// validator and itself).
func (p Profile) PairRTT(i, j int) time.Duration {
	if i == j {
		return 0
	}
	return p.RTT[p.Region(i)][p.Region(j)]
}

// Floor is the physical lower bound of submit→QC at entry validator entry
// of an n-validator committee with quorum q: the round trip to the q-th
// nearest validator, the entry itself (0) included. The transaction must
// reach q signers and their certificates must come back; nothing can do it
// faster over these links.
func (p Profile) Floor(entry, n, q int) time.Duration {
	if q <= 0 || q > n {
		return 0
	}
	rtts := make([]time.Duration, n)
	for j := range n {
		rtts[j] = p.PairRTT(entry, j)
	}
	return kth(rtts, q)
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// WAN returns seven cloud regions on three continents and South America.
// The round trips are rounded figures of the order that public
// inter-region latency tables show (docs/scale.md names the table and
// says how the figures were taken); the diagonal is two zones of one
// region.
func WAN() Profile {
	regions := []string{"us-east", "us-west", "eu-west", "eu-central", "ap-northeast", "ap-southeast", "sa-east"}
	// Upper triangle, row by row, in milliseconds.
	upper := [][]float64{
		{1, 65, 70, 90, 150, 215, 115},
		{1, 125, 145, 100, 165, 175},
		{1, 25, 205, 175, 180},
		{1, 225, 160, 200},
		{1, 70, 255},
		{1, 320},
		{1},
	}
	return fromUpper("wan", regions, upper)
}

// LAN returns one region where every round trip is 0.5 ms.
func LAN() Profile {
	return fromUpper("lan", []string{"lan"}, [][]float64{{0.5}})
}

// fromUpper builds a symmetric profile from the upper triangle (diagonal
// included) in milliseconds.
func fromUpper(name string, regions []string, upper [][]float64) Profile {
	n := len(regions)
	rtt := make([][]time.Duration, n)
	for i := range rtt {
		rtt[i] = make([]time.Duration, n)
	}
	for i, row := range upper {
		for k, v := range row {
			j := i + k
			rtt[i][j], rtt[j][i] = ms(v), ms(v)
		}
	}
	return Profile{Name: name, Regions: regions, RTT: rtt}
}

// ProfileByName returns the named profile ("wan" or "lan").
func ProfileByName(name string) (Profile, error) {
	switch name {
	case "wan":
		return WAN(), nil
	case "lan":
		return LAN(), nil
	}
	return Profile{}, fmt.Errorf("unknown profile %q (have wan, lan)", name)
}
