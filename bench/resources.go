package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/node"
)

// childProc is one running child process of the suite: a sidecar of the
// resource run or the saturation run's load generator.
type childProc struct {
	name  string // for errors: "sidecar 2", "load generator"
	cmd   *exec.Cmd
	stdin io.WriteCloser
	msgs  chan childMsg // closed when stdout ends
	log   *os.File
	exit  chan error // the process's exit, once
}

// sidecarProc is one sidecar process of the resource run.
type sidecarProc struct {
	*childProc
	api  string
	peer peer.AddrInfo
}

// startChildProc starts a child process with args, its stderr written to
// logPath (and copied to echo, if not nil), and reads its stdout into msgs.
func startChildProc(start func([]string) *exec.Cmd, args []string, name, logPath string, echo io.Writer) (*childProc, error) {
	cmd := start(args)
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	if echo != nil {
		cmd.Stderr = io.MultiWriter(logFile, echo)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &childProc{name: name, cmd: cmd, stdin: stdin, msgs: make(chan childMsg, 16), log: logFile, exit: make(chan error, 1)}
	go func() {
		defer close(p.msgs)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), childMsgMaxBytes)
		for sc.Scan() {
			var m childMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = childMsg{Kind: "error", Error: fmt.Sprintf("unparsable line %q", sc.Text())}
			}
			p.msgs <- m
		}
		p.exit <- cmd.Wait()
	}()
	return p, nil
}

// expect waits for the next message, which must be of kind.
func (p *childProc) expect(ctx context.Context, kind string) (childMsg, error) {
	select {
	case <-ctx.Done():
		return childMsg{}, fmt.Errorf("%s: waiting for %q: %w (log: %s)", p.name, kind, ctx.Err(), p.log.Name())
	case m, ok := <-p.msgs:
		switch {
		case !ok:
			return m, fmt.Errorf("%s exited before %q (log: %s)", p.name, kind, p.log.Name())
		case m.Error != "":
			return m, fmt.Errorf("%s: %s", p.name, m.Error)
		case m.Kind != kind:
			return m, fmt.Errorf("%s: got %q, want %q", p.name, m.Kind, kind)
		}
		return m, nil
	}
}

func (p *childProc) send(m childMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = p.stdin.Write(append(b, '\n'))
	return err
}

// stop closes stdin (the child stops its node and exits) and waits for
// the exit; after timeout the process is killed.
func (p *childProc) stop(timeout time.Duration) error {
	_ = p.stdin.Close()
	for range cap(p.msgs) + 1 { // drain what is left, bounded
		if _, ok := <-p.msgs; !ok {
			break
		}
	}
	defer p.log.Close()
	select {
	case err := <-p.exit:
		return err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exit
		return fmt.Errorf("%s did not exit within %s; killed", p.name, timeout)
	}
}

// rssSample is the sidecars' resident memory when done payments were done.
type rssSample struct {
	done int64
	rss  []uint64
	anon []uint64
}

