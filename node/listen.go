package node

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/p2p"
)

// meshListenAddrs returns the addresses the mesh listens on, following this
// validator's committee entry, which is where every peer dials it:
//   - listen addresses left at their defaults take the entry's TCP and QUIC
//     ports (on all interfaces), so two sidecars on one host, each with its
//     own entry, do not both bind the default port;
//   - listen addresses set explicitly, with fixed ports of which none is a
//     port of the entry, are refused: peers would dial a port nobody
//     listens on (or another sidecar's). Behind a NAT that maps the port,
//     set announce_addrs and the check is skipped.
//
// An entry without addresses, or with none on TCP or QUIC, changes nothing.
func meshListenAddrs(cfg p2p.Config, f *committee.File, self ed25519.PublicKey) ([]string, error) {
	entry, ok := memberOf(f, self)
	if !ok || len(entry.Addrs) == 0 {
		return cfg.ListenAddrs, nil
	}
	tcp, quic := entryPorts(entry.Addrs)
	if len(tcp)+len(quic) == 0 {
		return cfg.ListenAddrs, nil
	}
	if slices.Equal(cfg.ListenAddrs, p2p.DefaultConfig().ListenAddrs) {
		var out []string
		for _, port := range tcp {
			out = append(out, "/ip4/0.0.0.0/tcp/"+port)
		}
		for _, port := range quic {
			out = append(out, "/ip4/0.0.0.0/udp/"+port+"/quic-v1")
		}
		return out, nil
	}
	if len(cfg.AnnounceAddrs) > 0 {
		return cfg.ListenAddrs, nil
	}
	tcpListen, quicListen := entryPorts(cfg.ListenAddrs)
	for _, p := range append(tcpListen, quicListen...) {
		if p == "0" {
			return cfg.ListenAddrs, nil // chosen by the OS: nothing to compare
		}
	}
	for _, p := range tcpListen {
		if slices.Contains(tcp, p) {
			return cfg.ListenAddrs, nil
		}
	}
	for _, p := range quicListen {
		if slices.Contains(quic, p) {
			return cfg.ListenAddrs, nil
		}
	}
	return nil, fmt.Errorf("[p2p] listen_addrs %s use none of the ports of this validator's committee entry %q (%s), where its peers dial it: "+
		"listen on one of them (or leave listen_addrs unset to follow the entry), or set announce_addrs when a NAT maps them",
		strings.Join(cfg.ListenAddrs, ", "), entry.Name, strings.Join(entry.Addrs, ", "))
}

// memberOf finds the committee entry of the validator with public key pub.
func memberOf(f *committee.File, pub ed25519.PublicKey) (committee.Member, bool) {
	want := hex.EncodeToString(pub)
	for _, m := range f.Members {
		if strings.EqualFold(strings.TrimPrefix(m.PublicKey, "0x"), want) {
			return m, true
		}
	}
	return committee.Member{}, false
}

// entryPorts returns the distinct TCP ports and QUIC (UDP) ports of addrs;
// addresses that do not parse are left to the committee and p2p checks.
func entryPorts(addrs []string) (tcp, quic []string) {
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		if p, err := a.ValueForProtocol(ma.P_TCP); err == nil && !slices.Contains(tcp, p) {
			tcp = append(tcp, p)
		}
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err == nil {
			if p, err := a.ValueForProtocol(ma.P_UDP); err == nil && !slices.Contains(quic, p) {
				quic = append(quic, p)
			}
		}
	}
	return tcp, quic
}
