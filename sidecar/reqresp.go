package sidecar

import (
	"bufio"
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

// The closes and bindings protocols are one request and one answer on a
// stream, each a length-delimited protobuf message bounded in size, the
// whole exchange bounded in time.

// ask sends req to p over proto and reads the answer into resp.
func (s *Sidecar) ask(ctx context.Context, p peer.ID, pid protocol.ID, timeout time.Duration, req, resp proto.Message, maxResp int) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := s.mesh.Host().LibP2P().NewStream(ctx, p, pid)
	if err != nil {
		return err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(timeout))
	bw := bufio.NewWriter(st)
	if _, err := protodelim.MarshalTo(bw, req); err != nil {
		_ = st.Reset()
		return err
	}
	if err := bw.Flush(); err != nil {
		_ = st.Reset()
		return err
	}
	if err := st.CloseWrite(); err != nil {
		_ = st.Reset()
		return err
	}
	return protodelim.UnmarshalOptions{MaxSize: int64(maxResp)}.UnmarshalFrom(bufio.NewReader(st), resp)
}

// answer reads one request of at most maxReq bytes from st into req and
// writes what respond returns for it (nil: the stream is reset).
func answer(st network.Stream, timeout time.Duration, req proto.Message, maxReq int, respond func() proto.Message) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(timeout))
	if err := (protodelim.UnmarshalOptions{MaxSize: int64(maxReq)}).UnmarshalFrom(bufio.NewReader(st), req); err != nil {
		_ = st.Reset()
		return
	}
	resp := respond()
	if resp == nil {
		_ = st.Reset()
		return
	}
	bw := bufio.NewWriter(st)
	if _, err := protodelim.MarshalTo(bw, resp); err != nil {
		_ = st.Reset()
		return
	}
	_ = bw.Flush()
}
