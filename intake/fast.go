package intake

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/prereg/prereg/httpapi"
)

// The intake is the only path a national surge touches, and at its rate
// net/http's own work per request (a goroutine, a context and a header map
// per request, textproto parsing, the chunk writer) costs about as much as
// everything intake does. So the process that runs intake listens with
// fasthttp: POST /v1/intents is served natively, every other route (status
// lookups, campaigns, the page, the admin API, /metrics) by the same
// net/http handlers as before, through fasthttp's adaptor. Both paths run
// the same checks (submit); the contract is the same on either server, and
// the tests hold both to it.

// Server limits of the fasthttp front.
const (
	// maxRequestBody bounds every request body the front reads: the
	// largest any route accepts (64 KiB) — each route applies its own
	// smaller limit (MaxBody for an intent).
	maxRequestBody = 64 << 10
	// readBuffer bounds a request's line and headers (431 beyond).
	readBuffer = 8 << 10
	// maxConns bounds the connections served at once, whatever their
	// state: each costs a goroutine and, while a request is being read,
	// its buffers (about 25 KiB in all), so a flood of connections stays
	// within an intake process's 200 MiB. Beyond it fasthttp answers 503
	// and closes.
	maxConns = 4096
	// maxConnsPerAddr bounds the connections of one client address
	// (AddrKey: an IPv6 /64), so that one client cannot take maxConns;
	// peers that are trusted proxies are not counted (Listener). Many
	// people share an address behind carrier NAT, but a browser holds a
	// few connections, and only while it is busy (idleTimeout).
	maxConnsPerAddr = 128
	// readTimeout bounds the wait for a request's first byte on a new
	// connection and then the read of the whole request, headers and
	// body: a slowloris client that trickles its headers is cut off at
	// it. An intent is at most 4 KiB.
	readTimeout = 10 * time.Second
	// idleTimeout bounds the wait for the next request on a kept-alive
	// connection: an idle connection still holds a goroutine.
	idleTimeout = 5 * time.Second
)

// FastServer is the HTTP server of a process that runs intake: POST
// /v1/intents is served natively on fasthttp, every other request by next.
// Serve it on a listener; ShutdownWithContext stops taking requests and
// waits for those under way (Stop the Service after it).
func (s *Service) FastServer(next http.Handler, log *slog.Logger) *fasthttp.Server {
	if log == nil {
		log = s.log
	}
	life := new(serverLife)
	fallback := fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(life.context(r.Context())))
	}))
	refusal := s.newFastRefusal()
	return &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			defer recoverPanic(ctx, log)
			if !ctx.IsPost() || !isSubmitPath(ctx.Request.Header.RequestURI()) {
				fallback(ctx)
				return
			}
			if reason, refused := s.refusesAtOnce(); refused {
				refusal.write(ctx, reason)
				return
			}
			w := getFastWriter(ctx)
			sub := fastSubmission(ctx, life.context(ctx), s.cfg.TrustedProxies)
			sub.refusalAsked = true
			s.submit(w, sub)
			s.countStatus("submit", w.status)
			putFastWriter(w)
		},
		ErrorHandler:          fastError,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		MaxRequestBodySize:    maxRequestBody,
		ReadBufferSize:        readBuffer,
		Concurrency:           maxConns,
		ReadTimeout:           readTimeout,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           idleTimeout,
		// An idle connection gives its read and write buffers back, so
		// that thousands of them cost goroutines only.
		ReduceMemoryUsage: true,
		CloseOnShutdown:   true,
		Logger:            fastLogger{log},
	}
}

// fastRefusal is the 503 of a submission refused before anything of it
// is read, written straight into fasthttp's response: under overload this
// is most answers, and on one core each refusal's cost is taken from the
// intents that could be accepted (docs/SCALING.md). Its headers and body
// are bytes made once and its counters looked up once; the connection is
// kept alive, since a client's next connection would cost more than its
// next request.
type fastRefusal struct {
	retryAfter []byte
	requests   prometheus.Counter            // submit's 503s
	shed       map[string]prometheus.Counter // by reason
}

var (
	retryAfterKey    = []byte("Retry-After")
	jsonContentTypeB = []byte(jsonContentType[0])
)

func (s *Service) newFastRefusal() *fastRefusal {
	return &fastRefusal{
		retryAfter: []byte(s.retryAfter[0]),
		requests:   s.counters["submit"][http.StatusServiceUnavailable],
		shed: map[string]prometheus.Counter{
			shedCPU:      s.m.shed.WithLabelValues(shedCPU),
			shedDraining: s.m.shed.WithLabelValues(shedDraining),
		},
	}
}

