package bench

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
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
