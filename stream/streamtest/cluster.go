package streamtest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a test's JetStream cluster of embedded servers, each with its
// file store in the test's temporary folder. A node can be shut down and
// started again on the same ports and store, as a crashed node restarts.
type Cluster struct {
	tb    testing.TB
	opts  []*server.Options
	Nodes []*server.Server // nil while a node is down
}

// NewCluster starts n JetStream servers routed to each other on loopback
// and waits until they have elected a meta leader. They are shut down when
// the test ends.
func NewCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	client, routes := freePorts(tb, n), freePorts(tb, n)
	var urls []string
	for _, p := range routes {
		urls = append(urls, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &Cluster{tb: tb, Nodes: make([]*server.Server, n)}
	for i := range n {
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprintf("node-%d", i+1),
			Host:       "127.0.0.1",
			Port:       client[i],
			JetStream:  true,
			StoreDir:   tb.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster:    server.ClusterOpts{Name: "streamtest", Host: "127.0.0.1", Port: routes[i]},
			Routes:     server.RoutesFromStr(strings.Join(urls, ",")),
		})
	}
	tb.Cleanup(func() {
		for i := range c.Nodes {
			c.Shutdown(i)
		}
	})
	for i := range n {
		c.Start(i)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader := false
		for _, s := range c.Nodes {
			leader = leader || s.JetStreamIsLeader()
		}
		if leader {
			return c
		}
		if time.Now().After(deadline) {
			tb.Fatalf("streamtest: no JetStream meta leader after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Start starts node i (again).
func (c *Cluster) Start(i int) {
	c.tb.Helper()
	s, err := server.NewServer(c.opts[i])
	if err != nil {
		c.tb.Fatalf("streamtest: node %d: %v", i+1, err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		c.tb.Fatalf("streamtest: node %d not ready after 15s", i+1)
	}
	c.Nodes[i] = s
}

// Shutdown stops node i and waits for it; a node already down is left.
func (c *Cluster) Shutdown(i int) {
	if s := c.Nodes[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.Nodes[i] = nil
	}
}

// Index is the index of the node named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// URL is node i's client URL.
func (c *Cluster) URL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
}

// URLs is every node's client URL, comma-separated.
func (c *Cluster) URLs() string {
	var urls []string
	for i := range c.opts {
		urls = append(urls, c.URL(i))
	}
	return strings.Join(urls, ",")
}

// freePorts reserves n free loopback ports and releases them for the
// servers to take.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("streamtest: free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
