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
}

// parseMemStatus reads VmRSS and VmHWM ("VmHWM:   123456 kB") from the
// text of /proc/<pid>/status.
func parseMemStatus(r io.Reader) (MemStatus, error) {
	var st MemStatus
	var haveRSS, havePeak bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
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
		if key == "VmRSS" {
			st.RSS, haveRSS = kb*1024, true
		} else {
			st.Peak, havePeak = kb*1024, true
		}
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
