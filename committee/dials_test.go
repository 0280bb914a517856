package committee

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// regionalFile is a committee of n members spread round-robin over the
// named regions (none: no region labels).
func regionalFile(n int, regions ...string) *File {
	f := &File{ChainID: 1, Epoch: 1, QCShards: 16}
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, fmt.Sprintf("dials-test-%d", i))
		m := Member{Name: fmt.Sprintf("v%d", i), PublicKey: hex.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)),
			Addrs: []string{fmt.Sprintf("/ip4/10.0.0.%d/tcp/4001", i%250+1)}}
		if len(regions) > 0 {
			m.Region = regions[i%len(regions)]
		}
		f.Members = append(f.Members, m)
	}
	return f
}

func TestChosenQuotas(t *testing.T) {
	regions := []string{"us", "eu", "ap"}
	f := regionalFile(31, regions...) // 11, 10 and 10 members
	for _, tc := range []struct {
		name           string
		d              Dials
		inOwn, inOther int // per member of region "us" (10 others there)
	}{
		{"full", Dials{}, 10, 10},
		{"4+1", Dials{InRegion: 4, PerOtherRegion: 1}, 4, 1},
		{"2+0", Dials{InRegion: 2}, 2, 0},
		{"more than a region holds", Dials{InRegion: 50, PerOtherRegion: 50}, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, self := range []int{0, 3, 30} { // members of region "us"
				got, err := f.Chosen(self, tc.d)
				if err != nil {
					t.Fatal(err)
				}
				per := map[string]int{}
				for _, j := range got {
					if j == self {
						t.Fatalf("member %d dials itself", self)
					}
					per[f.Members[j].Region]++
				}
				if per["us"] != tc.inOwn || per["eu"] != tc.inOther || per["ap"] != tc.inOther {
					t.Fatalf("member %d dials %v, want %d of its region and %d of each other", self, per, tc.inOwn, tc.inOther)
				}
			}
		})
	}
}

// TestChosenDependsOnKeysOnly: every member computes the same choices, so
// they cannot depend on the order of the file or anything local.
func TestChosenDependsOnKeysOnly(t *testing.T) {
	f := regionalFile(40, "a", "b", "c", "d")
	d := Dials{InRegion: 3, PerOtherRegion: 1}
	shuffled := &File{ChainID: f.ChainID, Epoch: f.Epoch, QCShards: f.QCShards, Members: slices.Clone(f.Members)}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(shuffled.Members), func(i, j int) { shuffled.Members[i], shuffled.Members[j] = shuffled.Members[j], shuffled.Members[i] })
	names := func(file *File, self int) []string {
		got, err := file.Chosen(self, d)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, j := range got {
			out = append(out, file.Members[j].Name)
		}
		slices.Sort(out)
		return out
	}
	for i := range f.Members {
		k := slices.IndexFunc(shuffled.Members, func(m Member) bool { return m.Name == f.Members[i].Name })
		if a, b := names(f, i), names(shuffled, k); !slices.Equal(a, b) {
			t.Fatalf("member %s dials %v, or %v with the members reordered", f.Members[i].Name, a, b)
		}
	}
}