// runResources starts ResourceValidators sidecar processes, drives
// ResourcePayments payments through them at saturation and reports their
// resident memory (VmHWM: the peak since start), Go heap and bytes sent.
func (s *suite) runResources(ctx context.Context) error {
	n, total, streams := s.cfg.ResourceValidators, s.cfg.ResourcePayments, s.cfg.Streams
	dir, err := s.sectionDir("resources")
	if err != nil {
		return err
	}
	procs := make([]*sidecarProc, 0, n)
	defer func() {
		for _, p := range procs {
			_ = p.stop(time.Minute)
		}
	}()
	for i := range n {
		pc := SidecarProcessConfig{Index: i, Validators: n, ChainID: s.cfg.ChainID, Senders: streams,
			Dir: filepath.Join(dir, validatorName(i)), LogLevel: "warn", Transport: s.cfg.Transport, CertRouting: s.cfg.CertRouting}
		cp, err := startChildProc(s.cfg.StartSidecar, pc.Args(), fmt.Sprintf("sidecar %d", i), filepath.Join(dir, validatorName(i)+".log"), nil)
		if err != nil {
			return err
		}
		procs = append(procs, &sidecarProc{childProc: cp})
	}
	setupCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var infos []peer.AddrInfo
	var endpoints []string
	for _, p := range procs {
		m, err := p.expect(setupCtx, "hello")
		if err != nil {
			return err
		}
		if m.Peer == nil {
			return fmt.Errorf("%s: hello without a peer address", p.name)
		}
		p.api, p.peer = m.API, *m.Peer
		infos = append(infos, p.peer)
		endpoints = append(endpoints, p.api)
	}
	for _, p := range procs {
		if err := p.send(childMsg{Kind: "peers", Peers: infos}); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	for _, p := range procs {
		if _, err := p.expect(setupCtx, "ready"); err != nil {
			return err
		}
	}
	startRSS, err := s.readRSS(procs)
	if err != nil {
		return err
	}
	clients, closeClients, err := dialAll(endpoints)
	if err != nil {
		return err
	}
	defer closeClients()

	senders := senderKeys(streams)
	nonces := make([]uint64, streams)
	next := func(g int) (*fastpayv1.SubmitFastPayRequest, error) {
		k := nonces[g]
		nonces[g]++
		return newPayment(senders[g], s.cfg.ChainID, k, recipientAddress())
	}
	var done atomic.Int64
	stopSampling := sampleRSS(procs, &done, time.Second)
	stopProgress := progress(s.cfg.Progress, s.cfg.ProgressInterval, "resources", total, &done, func() string {
		rss, err := s.readRSS(procs)
		if err != nil {
			return "RSS unknown"
		}
		return "RSS MiB " + joinMiB(rss)
	})
	cpu0, err := sidecarsCPU(procs)
	if err != nil {
		return err
	}
	midRun := s.midRunStats(ctx, procs, &done, int64(total))
	wall0 := time.Now()
	_, err = closedLoop(ctx, streams, total, clients, payTimeout, next, &done)
	wall := time.Since(wall0)
	stopProgress()
	history := stopSampling()
	halfStats, halfErr := midRun()
	if err != nil {
		return err
	}
	if halfErr != nil {
		return halfErr
	}
	// Before the stats requests: they collect garbage and write profiles.
	cpu1, err := sidecarsCPU(procs)
	if err != nil {
		return err
	}
	stats, err := s.childStats(ctx, procs, "")
	if err != nil {
		return err
	}
	mem := memFigures{start: startRSS, half: halfway(history, int64(total)), end: make([]uint64, len(procs)),
		peak: make([]uint64, len(procs)), peakAnon: peakAnon(history, len(procs)), file: make([]uint64, len(procs))}
	for i, p := range procs {
		st, err := memStatus(p.cmd.Process.Pid)
		if err != nil {
			return err
		}
		mem.peak[i], mem.end[i], mem.file[i] = st.Peak, st.RSS, st.File
		mem.peakAnon[i] = max(mem.peakAnon[i], st.Anon)
	}
	s.resourceRows(n, total, wall, cpu1-cpu0, mem, stats, halfStats)
	return nil
}

// childStats asks every sidecar process for its stats (each collects
// garbage first) and, with a heap profile folder, for a heap profile named
// after the validator and suffix.
func (s *suite) childStats(ctx context.Context, procs []*sidecarProc, suffix string) ([]*ChildStats, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stats := make([]*ChildStats, len(procs))
	for i, p := range procs {
		req := childMsg{Kind: "stats"}
		if s.cfg.HeapProfileDir != "" {
			if err := os.MkdirAll(s.cfg.HeapProfileDir, 0o755); err != nil {
				return nil, err
			}
			path, err := filepath.Abs(filepath.Join(s.cfg.HeapProfileDir, validatorName(i)+suffix+".heap"))
			if err != nil {
				return nil, err
			}
			req.HeapProfile = path
		}
		if err := p.send(req); err != nil {
			return nil, err
		}
		m, err := p.expect(ctx, "stats")
		if err != nil {
			return nil, err
		}
		stats[i] = m.Stats
	}
	return stats, nil
}

// midRunStats, in a run with heap profiles, takes the sidecars' stats and
// heap profiles (suffix "-half") once half the payments are done: the end
// of the run shows what stays, while the peak comes under load, with
// queues and frames in flight. Only then, because the stats request
// collects garbage and parses a profile, which a plain run's peak should
// not include. wait stops it if it has not begun, and returns what it took
// (nil when it did not run).
func (s *suite) midRunStats(ctx context.Context, procs []*sidecarProc, done *atomic.Int64, total int64) (wait func() ([]*ChildStats, error)) {
	if s.cfg.HeapProfileDir == "" {
		return func() ([]*ChildStats, error) { return nil, nil }
	}
	quit := make(chan struct{})
	var stats []*ChildStats
	var err error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for done.Load() < total/2 {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		stats, err = s.childStats(ctx, procs, "-half")
	}()
	return func() ([]*ChildStats, error) {
		close(quit)
		<-finished
		return stats, err
	}
}

// sidecarsCPU returns the CPU time the sidecar processes have used, all
// together.
func sidecarsCPU(procs []*sidecarProc) (time.Duration, error) {
	var sum time.Duration
	for _, p := range procs {
		d, err := procCPU(p.cmd.Process.Pid)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.name, err)
		}
		sum += d
	}
	return sum, nil
}

