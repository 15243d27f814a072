package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ClusterConfig configures a private cluster.
type ClusterConfig struct {
	// Dir holds the data directory; a new temporary folder when empty (and
	// then removed by Stop).
	Dir string
	// BinDir holds initdb and pg_ctl; found on PATH or under
	// /usr/lib/postgresql/*/bin when empty.
	BinDir string
	// Port to listen on; a free one when 0.
	Port int
	// Settings are extra postgresql.conf lines, e.g. "fsync = off".
	Settings []string
	Logger   *slog.Logger
}

// Cluster is a PostgreSQL cluster that prereg started from the installed
// binaries, in a data directory of its own, listening on loopback.
type Cluster struct {
	cfg      ClusterConfig
	dataDir  string
	ownDir   bool
	port     int
	cred     *syscall.Credential
	stopOnce sync.Once
	stopErr  error
}

// URL is the cluster's maintenance database.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Port is the port the cluster listens on.
func (c *Cluster) Port() int { return c.port }

// FindBinDir finds the folder that holds initdb and pg_ctl.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Highest major version first.
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if fileExists(filepath.Join(d, "initdb")) && fileExists(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found on PATH or under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// StartCluster initialises and starts a private cluster. PostgreSQL refuses
// to run as root, so as root the cluster runs as the "postgres" user (or
// "nobody") with a data directory that user owns.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	log := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	bin := cfg.BinDir
	if bin == "" {
		var err error
		if bin, err = FindBinDir(); err != nil {
			return nil, err
		}
	}
	c := &Cluster{cfg: cfg}
	c.cfg.BinDir = bin
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "prereg-pg-")
		if err != nil {
			return nil, fmt.Errorf("private cluster: temp dir: %w", err)
		}
		c.cfg.Dir, c.ownDir = d, true
	}
	c.dataDir = filepath.Join(c.cfg.Dir, "data")
	if os.Geteuid() == 0 {
		cred, err := unprivileged()
		if err != nil {
			return nil, err
		}
		c.cred = cred
		if err := os.Chmod(c.cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("private cluster: %w", err)
		}
		if err := os.Chown(c.cfg.Dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("private cluster: chown: %w", err)
		}
	}
	c.port = cfg.Port
	if c.port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("private cluster: free port: %w", err)
		}
		c.port = p
	}
	if !fileExists(filepath.Join(c.dataDir, "PG_VERSION")) {
		if err := c.run(ctx, "initdb", "-D", c.dataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
			c.cleanup()
			return nil, fmt.Errorf("private cluster: initdb: %w", err)
		}
		conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nmax_connections = 200\nshared_buffers = 128MB\n", c.port, c.cfg.Dir)
		for _, s := range cfg.Settings {
			conf += s + "\n"
		}
		if err := appendFile(filepath.Join(c.dataDir, "postgresql.conf"), conf); err != nil {
			c.cleanup()
			return nil, fmt.Errorf("private cluster: configure: %w", err)
		}
	}
	logFile := filepath.Join(c.cfg.Dir, "postgres.log")
	if err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-l", logFile, "-o", fmt.Sprintf("-p %d", c.port), "-w", "-t", "60", "start"); err != nil {
		tail, _ := os.ReadFile(logFile)
		c.cleanup()
		return nil, fmt.Errorf("private cluster: pg_ctl start: %w\n%s", err, lastLines(tail, 10))
	}
	log.Info("private PostgreSQL cluster started", slog.String("dir", c.cfg.Dir), slog.Int("port", c.port))
	return c, nil
}

// Stop stops the cluster (fast shutdown) and removes a temporary folder.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		err := c.run(context.Background(), "pg_ctl", "-D", c.dataDir, "-m", "fast", "-w", "-t", "60", "stop")
		if err != nil {
			c.stopErr = fmt.Errorf("private cluster: pg_ctl stop: %w", err)
		}
		c.cleanup()
	})
	return c.stopErr
}

// Kill stops the cluster the way a crash would (immediate shutdown), for
// tests of recovery; Start brings it back on the same data.
func (c *Cluster) Kill() error {
	return c.run(context.Background(), "pg_ctl", "-D", c.dataDir, "-m", "immediate", "-w", "stop")
}

// Start starts a cluster stopped by Kill.
func (c *Cluster) Start(ctx context.Context) error {
	logFile := filepath.Join(c.cfg.Dir, "postgres.log")
	return c.run(ctx, "pg_ctl", "-D", c.dataDir, "-l", logFile, "-o", fmt.Sprintf("-p %d", c.port), "-w", "-t", "60", "start")
}

func (c *Cluster) cleanup() {
	if c.ownDir {
		os.RemoveAll(c.cfg.Dir)
	}
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.cfg.BinDir, name), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = c.cfg.Dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		cmd.Env = append(os.Environ(), "HOME="+c.cfg.Dir)
	}
	// pg_ctl start leaves the server running with our pipes open; a
	// WaitDelay keeps Wait from blocking on them.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return fmt.Errorf("%s: %w: %s", name, err, lastLines(out.Bytes(), 5))
	}
	return nil
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("private cluster: running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