func (f *fastRefusal) write(ctx *fasthttp.RequestCtx, reason string) {
	f.shed[reason].Inc()
	f.requests.Inc()
	h := &ctx.Response.Header
	h.SetStatusCode(http.StatusServiceUnavailable)
	h.SetContentTypeBytes(jsonContentTypeB)
	h.SetCanonical(retryAfterKey, f.retryAfter)
	ctx.Response.SetBodyRaw(overloadedBody)
}

// Listener caps the connections each client address holds at once at
// maxConnsPerAddr (fasthttp's MaxConnsPerIP would count a load balancer as
// one client). A peer that is a trusted proxy is not capped; any other is
// counted by AddrKey, so an IPv6 client cannot spread its connections over
// its /64. A connection over the cap is closed at once, unanswered. Serve
// FastServer (or any server of the intake's routes) on it.
func (s *Service) Listener(ln net.Listener) net.Listener {
	return &capListener{Listener: ln, max: maxConnsPerAddr, trusted: s.cfg.TrustedProxies, v6Bits: s.cfg.IPv6Prefix, open: map[string]int{}}
}

type capListener struct {
	net.Listener
	max     int
	trusted []netip.Prefix
	v6Bits  int

	mu   sync.Mutex
	open map[string]int // connections open per address key
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var peer netip.Addr
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			peer = ta.AddrPort().Addr().Unmap()
		}
		if !peer.IsValid() || inPrefixes(peer, l.trusted) {
			return c, nil
		}
		key := AddrKey(peer, l.v6Bits)
		l.mu.Lock()
		n := l.open[key]
		if n >= l.max {
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.open[key] = n + 1
		l.mu.Unlock()
		return &cappedConn{Conn: c, release: func() { l.release(key) }}, nil
	}
}

func (l *capListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] <= 1 {
		delete(l.open, key)
		return
	}
	l.open[key]--
}

// cappedConn gives its address's place back once, however often it is
// closed.
type cappedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *cappedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// isSubmitPath reports whether a request URI's path is exactly
// /v1/intents, as net/http's mux would match it (a query is allowed).
func isSubmitPath(uri []byte) bool {
	path, _, _ := bytes.Cut(uri, []byte("?"))
	return string(path) == "/v1/intents" // compared without a copy
}

// fastSubmission is what submit needs of a fasthttp request. fasthttp has
// read the whole body already (at most maxRequestBody); longer than
// MaxBody is answered 413 as on net/http.
func fastSubmission(ctx *fasthttp.RequestCtx, rctx context.Context, trusted []netip.Prefix) submission {
	h := &ctx.Request.Header
	return submission{
		ctx:           rctx,
		contentType:   string(h.ContentType()),
		contentLength: int64(h.ContentLength()),
		idemKey:       string(h.Peek("Idempotency-Key")),
		addr: func() netip.Addr {
			var peer netip.Addr
			if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
				peer = ta.AddrPort().Addr()
			}
			var hops []string
			for _, v := range h.PeekAll("X-Forwarded-For") {
				hops = append(hops, string(v))
			}
			return clientAddr(peer, hops, trusted)
		},
		body: func() ([]byte, error) {
			b := ctx.PostBody()
			if len(b) > MaxBody {
				return nil, &http.MaxBytesError{Limit: MaxBody}
			}
			return b, nil
		},
	}
}

// serverLife gives the requests of a fasthttp server their context: one
// context.Context per serving of the server, cancelled when it shuts down
// (as fasthttp's RequestCtx is "done"), and holding no value.
//
// A handler must not use the RequestCtx itself as a context: fasthttp
// resets it for the connection's next request as soon as the handler
// returns, and a context derived from it can still read it after that —
// context.WithTimeout's watcher reads its parent's values once the server
// shuts down, a data race with the reset. A context that is a real
// cancelCtx also spares each derived context a watching goroutine.
type serverLife struct {
	mu  sync.Mutex
	cur atomic.Pointer[serving]
}

// serving is one serving of the server: its done channel and the context
// cancelled when that channel closes.
type serving struct {
	done <-chan struct{}
	ctx  context.Context
}

