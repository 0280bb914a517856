package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
)

// dialAll opens one gRPC connection per endpoint. close closes them.
func dialAll(endpoints []string) (clients []fastpayv1.FastPaySidecarClient, closeAll func(), err error) {
	var conns []*grpc.ClientConn
	closeAll = func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	for _, ep := range endpoints {
		conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("dial %s: %w", ep, err)
		}
		conns = append(conns, conn)
		clients = append(clients, fastpayv1.NewFastPaySidecarClient(conn))
	}
	return clients, closeAll, nil
}

// SubmitToQC submits req with SubmitFastPayStream and returns when the QC
// event arrives. It does not verify the QC: load generators stand for many
// wallets elsewhere, so their own verification is not charged to the mesh.
func SubmitToQC(ctx context.Context, sc fastpayv1.FastPaySidecarClient, req *fastpayv1.SubmitFastPayRequest, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stream, err := sc.SubmitFastPayStream(ctx, req)
	if err != nil {
		return err
	}
	for range 10_000 {
		ev, err := stream.Recv()
		if err == io.EOF {
			return errors.New("stream ended without a QC")
		}
		if err != nil {
			return fmt.Errorf("stream: %w", err)
		}
		switch e := ev.Event.(type) {
		case *fastpayv1.SubmitFastPayEvent_Reject:
			return fmt.Errorf("rejected: %s: %s", e.Reject.GetCode(), e.Reject.GetMessage())
		case *fastpayv1.SubmitFastPayEvent_Qc:
			return nil
		}
	}
	return errors.New("no QC after 10,000 stream events")
}

// closedLoop runs streams concurrent submitters until total payments have
// their QC: each stream submits its next payment (next(stream), in order:
// one sender per stream keeps its nonces sequential) once the previous one
// has its QC, through clients[stream % len(clients)]. done counts finished
// payments as they finish. It returns every payment's submit-to-QC time.
func closedLoop(ctx context.Context, streams, total int, clients []fastpayv1.FastPaySidecarClient, timeout time.Duration,
	next func(stream int) (*fastpayv1.SubmitFastPayRequest, error), done *atomic.Int64) ([]time.Duration, error) {
	if streams <= 0 || len(clients) == 0 {
		return nil, errors.New("closed loop: no streams or no endpoints")
	}
	return driveStreams(ctx, streams, total, done, func(ctx context.Context, g int) (time.Duration, error) {
		req, err := next(g)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		err = SubmitToQC(ctx, clients[g%len(clients)], req, timeout)
		return time.Since(start), err
	})
}

// driveStreams runs streams goroutines that claim and make payments one
// at a time until total have been claimed; pay makes stream g's next one
// and reports its latency. The first failure stops every stream. done
// (may be nil) counts completed payments. It returns the latencies of all
// payments made, failed ones included.
func driveStreams(ctx context.Context, streams, total int, done *atomic.Int64, pay func(ctx context.Context, stream int) (time.Duration, error)) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var claimed atomic.Int64
	lats := make([][]time.Duration, streams)
	errs := make([]error, streams)
	var wg sync.WaitGroup
	for g := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for claimed.Add(1) <= int64(total) {
				lat, err := pay(ctx, g)
				if lat > 0 {
					lats[g] = append(lats[g], lat)
				}
				if err != nil {
					if ctx.Err() == nil {
						errs[g] = fmt.Errorf("stream %d: %w", g, err)
					}
					cancel()
					return
				}
				if done != nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	var out []time.Duration
	for _, l := range lats {
		out = append(out, l...)
	}
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	return out, ctx.Err()
}

// progress prints done/total and the rate every interval until stop is
// called. extra (may be nil) appends to each line.
func progress(w io.Writer, interval time.Duration, label string, total int, done *atomic.Int64, extra func() string) (stop func()) {
	if w == nil || interval <= 0 {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		start, lastAt, last := time.Now(), time.Now(), int64(0)
		for {
			select {
			case <-quit:
				return
			case now := <-t.C:
				d := done.Load()
				line := fmt.Sprintf("[%s] %d/%d payments, %.0f/s now, %.0f/s overall", label, d, total,
					float64(d-last)/now.Sub(lastAt).Seconds(), float64(d)/now.Sub(start).Seconds())
				if extra != nil {
					line += ", " + extra()
				}
				fmt.Fprintln(w, line)
				lastAt, last = now, d
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
	}
}
