// Package httpboot is herd's HTTP server for booting machines: kernels,
// initramfs and stage-2 images from the boot folder (confined with
// os.Root: "../" and escaping symbolic links are refused), iPXE scripts
// (one chain script for every client, one script per MAC), and the API
// the herd agent calls:
//
//	POST /api/v1/register  {"mac":"52:54:00:..","ip":"10.0.0.5","port":9998,"session":"lab","step":""} → {"ok":true}
//	POST /api/v1/report    {"mac":"..","ok":true,"error":"","bytes":N,"step":""}                     → {"ok":true}
//	GET  /api/v1/machines  → [{"mac":..,"state":..,"ip":..,"reason":..,"updated":..}, ...]
//	GET  /api/v1/machines/{mac}  → {"mac":..,"state":..,...} or 404 (an agent checking that its server is still there)
//	POST /api/v1/machines/{mac}  {"state":"local","reason":""} → {"ok":true} (operator override)
//
// Step "stage2" is an agent waiting for, or reporting, a stage 2 (see
// state.StepStage2).
//
// With Key set, every POST to the API must be signed with the session
// key (see Sign and the authentication notes in auth.go); unsigned or
// wrongly signed requests get 401 and change nothing.
//
// Usage:
//
//	st, _ := state.Open("machines.json")
//	srv := &httpboot.Server{Dir: "/srv/herd/boot", Store: st, Script: myScript}
//	go srv.ListenAndServe(":8080")
package httpboot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/pxe/bootcfg"
	"github.com/herd-cluster/herd/pxe/state"
)

// API paths.
const (
	PathRegister = "/api/v1/register"
	PathReport   = "/api/v1/report"
	PathMachines = "/api/v1/machines"
	PathChain    = "/boot.ipxe"
	PathIPXE     = "/ipxe/"
)

// RegisterRequest is the body of POST /api/v1/register.
type RegisterRequest struct {
	MAC     string `json:"mac"`
	IP      string `json:"ip"`
	Port    int    `json:"port"`
	Session string `json:"session"`
	// Step is state.StepStage2 for an agent that waits for a stage 2,
	// empty for one that waits for the image.
	Step string `json:"step,omitempty"`
}