// context is the context of a request whose RequestCtx (or the net/http
// request's context over it) is rc; it reads rc only now, while the
// request is being served.
func (l *serverLife) context(rc context.Context) context.Context {
	done := rc.Done()
	if done == nil {
		return context.Background()
	}
	if cur := l.cur.Load(); cur != nil && cur.done == done {
		return cur.ctx
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := l.cur.Load(); cur != nil && cur.done == done {
		return cur.ctx
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-done
		cancel()
	}()
	l.cur.Store(&serving{done: done, ctx: ctx})
	return ctx
}

// fastWriter is an http.ResponseWriter over a fasthttp response, so that
// submit writes its answers the same way on either server.
type fastWriter struct {
	ctx    *fasthttp.RequestCtx
	h      http.Header
	status int
}

var fastWriters = sync.Pool{New: func() any { return &fastWriter{h: http.Header{}} }}

func getFastWriter(ctx *fasthttp.RequestCtx) *fastWriter {
	w := fastWriters.Get().(*fastWriter)
	w.ctx = ctx
	return w
}

func putFastWriter(w *fastWriter) {
	clear(w.h)
	w.ctx, w.status = nil, 0
	fastWriters.Put(w)
}

func (w *fastWriter) Header() http.Header { return w.h }

func (w *fastWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	rh := &w.ctx.Response.Header
	for k, vs := range w.h {
		if k == "Content-Length" {
			continue // fasthttp sets it from the body
		}
		for i, v := range vs {
			if i == 0 {
				rh.Set(k, v)
			} else {
				rh.Add(k, v)
			}
		}
	}
	w.ctx.SetStatusCode(code)
}

func (w *fastWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ctx.Write(b)
}

// fastError answers a request the front could not read: too large (413),
// headers too long (431), anything else malformed (400), as JSON errors
// like every other answer.
//
// A read that timed out gets no answer at all: the connection is closed,
// as net/http does. fasthttp calls this for a fresh connection on which
// nothing arrived within ReadTimeout too, and HTTP clients dial spare
// connections they may never use: a 400 there reached the client on a
// connection it held idle, which it reports as an unsolicited response
// (net/http: "Unsolicited response received on idle HTTP channel").
func fastError(ctx *fasthttp.RequestCtx, err error) {
	if isTimeout(err) {
		// fasthttp still writes the response it asked for; on a closed
		// connection that write fails and nothing leaves.
		if c := ctx.Conn(); c != nil {
			_ = c.Close()
		}
		return
	}
	w := getFastWriter(ctx)
	defer putFastWriter(w)
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		limit := maxRequestBody
		if isSubmitPath(ctx.Request.Header.RequestURI()) {
			limit = MaxBody
		}
		discardRest(ctx.Conn())
		httpapi.WriteError(w, httpapi.CodeTooLarge, map[string]any{"max_bytes": limit})
	case errors.As(err, &small):
		httpapi.WriteError(w, httpapi.CodeHeadersTooLarge, map[string]any{"max_bytes": readBuffer})
	default:
		httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": FieldErrors{"request": "not a valid HTTP request"}})
	}
	ctx.SetConnectionClose()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// Draining what a client still sends of a body too large, before the 413
// and the close: closing a socket with unread data makes the kernel reset
// the connection, and a client still writing then sees the reset instead
// of the answer. As net/http does, at most drainMax bytes are read, and
// for at most drainTime, stopping as soon as nothing arrives for
// drainIdle.
const (
	drainMax  = 256 << 10
	drainTime = time.Second
	drainIdle = 50 * time.Millisecond
)

func discardRest(c net.Conn) {
	if c == nil {
		return
	}
	end := time.Now().Add(drainTime)
	buf := make([]byte, 16<<10)
	for read := 0; read < drainMax; {
		deadline := time.Now().Add(drainIdle)
		if deadline.After(end) {
			deadline = end
		}
		_ = c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		read += n
		if err != nil {
			break
		}
	}
}

// recoverPanic turns a handler's panic into a 500, as net/http does,
// instead of taking the process down (fasthttp does not recover).
func recoverPanic(ctx *fasthttp.RequestCtx, log *slog.Logger) {
	v := recover()
	if v == nil {
		return
	}
	if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
		ctx.SetConnectionClose()
		return
	}
	// The value is not logged: it could hold what the request carried.
	log.Error("handler panicked", slog.String("path", safePath(ctx)))
	ctx.ResetBody()
	ctx.Response.Header.Reset()
	ctx.SetStatusCode(http.StatusInternalServerError)
	ctx.SetContentType("application/json; charset=utf-8")
	ctx.SetBodyString(`{"error":"` + httpapi.CodeInternal + `"}` + "\n")
	ctx.SetConnectionClose()
}

// safePath is a request's path for a log line: the path only, without
// the query, and cut short.
func safePath(ctx *fasthttp.RequestCtx) string {
	p, _, _ := strings.Cut(string(ctx.Request.Header.RequestURI()), "?")
	if len(p) > 64 {
		p = p[:64]
	}
	return p
}

// fastLogger sends fasthttp's own messages (connection errors) to slog at
// debug level: they name no person, but a surge makes many of them.
type fastLogger struct{ log *slog.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("http server", slog.String("format", format))
	}
}
