package devnet

import (
	"context"
	"io"

	"github.com/allegro-mesh/allegro/demo"
)

// The chained-payment demo lives in package demo (the sidecar dashboard's
// dev wallet runs it too, and package node cannot import devnet); these
// names keep devnet's API.

// DemoReport is what the chained-payment demo observed.
type DemoReport = demo.Report

// Target is a running network the demo talks to.
type Target = demo.Target

// Target describes the devnet for RunDemo.
func (d *Devnet) Target() Target {
	t := Target{ChainURL: d.Chain.WSEndpoint(), BlockPeriod: d.Config.BlockPeriod, Sidecars: d.APIAddrs(), Committee: d.Committee, QCShards: 16}
	if d.Config.EpochLength > 0 {
		t.Network, t.Bindings = d.File, d.BindingsDir
	}
	for _, n := range d.Nodes() {
		t.Bootstrap = append(t.Bootstrap, n.Sidecar.Mesh().Host().AddrInfo())
	}
	return t
}

// RunDemo runs the reference scenario against t (see demo.Run).
func RunDemo(ctx context.Context, t Target, w io.Writer) (*DemoReport, error) {
	return demo.Run(ctx, t, w)
}