// ReportRequest is the body of POST /api/v1/report.
type ReportRequest struct {
	MAC   string `json:"mac"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	Bytes int64  `json:"bytes"`
	// Step is state.StepStage2 for the outcome of the stage-2 transfer,
	// empty for the image's.
	Step string `json:"step,omitempty"`
}

// SetRequest is the body of POST /api/v1/machines/{mac}: an operator
// forcing a machine's state (for example back to new to clone it again).
type SetRequest struct {
	State  state.Phase `json:"state"`
	Reason string      `json:"reason"`
}

// Reply is the body of every API answer; Error is set when OK is false.
type Reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Server serves boot files, iPXE scripts and the agent API. Set its
// fields before serving; they must not change afterwards.
type Server struct {
	// Dir is the boot folder; nothing outside it can be read.
	Dir string
	// Store records registrations and reports (required).
	Store *state.Store
	// BaseURL is "http://IP:PORT" as clients reach this server; when
	// empty it is taken from the request's Host header.
	BaseURL string
	// Script returns the iPXE script for a machine (normalized MAC,
	// base URL). When nil, /ipxe/ answers 404.
	Script func(mac, base string) string
	// Allow says which MACs may register; nil allows all.
	Allow func(mac string) bool
	// Session, when set, is the only session name register accepts.
	Session string
	// Key is the session key (the bytes of the key file). When set,
	// every POST to the API must be signed with it (see Sign); others
	// are refused with 401 and change nothing. When nil the API is open.
	Key []byte
	// Clock replaces time.Now for checking request timestamps (tests).
	Clock func() time.Time
	// Logf receives one line per API call and refused request (optional).
	Logf func(format string, args ...any)

	once    sync.Once
	auth    *verifier
	root    *os.Root
	rootErr error
	srv     *http.Server
	mu      sync.Mutex
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Handler returns the HTTP handler. It opens the boot folder on first use.
func (s *Server) Handler() http.Handler {
	s.once.Do(func() {
		s.root, s.rootErr = os.OpenRoot(s.Dir)
		if s.Key != nil {
			now := s.Clock
			if now == nil {
				now = time.Now
			}
			s.auth = &verifier{key: APIKey(s.Key), now: now, nonces: map[string]time.Time{}}
		}
	})
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathRegister, s.register)
	mux.HandleFunc("POST "+PathReport, s.report)
	mux.HandleFunc("GET "+PathMachines, s.machines)
	mux.HandleFunc("GET "+PathMachines+"/{mac}", s.machine)
	mux.HandleFunc("POST "+PathMachines+"/{mac}", s.set)
	mux.HandleFunc("GET "+PathChain, s.chain)
	mux.HandleFunc("GET "+PathIPXE+"{mac}", s.ipxe)
	mux.HandleFunc("GET /", s.file)
	return mux
}

// Serve answers HTTP requests on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	h := s.Handler()
	if s.rootErr != nil {
		return fmt.Errorf("httpboot: open boot folder %s: %w", s.Dir, s.rootErr)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("httpboot: listen %s: %w", addr, err)
	}
	return s.Serve(l)
}

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.logf("http: %s", msg)
	writeJSON(w, code, Reply{OK: false, Error: msg})
}

// body reads a POST's body and, when the server has a key, checks its
// signature. On failure it answers (400 or 401) and returns false.
func (s *Server) body(w http.ResponseWriter, r *http.Request, op string) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil || len(b) > 64<<10 {
		s.fail(w, http.StatusBadRequest, "%s: body unreadable or larger than 64 KiB", op)
		return nil, false
	}
	if s.auth != nil {
		if err := s.auth.verify(r, b); err != nil {
			w.Header().Set("WWW-Authenticate", AuthScheme)
			// The server's clock, so that a client whose clock is off
			// can follow it (see MaxSkew).
			w.Header().Set("Date", s.auth.now().UTC().Format(http.TimeFormat))
			s.fail(w, http.StatusUnauthorized, "%s from %s refused: %v", op, remoteIP(r), err)
			return nil, false
		}
	}
	return b, true
}

func decode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var req RegisterRequest
	b, ok := s.body(w, r, "register")
	if !ok {
		return
	}
	if err := decode(b, &req); err != nil {
		s.fail(w, http.StatusBadRequest, "register: bad body: %v", err)
		return
	}
	mac, err := state.NormalizeMAC(req.MAC)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "register: %v", err)
		return
	}
	if s.Allow != nil && !s.Allow(mac) {
		s.fail(w, http.StatusForbidden, "register: %s is not a known machine", mac)
		return
	}
	if s.Session != "" && req.Session != s.Session {
		s.fail(w, http.StatusConflict, "register: %s asks for session %q, this server runs %q", mac, req.Session, s.Session)
		return
	}
	if req.IP == "" {
		req.IP = remoteIP(r)
	}
	if req.Port < 0 || req.Port > 65535 {
		s.fail(w, http.StatusBadRequest, "register: %s: port %d", mac, req.Port)
		return
	}
	m, err := s.Store.RegisterStep(mac, req.IP, req.Port, req.Session, req.Step)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "register: %v", err)
		return
	}
	s.logf("http: %s registered from %s:%d session %q%s", m.MAC, m.IP, m.Port, m.Session, stepText(m.Step))
	writeJSON(w, http.StatusOK, Reply{OK: true})
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	var req ReportRequest
	b, ok := s.body(w, r, "report")
	if !ok {
		return
	}
	if err := decode(b, &req); err != nil {
		s.fail(w, http.StatusBadRequest, "report: bad body: %v", err)
		return
	}
	mac, err := state.NormalizeMAC(req.MAC)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "report: %v", err)
		return
	}
	var m state.Machine
	switch req.Step {
	case "":
		m, err = s.Store.Report(mac, req.OK, req.Error, req.Bytes)
	case state.StepStage2:
		m, err = s.Store.ReportStage2(mac, req.OK, req.Error, req.Bytes)
	default:
		s.fail(w, http.StatusBadRequest, "report: %s: unknown step %q", mac, req.Step)
		return
	}
	switch {
	case errors.Is(err, state.ErrUnknown):
		s.fail(w, http.StatusNotFound, "report: %v", err)
		return
	case errors.Is(err, state.ErrTransition):
		s.fail(w, http.StatusConflict, "report: %v", err)
		return
	case err != nil:
		s.fail(w, http.StatusInternalServerError, "report: %v", err)
		return
	}
	s.logf("http: %s reported %s%s %s (%d bytes)", m.MAC, m.State, stepText(m.Step), m.Reason, m.Bytes)
	writeJSON(w, http.StatusOK, Reply{OK: true})
}

func stepText(step string) string {
	if step == "" {
		return ""
	}
	return " (" + step + ")"
}

func (s *Server) machines(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Store.List())
}

func (s *Server) machine(w http.ResponseWriter, r *http.Request) {
	mac, err := state.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		s.fail(w, http.StatusBadRequest, "machine: %v", err)
		return
	}
	m, ok := s.Store.Get(mac)
	if !ok {
		writeJSON(w, http.StatusNotFound, Reply{OK: false, Error: fmt.Sprintf("machine: %s is not known", mac)})
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) set(w http.ResponseWriter, r *http.Request) {
	var req SetRequest
	b, ok := s.body(w, r, "set")
	if !ok {
		return
	}
	if err := decode(b, &req); err != nil {
		s.fail(w, http.StatusBadRequest, "set: bad body: %v", err)
		return
	}
	mac, err := state.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		s.fail(w, http.StatusBadRequest, "set: %v", err)
		return
	}
	m, err := s.Store.Set(mac, req.State, req.Reason)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "set: %v", err)
		return
	}
	s.logf("http: %s set to %s by %s", m.MAC, m.State, remoteIP(r))
	writeJSON(w, http.StatusOK, Reply{OK: true})
}

func (s *Server) base(r *http.Request) string {
	if s.BaseURL != "" {
		return strings.TrimRight(s.BaseURL, "/")
	}
	return "http://" + r.Host
}

func (s *Server) chain(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, bootcfg.IPXEChain(s.base(r)))
}

func (s *Server) ipxe(w http.ResponseWriter, r *http.Request) {
	mac, err := state.NormalizeMAC(r.PathValue("mac"))
	if err != nil || s.Script == nil {
		http.NotFound(w, r)
		return
	}
	if s.Allow != nil && !s.Allow(mac) {
		// Unknown machines are sent back to their firmware.
		s.logf("http: %s not known, iPXE told to boot locally", mac)
		io.WriteString(w, bootcfg.IPXELocal())
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, s.Script(mac, s.base(r)))
	s.logf("http: %s got the iPXE script of %s", remoteIP(r), mac)
}

func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	if s.root == nil || name == "" || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	f, err := s.root.Open(name)
	if err != nil {
		s.logf("http: %s refused %q: %v", remoteIP(r), r.URL.Path, err)
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	s.logf("http: %s got %s (%d bytes)", remoteIP(r), name, fi.Size())
}
