package p2p

import (
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// HostConstructor builds the libp2p host of a mesh node in place of
// libp2p.New (Config.NewHost). key is the node's identity; opts are the
// options the mesh would pass to libp2p.New (identity, listen addresses,
// TCP and QUIC, connection manager, ...) followed by Config.HostOptions. A
// constructor may ignore opts (a peer of a libp2p mock network does), but the
// host it returns must have key's peer ID. Benchmarks and simulations use it
// to run the mesh over an emulated network.
type HostConstructor func(key crypto.PrivKey, opts []libp2p.Option) (host.Host, error)

// newLibp2pHost builds the host with Config.HostOptions appended to opts,
// through Config.NewHost when set. cm is the connection manager in opts: a
// host built by libp2p.New closes it, one from a constructor that ignored
// opts would not, so the returned host closes it too (closing it twice is
// harmless).
func (c *Config) newLibp2pHost(key crypto.PrivKey, opts []libp2p.Option, cm io.Closer) (host.Host, error) {
	opts = append(opts, c.HostOptions...)
	if c.NewHost == nil {
		return libp2p.New(opts...)
	}
	h, err := c.NewHost(key, opts)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("host constructor returned no host")
	}
	want, err := peer.IDFromPrivateKey(key)
	if err != nil {
		_ = h.Close()
		return nil, err
	}
	if h.ID() != want {
		_ = h.Close()
		return nil, fmt.Errorf("host constructor returned peer %s, want %s (the identity key's)", h.ID(), want)
	}
	return &closeAlso{Host: h, also: cm}, nil
}

// closeAlso is a host that closes another resource with itself.
type closeAlso struct {
	host.Host
	also io.Closer
}

func (c *closeAlso) Close() error {
	return errors.Join(c.Host.Close(), c.also.Close())
}
