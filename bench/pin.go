package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CPU affinity for the overload run: on a machine of two cores the load
// generator and the server otherwise share both, and a server at its
// limit then starves the generator that is meant to measure it (the
// refusal floor itself went to seconds). Linux keeps an affinity per
// thread, and a thread starts with its creator's, so a process is pinned
// by pinning every thread it has: those it starts afterwards follow.

// pinProcess binds every thread of this process to cpus and returns a
// function that gives each thread the affinity the process had before.
func pinProcess(cpus []int) (restore func(), err error) {
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		return nil, fmt.Errorf("cpu affinity: %w", err)
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := setEveryThread(&set); err != nil {
		_ = setEveryThread(&before)
		return nil, err
	}
	return func() { _ = setEveryThread(&before) }, nil
}

// setEveryThread sets the affinity of every thread of this process, over
// again until no thread appeared meanwhile (one started by a thread not
// yet set would have the old affinity).
func setEveryThread(set *unix.CPUSet) error {
	done := map[int]bool{}
	for {
		tids, err := threads()
		if err != nil {
			return err
		}
		fresh := 0
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			fresh++
			// A thread that exited meanwhile (ESRCH) needs nothing.
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("cpu affinity of thread %d: %w", tid, err)
			}
			done[tid] = true
		}
		if fresh == 0 {
			return nil
		}
	}
}

func threads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// allowedCPUs are the CPUs this process may run on.
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// cpuList writes CPUs as the --cpus flag takes them: "0" or "1,2,3".
func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// parseCPUList reads a --cpus flag's value.
func parseCPUList(v string) ([]int, error) {
	var cpus []int
	for _, f := range strings.Split(v, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 0 {
			return nil, fmt.Errorf("--cpus %q: want CPU numbers separated by commas", v)
		}
		cpus = append(cpus, c)
	}
	return cpus, nil
}
