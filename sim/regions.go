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

// WAN returns seven AWS regions on four continents: us-east-1 (N.
// Virginia), us-west-2 (Oregon), eu-west-1 (Ireland), eu-central-1
// (Frankfurt), ap-northeast-1 (Tokyo), ap-southeast-1 (Singapore) and
// sa-east-1 (São Paulo). Between regions the round trips are the average
// pings of the published table docs/scale.md cites (April 2017; the mean of
// the two directions where they differ, to 0.1 ms). Inside a region they
// are 1 ms: two availability zones, which that table does not give.
func WAN() Profile {
	regions := []string{"us-east", "us-west", "eu-west", "eu-central", "ap-northeast", "ap-southeast", "sa-east"}
	// Upper triangle, row by row, in milliseconds.
	upper := [][]float64{
		{1, 87.8, 80.5, 88.6, 145.3, 216.7, 119.5},
		{1, 137.0, 159.5, 89.1, 161.4, 182.7},
		{1, 19.6, 212.4, 238.6, 191.3},
		{1, 236.5, 325.9, 194.9},
		{1, 73.8, 256.8},
		{1, 328.1},
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