// readRSS returns each process's current resident memory.
func (s *suite) readRSS(procs []*sidecarProc) ([]uint64, error) {
	out := make([]uint64, len(procs))
	for i, p := range procs {
		st, err := memStatus(p.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		out[i] = st.RSS
	}
	return out, nil
}

// sampleRSS records the processes' RSS every interval until stop.
func sampleRSS(procs []*sidecarProc, done *atomic.Int64, interval time.Duration) (stop func() []rssSample) {
	var mu sync.Mutex
	var out []rssSample
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			sample := rssSample{done: done.Load(), rss: make([]uint64, len(procs)), anon: make([]uint64, len(procs))}
			for i, p := range procs {
				if st, err := memStatus(p.cmd.Process.Pid); err == nil {
					sample.rss[i], sample.anon[i] = st.RSS, st.Anon
				}
			}
			mu.Lock()
			out = append(out, sample)
			mu.Unlock()
		}
	}()
	return func() []rssSample {
		close(quit)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(out)
	}
}

// halfway returns the first sample taken once half the payments were done
// (nil if none).
func halfway(samples []rssSample, total int64) []uint64 {
	for _, s := range samples {
		if 2*s.done >= total {
			return s.rss
		}
	}
	return nil
}

// peakAnon returns each process's largest sampled anonymous RSS (the
// kernel keeps a high-water mark for the whole resident set only).
func peakAnon(samples []rssSample, procs int) []uint64 {
	out := make([]uint64, procs)
	for _, s := range samples {
		for i, a := range s.anon {
			out[i] = max(out[i], a)
		}
	}
	return out
}

// memFigures are the resources section's memory readings per process.
type memFigures struct {
	start, half, end, peak []uint64
	// peakAnon is the largest sampled anonymous RSS; file the file-backed
	// RSS at the end.
	peakAnon, file []uint64
}

func maxOf(v []uint64) uint64 {
	var m uint64
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func joinMiB(v []uint64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f", mib(x))
	}
	return strings.Join(parts, "/")
}

