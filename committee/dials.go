package committee

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Dials is a sparse mesh's dialling rule: each member dials InRegion other
// members of its own region and PerOtherRegion members of every other
// region (Member.Region; members without one share the region ""), and
// accepts the members that chose it. A message then crosses each long link
// once and spreads inside a region over short ones, which keeps a relayed
// mesh near the latency of a full one at a small fraction of its n−1
// connections per member (docs/scale.md). The zero value dials every
// member.
type Dials struct {
	InRegion       int
	PerOtherRegion int
}

// Sparse reports whether d dials a subset of the members.
func (d Dials) Sparse() bool { return d.InRegion > 0 }

// Validate checks d on its own; Links checks it against a committee.
func (d Dials) Validate() error {
	switch {
	case d.InRegion < 0:
		return fmt.Errorf("dial_in_region must not be negative, got %d", d.InRegion)
	case d.PerOtherRegion < 0:
		return fmt.Errorf("dial_per_other_region must not be negative, got %d", d.PerOtherRegion)
	case d.PerOtherRegion > 0 && d.InRegion == 0:
		return errors.New("dial_per_other_region needs dial_in_region (0 dials every member)")
	}
	return nil
}

// ErrDisconnected is returned by Links when the dialling rule leaves some
// members unable to reach others.
var ErrDisconnected = errors.New("the committee's mesh is not connected")

// Group is one region's share of a member's dials: the other members of
// that region in the order the member prefers them, of which it keeps Want
// connected. The first Want are its choices; the rest stand in, in order,
// for choices that cannot be reached (a validator that is down must not
// leave the mesh without the long link it stood for).
type Group struct {
	Region  string
	Want    int
	Members []int
}

// Groups returns member self's dials under d, one group per region (none
// when d is not sparse). A member ranks the others by a hash of both public
// keys, so every member computes the same choices from the committee file
// alone and can also tell who will dial it, and a member cannot make itself
// preferred by many others without grinding a key per target.
func (f *File) Groups(self int, d Dials) ([]Group, error) {
	keys, err := f.keysOfMember(self)
	if err != nil {
		return nil, err
	}
	return f.groups(keys, self, d), nil
}

// Chosen returns the members that member self dials when every member is
// up: every other member when d is not sparse, else the first Want of each
// of its groups.
func (f *File) Chosen(self int, d Dials) ([]int, error) {
	keys, err := f.keysOfMember(self)
	if err != nil {
		return nil, err
	}
	return f.chosen(keys, self, d, nil), nil
}

// keysOfMember returns every member's key, once self is known to be a
// member's index.
func (f *File) keysOfMember(self int) ([][]byte, error) {
	if self < 0 || self >= len(f.Members) {
		return nil, fmt.Errorf("member %d of %d", self, len(f.Members))
	}
	return f.memberKeys()
}

// Links returns each member's neighbours under d when every member is up
// (the members it dials and those that dial it, sorted), and
// ErrDisconnected when some member cannot reach every other.
func (f *File) Links(d Dials) ([][]int, error) { return f.LinksAmong(d, nil) }

// LinksAmong is Links once the members that are down (up reports false)
// have been replaced by the next of their groups, as each member's dialler
// does: members that are down have no links, and the mesh must connect the
// others. up nil means every member is up.
func (f *File) LinksAmong(d Dials, up func(int) bool) ([][]int, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	keys, err := f.memberKeys()
	if err != nil {
		return nil, err
	}
	if up == nil {
		up = func(int) bool { return true }
	}
	n := len(f.Members)
	links := make([][]int, n)
	seen := make(map[[2]int]bool)
	var live []int
	for i := range n {
		if !up(i) {
			continue
		}
		live = append(live, i)
		for _, j := range f.chosen(keys, i, d, up) {
			pair := [2]int{min(i, j), max(i, j)}
			if !seen[pair] {
				seen[pair] = true
				links[i] = append(links[i], j)
				links[j] = append(links[j], i)
			}
		}
	}
	for i := range links {
		slices.Sort(links[i])
	}
	if len(live) == 0 {
		return links, nil
	}
	reached := make([]bool, n)
	reached[live[0]] = true
	todo, count := []int{live[0]}, 1
	for len(todo) > 0 {
		i := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, j := range links[i] {
			if !reached[j] {
				reached[j], count = true, count+1
				todo = append(todo, j)
			}
		}
	}
	if count < len(live) {
		lost := slices.IndexFunc(live, func(i int) bool { return !reached[i] })
		return links, fmt.Errorf("%w: %d of %d members reach %q but not %q (raise dial_in_region or dial_per_other_region)",
			ErrDisconnected, count, len(live), f.Members[live[0]].Name, f.Members[live[lost]].Name)
	}
	return links, nil
}

