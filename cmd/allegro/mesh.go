package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/cli"
)

const meshSynopsis = "mesh --committee FILE [--dial-in-region N --dial-per-other-region M]"

// runCommitteeMesh prints the shape of the mesh a committee's sidecars form
// under the given dials ([p2p] dial_in_region, dial_per_other_region), so an
// operator can choose them before deploying. A disconnected mesh, which
// sidecars would refuse at start, is an error.
func runCommitteeMesh(_ context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("committee", meshSynopsis)
	path := fs.String("committee", "committee.toml", "the committee file (members with their regions)")
	inRegion := fs.Int("dial-in-region", 0, "members of its own region each sidecar dials (0: every member, a full mesh)")
	perOther := fs.Int("dial-per-other-region", 0, "members of every other region each sidecar dials")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	f, err := committee.LoadFile(*path)
	if err != nil {
		return err
	}
	d := committee.Dials{InRegion: *inRegion, PerOtherRegion: *perOther}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("--%s", err)
	}
	s, err := f.Shape(d)
	if err != nil && !errors.Is(err, committee.ErrDisconnected) {
		return err
	}
	dials := "every member (a full mesh)"
	if d.Sparse() {
		dials = fmt.Sprintf("%d of its region and %d of every other", d.InRegion, d.PerOtherRegion)
	}
	fmt.Fprintf(stdout, "%s: %d members in %d regions; each sidecar dials %s\n", *path, s.Members, s.Regions, dials)
	fmt.Fprintf(stdout, "connections per sidecar: min %d, mean %.1f, max %d (a full mesh: %d)\n", s.MinLinks, s.MeanLinks, s.MaxLinks, s.Members-1)
	fmt.Fprintf(stdout, "links: %d, of which %d between regions\n", s.Links, s.CrossRegionLinks)
	if !s.Connected {
		return fmt.Errorf("sidecars would refuse these dials: %w", err)
	}
	fmt.Fprintf(stdout, "relay hops between members: at most %d, mean %.2f\n", s.MaxHops, s.MeanHops)
	if d.Sparse() {
		fmt.Fprintf(stdout, "sidecar settings: [p2p] relay = true, dial_in_region = %d, dial_per_other_region = %d\n", d.InRegion, d.PerOtherRegion)
	}
	return nil
}
