package bench

import (
	"os"
	"strconv"
	"strings"
)

// procPath is /proc/PID/name; pid 0 is this process.
func procPath(pid int, name string) string {
	if pid == 0 {
		return "/proc/self/" + name
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// resetPeakRSS starts a process's peak resident set size (VmHWM) over
// from its current size (pid 0: this process), so that each run reports
// its own peak; where the kernel does not allow it, the peak is the
// process's whole life's.
func resetPeakRSS(pid int) {
	_ = os.WriteFile(procPath(pid, "clear_refs"), []byte("5"), 0)
}

// peakRSS is a process's peak resident set size (VmHWM) in bytes, since
// the last resetPeakRSS (pid 0: this process); 0 when it cannot be read.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
