package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/apiserver/apitest"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// rssBytes reads a process's resident set size from /proc.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// metricValue reads one sample of the API's Prometheus text (0 when absent).
func metricValue(t *testing.T, api, sample string) float64 {
	t.Helper()
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("metric %s: %v", sample, err)
	}
	return v
}

// TestFloodKeepsSidecarBounded: a hostile client address floods one sidecar
// process of four with pending gRPC streams (thousands, on a few
// connections), gRPC requests and HTTP uploads trickling in, and hundreds of
// silent connections, all at once and with the default limits (only the
// timeouts shortened to fit a test). The limits hold it: streams over
// max_concurrent_streams are refused, connections over max_conns_per_ip
// reset, every pending stream, slow upload and silent connection is cut off
// by its timeout; the sidecar's resident memory grows by less than 64 MiB;
// and payments submitted meanwhile from another address get their QCs.
func TestFloodKeepsSidecarBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	if _, err := rssBytes(os.Getpid()); err != nil {
		t.Skipf("needs /proc to read resident memory: %v", err)
	}
	const (
		attacker         = "127.0.0.2" // honest clients use 127.0.0.1
		bodyTimeout      = 2 * time.Second
		handshakeTimeout = 3 * time.Second
		pendingConns     = 4
		streamsPerConn   = 1000
		partialStreams   = 10
		slowUploads      = 20
		idleConns        = 300
		payments         = 8
		paymentEvery     = 400 * time.Millisecond
		maxGrowth        = 64 << 20
	)
	limits := apiserver.DefaultConfig()
	streamLimit, ipLimit := int(limits.MaxConcurrentStreams), limits.MaxConnsPerIP

	cfgFile := filepath.Join(t.TempDir(), "flooded.toml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, "[api]\nbody_read_timeout = %q\nhandshake_timeout = %q\n",
		bodyTimeout.String(), handshakeTimeout.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pc := startSidecars(t, 4, devchain.Config{BlockPeriod: 500 * time.Millisecond, LoadAccounts: 1 + payments},
		func(i int) []string {
			if i == 0 {
				return []string{"--config", cfgFile}
			}
			return nil
		})
	pc.waitMesh(t, ctx)
	api, addr := pc.api(0), fmt.Sprintf("127.0.0.1:%d", pc.apiPorts[0])
	accounts := devkit.LoadAccounts(1 + payments)

	probe, err := apitest.Dial(ctx, addr, attacker)
	if err != nil {
		t.Skipf("cannot dial from %s: %v", attacker, err)
	}
	probe.Close()

	// Warm up, then the baseline.
	if _, err := submitForQC(ctx, api, payment(t, accounts[0], 0, 1)); err != nil {
		t.Fatalf("warm-up payment: %v", err)
	}
	pid := pc.procs[0].Process.Pid
	base, err := rssBytes(pid)
	if err != nil {
		t.Fatal(err)
	}
	var peak int64
	sampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := rssBytes(pid); err == nil && v > peak {
				peak = v
			}
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
		}
	}()

	// Every flood connection from the attacker's address; dial order is
	// accept order, so the idle connections come last.
	dial := func() net.Conn {
		c, err := apitest.Dial(ctx, addr, attacker)
		if err != nil {
			t.Fatalf("dial from %s: %v", attacker, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	floodStart := time.Now()

	// Pending streams: headers and never a request message.
	type pending struct {
		h2     *apitest.H2Conn
		opened map[uint32]time.Time
	}
	var pendings []pending
	for range pendingConns {
		h2, err := apitest.NewH2Conn(dial())
		if err != nil {
			t.Fatal(err)
		}
		p := pending{h2: h2, opened: make(map[uint32]time.Time, streamsPerConn)}
		for range streamsPerConn {
			at := time.Now()
			id, err := h2.OpenGRPC("/tempo.fastpay.v1.FastPaySidecar/SubmitFastPay")
			if err != nil {
				t.Fatal(err)
			}
			p.opened[id] = at
		}
		pendings = append(pendings, p)
	}
	// gRPC requests trickling in: the message started, never finished.
	partial, err := apitest.NewH2Conn(dial())
	if err != nil {
		t.Fatal(err)
	}
	var partialIDs []uint32
	for range partialStreams {
		id, err := partial.OpenGRPC("/tempo.fastpay.v1.FastPaySidecar/SubmitFastPayStream")
		if err != nil {
			t.Fatal(err)
		}
		if err := partial.SendPartialMessage(id, 1000, []byte{0x0a}); err != nil {
			t.Fatal(err)
		}
		partialIDs = append(partialIDs, id)
	}
	// HTTP uploads trickling in, a byte every 200 ms.
	var wg sync.WaitGroup
	uploads := make([]apitest.Upload, slowUploads)
	uploadErrs := make([]error, slowUploads)
	for i := range slowUploads {
		conn := dial()
		wg.Add(1)
		go func() {
			defer wg.Done()
			uploads[i], uploadErrs[i] = apitest.SlowUpload(ctx, conn, "/api/v1/submit-raw-tx", 1000, 200*time.Millisecond)
		}()
	}
	// Silent connections: when did the server close each?
	closedAfter := make([]time.Duration, idleConns)
	for i := range idleConns {
		dialed := time.Now()
		conn, err := apitest.Dial(ctx, addr, attacker)
		if apitest.IsReset(err) {
			continue // reset at accept before the dial returned: closedAfter[i] = 0
		}
		if err != nil {
			t.Fatalf("dial from %s: %v", attacker, err)
		}
		t.Cleanup(func() { conn.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			closedAfter[i] = -1
			if apitest.ClosedWithin(conn, handshakeTimeout+10*time.Second) {
				closedAfter[i] = time.Since(dialed)
			}
		}()
	}
	flooded := pendingConns + 1 + slowUploads // attacker connections before the silent ones

	// Meanwhile, from another address, payments keep getting QCs: one
	// every paymentEvery, spread over the flood (its streams and silent
	// connections are held for body_read_timeout and handshake_timeout).
	bodies := make([][]byte, payments+1)
	for i := 1; i <= payments; i++ {
		bodies[i] = payment(t, accounts[i], 0, 1)
	}
	paid := make(chan struct{})
	payCtx, stopPaying := context.WithCancel(ctx)
	t.Cleanup(func() { // a test failing early must not end under a goroutine still logging
		stopPaying()
		<-paid
	})
	go func() {
		defer close(paid)
		for i := 1; i <= payments; i++ {
			start := time.Now()
			if _, err := submitForQC(payCtx, api, bodies[i]); err != nil {
				if payCtx.Err() != nil {
					return
				}
				t.Errorf("payment %d during the flood: %v", i, err)
			} else {
				t.Logf("payment %d, %s into the flood: QC in %s", i, start.Sub(floodStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			}
			if code, _, err := get(api + "/livez"); err != nil || code != http.StatusOK {
				t.Errorf("/livez during the flood: %d %v", code, err)
			}
			select {
			case <-time.After(paymentEvery):
			case <-payCtx.Done():
				return
			}
		}
	}()

	// Every pending stream ends: refused over the limit, cut off by the
	// request timeout under it.
	waitCtx, waitCancel := context.WithTimeout(ctx, bodyTimeout+20*time.Second)
	defer waitCancel()
	for ci, p := range pendings {
		if err := p.h2.WaitFor(waitCtx, func() bool { return len(p.h2.Ends()) == streamsPerConn }); err != nil {
			t.Fatalf("connection %d: %d of %d pending streams ended", ci, len(p.h2.Ends()), streamsPerConn)
		}
		refused, timedOut := 0, 0
		for id, e := range p.h2.Ends() {
			switch {
			case e.RST && e.Code == http2.ErrCodeRefusedStream:
				refused++
			case e.GRPCStatus == apitest.GRPCDeadlineExceeded:
				timedOut++
				if took := e.At.Sub(p.opened[id]); took < bodyTimeout {
					t.Errorf("connection %d stream %d cut off after %s, before body_read_timeout", ci, id, took)
				}
			default:
				t.Errorf("connection %d stream %d ended %+v", ci, id, e)
			}
		}
		if refused != streamsPerConn-streamLimit || timedOut != streamLimit {
			t.Errorf("connection %d: %d streams refused, %d timed out; want %d and %d (max_concurrent_streams %d)",
				ci, refused, timedOut, streamsPerConn-streamLimit, streamLimit, streamLimit)
		}
	}
	if err := partial.WaitFor(waitCtx, func() bool { return len(partial.Ends()) == partialStreams }); err != nil {
		t.Fatalf("%d of %d partial requests ended", len(partial.Ends()), partialStreams)
	}
	for _, id := range partialIDs {
		if e, _ := partial.End(id); e.GRPCStatus != apitest.GRPCDeadlineExceeded {
			t.Errorf("partial request on stream %d ended %+v", id, e)
		}
	}
	wg.Wait()
	floodTook := time.Since(floodStart)
	<-paid

	for i, u := range uploads {
		if uploadErrs[i] != nil || u.Status != http.StatusRequestTimeout || u.Sent >= 1000 ||
			u.Took < bodyTimeout || u.Took > bodyTimeout+10*time.Second {
			t.Errorf("slow upload %d: %+v %v; want 408 after body_read_timeout %s", i, u, uploadErrs[i], bodyTimeout)
		}
	}
	refused, timedOut := 0, 0
	for i, d := range closedAfter {
		switch {
		case d < 0:
			t.Errorf("silent connection %d still open %s after it was dialled", i, handshakeTimeout+10*time.Second)
		case d < handshakeTimeout/2:
			refused++
		case d >= handshakeTimeout-100*time.Millisecond:
			timedOut++
		default:
			t.Errorf("silent connection %d closed after %s: neither at accept nor at handshake_timeout", i, d)
		}
	}
	if room := ipLimit - flooded; timedOut > room || refused < idleConns-room {
		t.Errorf("silent connections: %d accepted (then cut at handshake_timeout), %d reset at accept; want at most %d accepted (max_conns_per_ip %d, %d already open)",
			timedOut, refused, room, ipLimit, flooded)
	}

	close(sampling)
	<-sampled
	growth := peak - base
	t.Logf("flood of %s: %d stream attempts on %d connections, %d partial gRPC requests, %d slow uploads, %d silent connections (%d reset at accept)",
		floodTook.Round(time.Millisecond), pendingConns*streamsPerConn, pendingConns, partialStreams, slowUploads, idleConns, refused)
	t.Logf("sidecar RSS: baseline %.1f MiB, peak %.1f MiB, growth %.1f MiB (limit %d MiB)",
		float64(base)/(1<<20), float64(peak)/(1<<20), float64(growth)/(1<<20), maxGrowth>>20)
	if growth >= maxGrowth {
		t.Errorf("resident memory grew by %.1f MiB under the flood, limit %d MiB", float64(growth)/(1<<20), maxGrowth>>20)
	}

	// The server's own account agrees.
	for sample, atLeast := range map[string]float64{
		`allegro_api_connections_refused_total{reason="per_ip"}`:   float64(refused),
		`allegro_api_request_read_timeouts_total{protocol="grpc"}`: float64(pendingConns*streamLimit + partialStreams),
		`allegro_api_request_read_timeouts_total{protocol="http"}`: slowUploads,
	} {
		if got := metricValue(t, api, sample); got < atLeast {
			t.Errorf("%s = %g, want at least %g", sample, got, atLeast)
		}
	}
	// Once the attacker hangs up, its connections are gone.
	for _, p := range pendings {
		p.h2.Close()
	}
	partial.Close()
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, api, "allegro_api_connections_open") > 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%g API connections still open after the flood ended", metricValue(t, api, "allegro_api_connections_open"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get fetches url and returns its status and body.
func get(url string) (int, []byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