func TestLinks(t *testing.T) {
	t.Run("symmetric, connected, sparse", func(t *testing.T) {
		f := regionalFile(300, "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7")
		links, err := f.Links(Dials{InRegion: 4, PerOtherRegion: 1})
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for i, ns := range links {
			total += len(ns)
			for _, j := range ns {
				if !slices.Contains(links[j], i) {
					t.Fatalf("%d links %d but not the reverse", i, j)
				}
			}
			// At least its own choices: 4 of its region, 1 of each of 7 others.
			if len(ns) < 11 {
				t.Fatalf("member %d has %d links, fewer than it dials", i, len(ns))
			}
		}
		if mean := float64(total) / 300; mean > 30 {
			t.Fatalf("mean %.1f links per member: not sparse", mean)
		}
	})
	t.Run("regions without links between them", func(t *testing.T) {
		f := regionalFile(20, "a", "b")
		if _, err := f.Links(Dials{InRegion: 3}); !errors.Is(err, ErrDisconnected) {
			t.Fatalf("two regions and no dials across: got %v, want ErrDisconnected", err)
		}
	})
	t.Run("one region, no labels", func(t *testing.T) {
		if _, err := regionalFile(50).Links(Dials{InRegion: 3}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDialsValidate(t *testing.T) {
	for _, tc := range []struct {
		d    Dials
		want string
	}{
		{Dials{InRegion: -1}, "dial_in_region"},
		{Dials{InRegion: 1, PerOtherRegion: -1}, "dial_per_other_region"},
		{Dials{PerOtherRegion: 2}, "needs dial_in_region"},
	} {
		err := tc.d.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error naming %q", tc.d, err, tc.want)
		}
		if _, err := regionalFile(8).Links(tc.d); err == nil {
			t.Errorf("%+v: Links accepted it", tc.d)
		}
	}
}

func TestDialGroups(t *testing.T) {
	f := regionalFile(24, "a", "b", "c") // 8 per region
	key := func(i int) []byte {
		b, _ := hex.DecodeString(f.Members[i].PublicKey)
		return b
	}
	d := Dials{InRegion: 2, PerOtherRegion: 1}
	groups, boot, err := f.DialGroups(key(5), d) // member 5 is in region "c"
	if err != nil {
		t.Fatal(err)
	}
	if len(boot) != len(f.Members) || len(groups) != 3 {
		t.Fatalf("%d bootstrap entries and %d groups, want every member and one group per region", len(boot), len(groups))
	}
	chosen, _ := f.Chosen(5, d)
	var firsts []int
	for _, g := range groups {
		want, size := 1, 8
		if g.Region == "c" {
			want, size = 2, 7
		}
		if g.Want != want || len(g.Members) != size {
			t.Fatalf("group %q: want %d of %d members, got %d of %d", g.Region, want, size, g.Want, len(g.Members))
		}
		for _, j := range g.Members {
			if f.Members[j].Region != g.Region || j == 5 {
				t.Fatalf("group %q holds member %d of region %q", g.Region, j, f.Members[j].Region)
			}
		}
		firsts = append(firsts, g.Members[:g.Want]...)
	}
	if !slices.Equal(firsts, chosen) {
		t.Fatalf("the groups' first members %v are not the choices %v", firsts, chosen)
	}
	if _, _, err := f.DialGroups(make([]byte, ed25519.PublicKeySize), d); err == nil {
		t.Fatal("a sparse mesh for a key outside the committee was accepted")
	}
	if _, _, err := f.DialGroups(key(5), Dials{InRegion: 2}); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("regions without dials across: got %v, want ErrDisconnected", err)
	}
	if _, _, err := f.DialGroups(key(5), Dials{}); err == nil {
		t.Fatal("dial groups of a full mesh")
	}
}

// TestLinksAmongStandIns: a member that is down has no links, and each
// member that chose it dials the next of that group instead, so its
// neighbours keep their quota and the live mesh stays connected.
func TestLinksAmongStandIns(t *testing.T) {
	f := regionalFile(60, "a", "b", "c")
	d := Dials{InRegion: 3, PerOtherRegion: 1}
	down := map[int]bool{}
	for i := 0; i < 60; i += 3 { // a third of the members, spread over the regions
		down[i] = true
	}
	up := func(i int) bool { return !down[i] }
	links, err := f.LinksAmong(d, up)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Members {
		if down[i] {
			if len(links[i]) != 0 {
				t.Fatalf("member %d is down and has links %v", i, links[i])
			}
			continue
		}
		groups, _ := f.Groups(i, d)
		for _, g := range groups {
			var want []int // the first Want members of the group that are up
			for _, j := range g.Members {
				if len(want) < g.Want && up(j) {
					want = append(want, j)
				}
			}
			for _, j := range want {
				if !slices.Contains(links[i], j) {
					t.Fatalf("member %d: group %q's stand-in %d is not linked (links %v)", i, g.Region, j, links[i])
				}
			}
		}
		for _, j := range links[i] {
			if down[j] {
				t.Fatalf("member %d is linked to %d, which is down", i, j)
			}
		}
	}
}
