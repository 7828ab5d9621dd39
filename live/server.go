package live

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed assets
var assets embed.FS

// MaxStreams bounds the event streams served at once: one more is
// refused (503) rather than let watchers cost the session memory.
const MaxStreams = 64

// pushEvery bounds how often a stream sends the view (changes coalesce).
const pushEvery = 500 * time.Millisecond

// Handler serves the view: the page at /, its assets, GET /api/v1/view
// (JSON), GET /api/v1/events (server-sent events: the view after every
// change), GET /api/v1/machines/ID/log (text) and GET /metrics. Every
// route is read-only; anything but GET and HEAD is refused.
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServer(http.FS(static))
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", files))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, err := assets.ReadFile("assets/index.html")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b)
	})
	mux.HandleFunc("GET /api/v1/view", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h.View())
	})
	mux.HandleFunc("GET /api/v1/events", h.events)
	mux.HandleFunc("GET /api/v1/machines/{id}/log", func(w http.ResponseWriter, r *http.Request) {
		lines, ok := h.MachineLog(r.PathValue("id"))
		if !ok {
			http.Error(w, "no such machine", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{h})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return secure(mux)
}

// secure refuses what a read-only view has no use for and sets headers
// that keep the page to itself.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the live view is read-only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// events streams the view as server-sent events: one at once, then one
// after changes, at most every pushEvery, and a comment every 15 s so
// that proxies keep the stream open.
func (h *Hub) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	if h.Subscribers() >= MaxStreams {
		http.Error(w, "too many live views open", http.StatusServiceUnavailable)
		return
	}
	ch, stop := h.Subscribe()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	send := func() bool {
		b, err := json.Marshal(h.View())
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: view\ndata: %s\n\n", b); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	if !send() {
		return
	}
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case <-ch:
			if !send() {
				return
			}
			select {
			case <-time.After(pushEvery):
			case <-r.Context().Done():
				return
			}
		}
	}
}

// Server serves a hub's handler on addr until Close.
type Server struct {
	srv *http.Server
	l   net.Listener
}

// CheckAddr checks a live view address (HOST:PORT or :PORT) before
// anything starts.
func CheckAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err == nil && (n < 0 || n > 65535) {
			err = fmt.Errorf("port %d out of range", n)
		}
	}
	if err != nil {
		return fmt.Errorf("live view address %q: want HOST:PORT or :PORT (%v)", addr, err)
	}
	return nil
}

// Listen checks addr (see CheckAddr) and listens on it.
func Listen(addr string, h *Hub) (*Server, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("live view: %w", err)
	}
	s := &Server{l: l, srv: &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes: 16 << 10, IdleTimeout: time.Minute}}
	go s.srv.Serve(l)
	return s, nil
}

// URL is where the view is served.
func (s *Server) URL() string {
	a := s.l.Addr().(*net.TCPAddr)
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(a.Port)) + "/"
}

// Close stops serving; open event streams end.
func (s *Server) Close() error { return s.srv.Close() }

// reasonClass puts a failure reason in one of a few classes, the label
// of herd_failures_total (a reason itself is free text: unbounded).
func reasonClass(r string) string {
	r = strings.ToLower(r)
	for _, c := range []struct{ class, words string }{
		{"verify", "digest|not verified|verif"},
		{"dead", "dead at|silent for|cut off|upstream lost"},
		{"unreachable", "unreachable|connect"},
		{"slow", "too slow|slow"},
		{"disk", "disk|no space|write"},
		{"power", "power:"},
		{"agent", "agent|register|timeout"},
	} {
		for _, w := range strings.Split(c.words, "|") {
			if strings.Contains(r, w) {
				return c.class
			}
		}
	}
	return "other"
}