// DialGroups returns, for the member with public key self, the groups it
// dials under d with every member's bootstrap entry, for p2p's dialler. It
// fails when d is not sparse, when self is not a member, or when d leaves
// the committee's mesh disconnected, so a misconfigured sparse mesh is
// refused at start rather than found by payments that never gather a
// quorum.
func (f *File) DialGroups(self []byte, d Dials) ([]Group, []peer.AddrInfo, error) {
	if !d.Sparse() {
		return nil, nil, errors.New("dial groups need a sparse mesh (dial_in_region)")
	}
	boot, err := f.Bootstrap()
	if err != nil {
		return nil, nil, err
	}
	keys, err := f.memberKeys()
	if err != nil {
		return nil, nil, err
	}
	me := slices.IndexFunc(keys, func(k []byte) bool { return bytes.Equal(k, self) })
	if me < 0 {
		return nil, nil, errors.New("a sparse mesh needs this validator among the committee file's members")
	}
	if _, err := f.Links(d); err != nil {
		return nil, nil, err
	}
	return f.groups(keys, me, d), boot, nil
}

func (f *File) memberKeys() ([][]byte, error) {
	keys := make([][]byte, len(f.Members))
	for i, m := range f.Members {
		id, err := parsePublicKey(m.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", m.Name, err)
		}
		keys[i] = id[:]
	}
	return keys, nil
}

// chosen is what self dials: every other member, or per group the first
// Want members that are up.
func (f *File) chosen(keys [][]byte, self int, d Dials, up func(int) bool) []int {
	var out []int
	if !d.Sparse() {
		for j := range f.Members {
			if j != self && (up == nil || up(j)) {
				out = append(out, j)
			}
		}
		return out
	}
	for _, g := range f.groups(keys, self, d) {
		taken := 0
		for _, j := range g.Members {
			if taken == g.Want {
				break
			}
			if up == nil || up(j) {
				out = append(out, j)
				taken++
			}
		}
	}
	return out
}

func (f *File) groups(keys [][]byte, self int, d Dials) []Group {
	type ranked struct {
		rank uint64
		j    int
	}
	byRegion := make(map[string][]ranked)
	var order []string // regions in order of first appearance, for a stable result
	for j, m := range f.Members {
		if j == self {
			continue
		}
		if _, ok := byRegion[m.Region]; !ok {
			order = append(order, m.Region)
		}
		byRegion[m.Region] = append(byRegion[m.Region], ranked{dialRank(keys[self], keys[j]), j})
	}
	var out []Group
	for _, r := range order {
		want := d.PerOtherRegion
		if r == f.Members[self].Region {
			want = d.InRegion
		}
		if want == 0 {
			continue
		}
		cands := byRegion[r]
		slices.SortFunc(cands, func(a, b ranked) int {
			if c := cmp.Compare(a.rank, b.rank); c != 0 {
				return c
			}
			return cmp.Compare(a.j, b.j)
		})
		g := Group{Region: r, Want: want, Members: make([]int, len(cands))}
		for k, c := range cands {
			g.Members[k] = c.j
		}
		out = append(out, g)
	}
	return out
}

// dialRank is j's rank among i's candidates: domain-separated, so it is
// not any other hash of the same keys.
func dialRank(i, j []byte) uint64 {
	h := sha256.New()
	h.Write([]byte("allegro/dial-rank/1"))
	h.Write(i)
	h.Write(j)
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// MeshShape summarises the graph Links draws: what an operator checks
// before choosing dials.
type MeshShape struct {
	Members, Regions        int
	MinLinks, MaxLinks      int
	MeanLinks               float64
	Links, CrossRegionLinks int
	Connected               bool
	MaxHops                 int     // the longest shortest path, in links (0 when not connected)
	MeanHops                float64 // over all ordered pairs of members
}

// Shape returns the shape of the committee's mesh under d. A disconnected
// mesh is still described (Connected false, no hops), with Links's
// ErrDisconnected error beside it.
func (f *File) Shape(d Dials) (MeshShape, error) {
	links, linkErr := f.Links(d)
	if linkErr != nil && !errors.Is(linkErr, ErrDisconnected) {
		return MeshShape{}, linkErr
	}
	n := len(f.Members)
	s := MeshShape{Members: n, Connected: linkErr == nil, MinLinks: n}
	regions := map[string]bool{}
	for i, ns := range links {
		regions[f.Members[i].Region] = true
		s.MinLinks, s.MaxLinks = min(s.MinLinks, len(ns)), max(s.MaxLinks, len(ns))
		for _, j := range ns {
			if i < j {
				s.Links++
				if f.Members[i].Region != f.Members[j].Region {
					s.CrossRegionLinks++
				}
			}
		}
	}
	s.Regions = len(regions)
	if n == 0 {
		s.MinLinks = 0
		return s, linkErr
	}
	s.MeanLinks = float64(2*s.Links) / float64(n)
	if !s.Connected || n < 2 {
		return s, linkErr
	}
	// Breadth-first from every member: n·(n + links), fine for thousands.
	dist := make([]int, n)
	total := 0
	for src := range n {
		for i := range dist {
			dist[i] = -1
		}
		dist[src] = 0
		queue := []int{src}
		for len(queue) > 0 {
			i := queue[0]
			queue = queue[1:]
			for _, j := range links[i] {
				if dist[j] < 0 {
					dist[j] = dist[i] + 1
					total += dist[j]
					s.MaxHops = max(s.MaxHops, dist[j])
					queue = append(queue, j)
				}
			}
		}
	}
	s.MeanHops = float64(total) / float64(n*(n-1))
	return s, nil
}