func (s *suite) resourceRows(n, total int, wall, cpu time.Duration, mem memFigures, stats, halfStats []*ChildStats) {
	start, half, end, peak := mem.start, mem.half, mem.end, mem.peak
	c := fmt.Sprintf("n=%d processes, %d payments", n, total)
	row := func(metric string, v float64, unit, note string) Row {
		return Row{Section: SectionResources, Case: c, Metric: metric, Value: v, Unit: unit, Note: note}
	}
	peakRow := row("peak RSS per sidecar (max)", mib(maxOf(peak)), "MiB", "VmHWM of each: "+joinMiB(peak)+"; "+childCollector(os.Getenv))
	peakRow.Target = AtMost(TargetPeakRSSMiB)
	if total < TargetRSSPayments {
		peakRow.Status = StatusNA
		peakRow.Note += fmt.Sprintf("; the target is for %d payments", TargetRSSPayments)
	}
	var heap, sys uint64
	var gor int
	var sent int64
	live := largestLive(stats)
	for _, st := range stats {
		if st == nil {
			continue
		}
		heap, sys, gor = max(heap, st.HeapInuse), max(sys, st.GoSys), max(gor, st.Goroutines)
		sent += st.BytesSent
	}
	rows := []Row{
		row("certified payments/s", float64(total)/wall.Seconds(), "/s", fmt.Sprintf("%d senders, %s", s.cfg.Streams, wall.Round(time.Second))),
		row("sidecars' CPU per payment per validator", float64(cpu.Microseconds())/float64(total)/float64(n), "µs",
			fmt.Sprintf("user + system CPU of the sidecar processes over the run (/proc/<pid>/stat), %.2f cores", cpu.Seconds()/wall.Seconds())),
		row("RSS per sidecar after start (max)", mib(maxOf(start)), "MiB", "before any payment"),
	}
	if half != nil {
		rows = append(rows, row("RSS per sidecar at half the run (max)", mib(maxOf(half)), "MiB", joinMiB(half)))
	}
	rows = append(rows,
		row("RSS per sidecar at the end (max)", mib(maxOf(end)), "MiB", joinMiB(end)),
		peakRow,
		row("peak anonymous RSS per sidecar (max)", mib(maxOf(mem.peakAnon)), "MiB", "RssAnon sampled each second, of each: "+joinMiB(mem.peakAnon)+"; heap, stacks and the runtime's own memory"),
		row("file-backed RSS per sidecar at the end (max)", mib(maxOf(mem.file)), "MiB", "RssFile: mostly the code of the executable ("+s.childExecutable()+"), shared by every process running it"),
		row("Go heap in use per sidecar at the end (max)", mib(heap), "MiB", fmt.Sprintf("Go runtime total %.0f MiB", mib(sys))),
		row("live heap per sidecar at the end (max)", mib(live.Live), "MiB", "after a GC, from the heap profile"),
		row("of which held by gossipsub", mib(live.Gossip), "MiB",
			fmt.Sprintf("%.0f%%: id caches, score delivery records, message cache, queues", 100*ratio(float64(live.Gossip), float64(live.Live)))),
		row("of which per message id", mib(live.GossipIDs), "MiB", "seen/delivered caches and score records: kept for the TTL, then until pubsub's sweep once a minute"),
	)
	if halfStats != nil {
		half := largestLive(halfStats)
		rows = append(rows,
			row("live heap per sidecar at half the run (max)", mib(half.Live), "MiB", "after a GC, under load (heap profiles *-half.heap)"),
			row("of which held by gossipsub, at half the run", mib(half.Gossip), "MiB",
				fmt.Sprintf("%.0f%%; per message id %.1f MiB", 100*ratio(float64(half.Gossip), float64(half.Live)), mib(half.GossipIDs))))
	}
	rows = append(rows,
		row("goroutines per sidecar at the end (max)", float64(gor), "", ""),
		row("bytes sent per payment per validator", float64(sent)/float64(total)/float64(n), "B", "libp2p stream payload, all protocols"),
	)
	s.add(rows...)
}

// largestLive returns the heap shares of the sidecar with the largest live
// heap.
func largestLive(stats []*ChildStats) HeapShares {
	var live HeapShares
	for _, st := range stats {
		if st != nil && st.Heap.Live > live.Live {
			live = st.Heap
		}
	}
	return live
}

// childExecutable describes what the sidecar processes ran, for the notes:
// allegro-dev holds the development chain's code besides the sidecar's, so
// its processes have more code pages than an `allegro sidecar`.
func (s *suite) childExecutable() string {
	name := filepath.Base(s.cfg.ChildExecutable)
	switch {
	case s.cfg.ChildExecutable == "":
		return "not named"
	case strings.HasPrefix(name, "allegro-dev"):
		return name + ", which holds the development chain's code as well: allegro-bench-sidecar has an allegro sidecar's"
	}
	return name
}

// childCollector names the collector setting the sidecar processes ran
// with, which sets most of their resident memory: GOGC from the
// environment they inherit, else the sidecar's default gc_percent.
func childCollector(getenv func(string) string) string {
	if v := getenv("GOGC"); v != "" {
		return "GOGC=" + v + " from the environment"
	}
	return fmt.Sprintf("gc_percent %d (the default)", node.DefaultConfig().GCPercent)
}
