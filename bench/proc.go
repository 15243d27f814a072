package bench

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"
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

// clockTick is the unit of /proc/PID/stat's times (USER_HZ, 100 on
// Linux whatever the kernel's own rate).
const clockTick = 10 * time.Millisecond

// procCPU is a process's user and system time so far, all its threads,
// from /proc/PID/stat; false when it cannot be read.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return 0, false
	}
	// The command name in parentheses may hold spaces: count fields after
	// its closing parenthesis (utime and stime are fields 14 and 15).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * clockTick, true
}

// procCPUTime is procCPU's time, 0 when it cannot be read.
func procCPUTime(pid int) time.Duration {
	t, _ := procCPU(pid)
	return t
}
