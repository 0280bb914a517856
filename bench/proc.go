package bench

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// MemStatus is a process's resident memory from /proc/<pid>/status.
type MemStatus struct {
	// RSS is the current resident set (VmRSS); Peak its high-water mark
	// since the process started (VmHWM). In bytes.
	RSS, Peak uint64
	// Anon is the resident anonymous memory (RssAnon: heap, stacks, the
	// runtime's own); File the resident file-backed pages (RssFile: mostly
	// the executable's code, shared with every process running it). Zero
	// when the kernel does not report them.
	Anon, File uint64
}

// parseMemStatus reads VmRSS and VmHWM ("VmHWM:   123456 kB"), and
// RssAnon and RssFile when present, from the text of /proc/<pid>/status.
func parseMemStatus(r io.Reader) (MemStatus, error) {
	var st MemStatus
	var haveRSS, havePeak bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		var dst *uint64
		switch key {
		case "VmRSS":
			dst, haveRSS = &st.RSS, true
		case "VmHWM":
			dst, havePeak = &st.Peak, true
		case "RssAnon":
			dst = &st.Anon
		case "RssFile":
			dst = &st.File
		}
		if !ok || dst == nil {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return st, fmt.Errorf("%s: unexpected value %q", key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return st, fmt.Errorf("%s: %w", key, err)
		}
		*dst = kb * 1024
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if !haveRSS || !havePeak {
		return st, fmt.Errorf("VmRSS or VmHWM missing")
	}
	return st, nil
}

// parseLoadAvg reads the three load averages of /proc/loadavg.
func parseLoadAvg(s string) ([]float64, error) {
	fields := strings.Fields(s)
	if len(fields) < 3 {
		return nil, fmt.Errorf("loadavg: %q", s)
	}
	out := make([]float64, 3)
	for i := range out {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return nil, fmt.Errorf("loadavg: %w", err)
		}
		out[i] = v
	}
	return out, nil
}

// mib converts bytes to MiB.
func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// userHZ is the unit of the CPU times in /proc/<pid>/stat: clock ticks of
// USER_HZ, 100 per second in Linux's user ABI.
const userHZ = 100

// parseProcStatCPU reads a process's user and system CPU time (utime and
// stime, fields 14 and 15) from the text of /proc/<pid>/stat. The command
// name in field 2 may hold spaces and parentheses, so fields are counted
// from the last ')'.
func parseProcStatCPU(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name in %q", s)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
	if len(fields) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(fields))
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
