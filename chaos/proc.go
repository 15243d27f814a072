package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one OS process of the suite: a prereg role, a simulated
// service or a nats-server. It can be killed (SIGKILL, as a crash) and
// started again with the same command line; its output goes to one log
// file across restarts.
type Proc struct {
	Name string
	// Health, when set, is the URL that answers 200 once the process is
	// ready to work.
	Health string

	bin  string
	args []string
	env  []string
	log  string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	starts   int
	exitCode int
}

// NewProc describes a process; Start runs it.
func NewProc(name, bin string, args, env []string, logDir string) *Proc {
	return &Proc{Name: name, bin: bin, args: args, env: env, log: filepath.Join(logDir, name+".log")}
}

// LogPath is the file the process writes its output to.
func (p *Proc) LogPath() string { return p.log }

// Start runs the process and, when it has a Health URL, waits until it
// answers 200 there (or the process exits, or ctx ends).
func (p *Proc) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: already running", p.Name)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: log: %w", p.Name, err)
	}
	p.starts++
	fmt.Fprintf(f, "=== chaos: start %d of %s at %s\n", p.starts, p.Name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	// A group of its own: a Ctrl-C of the suite does not reach it, the
	// suite ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.mu.Unlock()
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.exitCode = cmd.ProcessState.ExitCode()
		if err != nil && p.exitCode == 0 {
			p.exitCode = -1
		}
		p.mu.Unlock()
		close(done)
	}()
	if p.Health == "" {
		return nil
	}
	return p.waitHealthy(ctx, done)
}

func (p *Proc) waitHealthy(ctx context.Context, done chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(p.Health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before it was ready (exit %d):\n%s", p.Name, p.ExitCode(), p.Tail(15))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w\n%s", p.Name, p.Health, ctx.Err(), p.Tail(15))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL and waits for the process to be gone: a crash, with
// no chance to finish anything in flight.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL, 0) }

// Stop asks the process to stop (SIGTERM) and kills it after grace.
func (p *Proc) Stop(grace time.Duration) { p.signal(syscall.SIGTERM, grace) }

func (p *Proc) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	<-done
	p.mu.Lock()
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
}

// ExitCode is the exit code of the last run (-1 for a signal).
func (p *Proc) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitCode
}

// Tail is the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Grep returns the log lines that match re (at most max).
func (p *Proc) Grep(re *regexp.Regexp, max int) []string {
	f, err := os.Open(p.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && len(out) < max {
		if re.Match(sc.Bytes()) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// Count is the number of log lines that match re.
func (p *Proc) Count(re *regexp.Regexp) int { return len(p.Grep(re, 1<<30)) }

// freePort finds a free port on loopback below the kernel's ephemeral
// range (net.ipv4.ip_local_port_range), where neither another test's
// listener on port 0 nor an outgoing connection's local port can take it
// between this check and the process's bind, as happens on a busy test
// machine when the kernel hands out a port twice. It never hands out one
// port twice itself. Without that range it asks the kernel.
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	if lo := ephemeralLow(); lo > 11000 {
		for range 200 {
			port := 10000 + mrand.IntN(lo-10000)
			if portsGiven[port] {
				continue
			}
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				ln.Close()
				portsGiven[port] = true
				return port, nil
			}
		}
	}
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			return port, nil
		}
	}
	return 0, errors.New("free port: none left")
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{} // every port freePort returned
)

// ephemeralLow is the first port of the kernel's ephemeral range, 0 when
// it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	lo, _ := strconv.Atoi(f[0])
	return lo
}

// Binaries are the programs the suite runs as processes.
type Binaries struct {
	Prereg     string
	NATSServer string
}

// minNATS is the oldest nats-server prereg runs on.
var minNATS = [3]int{2, 10, 0}

// Build builds the prereg binary from the module at root into dir, and
// takes a nats-server >= 2.10 from PATH or, when there is none (Debian's
// 2.9 does not count), builds the one go.mod names.
func Build(ctx context.Context, root, dir string) (Binaries, error) {
	b := Binaries{Prereg: filepath.Join(dir, "prereg")}
	if err := goBuild(ctx, root, b.Prereg, "./cmd/prereg"); err != nil {
		return b, err
	}
	if p, err := exec.LookPath("nats-server"); err == nil && natsVersionOK(ctx, p) {
		b.NATSServer = p
		return b, nil
	}
	b.NATSServer = filepath.Join(dir, "nats-server")
	return b, goBuild(ctx, root, b.NATSServer, "github.com/nats-io/nats-server/v2")
}

// BinaryDir is the folder the suite builds its binaries into: one per
// checkout in the user's cache. A later run's `go build` finds a binary
// there up to date (it compares the build ID written in the file with the
// one it would build) and links nothing, which saves most of a warm
// build's time.
func BinaryDir(root string) (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(base, "prereg", "chaos-bin", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("chaos: binaries: %w", err)
	}
	return dir, nil
}

// BuildLocked is Build under an exclusive lock on dir, so that two suites
// of one checkout never write the same binary at once.
func BuildLocked(ctx context.Context, root, dir string) (Binaries, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Binaries{}, fmt.Errorf("chaos: binaries: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return Binaries{}, fmt.Errorf("chaos: binaries: lock: %w", err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return Build(ctx, root, dir)
}

func goBuild(ctx context.Context, root, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, buf.String())
	}
	return nil
}

var versionRE = regexp.MustCompile(`v?(\d+)\.(\d+)\.(\d+)`)

// natsVersionOK runs `nats-server --version` and compares it with minNATS.
func natsVersionOK(ctx context.Context, path string) bool {
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return false
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		return false
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	for i := range v {
		if v[i] != minNATS[i] {
			return v[i] > minNATS[i]
		}
	}
	return true
}

// ModuleRoot is the folder of prereg's go.mod, found from the working
// directory upwards.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod above the working directory")
		}
		dir = parent
	}
}
