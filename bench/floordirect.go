package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/allegro-mesh/allegro/p2p"
)

// floorCertProtocol carries certificates to their entry in the linear
// pattern: records of a 4-byte length and a message (one object, or a
// floor frame).
const floorCertProtocol protocol.ID = "/allegro-floor/certs/1"

// floorDirect is a floor node's certificate streams to other entries: per
// entry a queue and a writer that sends everything queued when it wakes,
// as one frame with Frames, else one record per certificate.
type floorDirect struct {
	nd     *floorNode
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	queues map[int]*directQueue
}

type directQueue struct {
	wake chan struct{}

	mu    sync.Mutex
	queue [][]byte
}

func newFloorDirect(nd *floorNode) *floorDirect {
	ctx, cancel := context.WithCancel(context.Background())
	return &floorDirect{nd: nd, ctx: ctx, cancel: cancel, queues: map[int]*directQueue{}}
}

// enqueue queues a certificate for entry's stream, starting its writer on
// first use.
func (d *floorDirect) enqueue(entry int, obj []byte) {
	d.mu.Lock()
	q, ok := d.queues[entry]
	if !ok {
		q = &directQueue{wake: make(chan struct{}, 1)}
		d.queues[entry] = q
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.writer(entry, q)
		}()
	}
	d.mu.Unlock()
	q.mu.Lock()
	q.queue = append(q.queue, obj)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take removes up to a frame's worth of queued certificates.
func (q *directQueue) take() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(len(q.queue), p2p.DefaultFrameMaxObjects)
	out := q.queue[:k:k]
	q.queue = q.queue[k:]
	return out
}

// writer sends entry's queue over one stream, opened on first use and
// again after a failed write; what cannot be sent is dropped, as gossip
// drops what a full queue cannot hold.
func (d *floorDirect) writer(entry int, q *directQueue) {
	var st network.Stream
	defer func() {
		if st != nil {
			_ = st.Reset()
		}
	}()
	nd := d.nd
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-q.wake:
		}
		for objs := q.take(); len(objs) > 0; objs = q.take() {
			records := objs
			if nd.pattern.Frames {
				records = [][]byte{encodeFloorFrame(nd.sizes.FrameHeader, nd.index, nd.frameSeq.Add(1), objs)}
			}
			var buf []byte
			for _, r := range records {
				buf = binary.BigEndian.AppendUint32(buf, uint32(len(r)))
				buf = append(buf, r...)
			}
			if st == nil {
				s, err := nd.host.LibP2P().NewStream(d.ctx, nd.peers[entry], floorCertProtocol)
				if err != nil {
					continue
				}
				st = s
			}
			if _, err := st.Write(buf); err != nil {
				_ = st.Reset()
				st = nil
				continue
			}
			nd.published.Add(int64(len(records)))
			nd.objectsPublished.Add(int64(len(objs)))
		}
	}
}

// readDirect receives certificates on one stream from another node and
// reacts to them as to gossiped ones.
func (nd *floorNode) readDirect(ctx context.Context, st network.Stream) {
	defer st.Close()
	r := bufio.NewReader(st)
	var head [4]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return
		}
		size := binary.BigEndian.Uint32(head[:])
		if size > p2p.MaxFrameSize {
			_ = st.Reset()
			return
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(r, data); err != nil {
			return
		}
		objs := [][]byte{data}
		if isFloorFrame(data) {
			objs = floorFrameObjects(data)
		}
		nd.copies.Add(1)
		nd.objectCopies.Add(int64(len(objs)))
		nd.react(ctx, objs)
	}
}
