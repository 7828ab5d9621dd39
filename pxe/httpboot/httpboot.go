// Package httpboot is herd's HTTP server for booting machines: kernels,
// initramfs and stage-2 images from the boot folder (confined with
// os.Root: "../" and escaping symbolic links are refused), iPXE scripts
// (one chain script for every client, one script per MAC), and the API
// the herd agent and the operator call:
//
//	POST /api/v1/register  {"mac":"52:54:00:..","ip":"10.0.0.5","port":9998,"session":"lab","step":"","pub":"BASE64"} → {"ok":true,"answer":"BASE64"}
//	POST /api/v1/report    {"mac":"..","ok":true,"error":"","bytes":N,"step":"","log":[..],"agent_log":[..],"fixups":".."} → {"ok":true}
//	GET  /api/v1/machines  → [{"mac":..,"state":..,"ip":..,"reason":..,"updated":..}, ...]
//	GET  /api/v1/machines/{mac}  → {"mac":..,"state":..,...} or 404 (an agent checking that its server is still there)
//	POST /api/v1/machines/{mac}  {"state":"local","reason":""} → {"ok":true} (operator override)
//
// Step "stage2" is an agent waiting for, or reporting, a stage 2 (see
// state.StepStage2).
//
// Every API call is signed (see auth.go): a registration with the
// machine's agent key, which serves one registration (a second one is
// refused, logged as an alarm and recorded on the machine); reports and
// an agent's reads of its own machine with the machine key from the
// answer to its registration; the list and changes with the operator
// key. The answer to a registration is the only place the chain key
// travels, sealed to the agent (see answer.go). Boot files carry no key
// but the agent key of the machine that asks (see the Script field).
//
// Usage:
//
//	st, _ := state.Open("machines.json")
//	srv := &httpboot.Server{Dir: "/srv/herd/boot", Store: st, Key: sessionKey, Script: myScript}
//	go srv.ListenAndServe(":8080")
//
// Public: the HTTP server and its signed API (an OperatorClient for the
// operator's side).
package httpboot

import (
	"bytes"
	"context"
	"crypto/rand"
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
	// Pub is the public half of the agent's answer key (see
	// NewAnswerKey): the answer is sealed to it.
	Pub string `json:"pub"`
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
	// Log is, with a failure, the tail of the machine's kernel log
	// (state.MaxLogLines lines at most are kept, each cut to
	// state.MaxLogLine bytes).
	Log []string `json:"log,omitempty"`
	// AgentLog is the tail of what the agent printed (success or
	// failure; state.MaxAgentLogLines lines of state.MaxLogLine bytes
	// are kept). The agent keeps the whole body under MaxBody.
	AgentLog []string `json:"agent_log,omitempty"`
	// Fixups says what the agent did to the cloned system after its
	// copy verified (identity, hooks), in one line; empty when it was
	// ordered to do nothing (state.MaxFixups bytes are kept).
	Fixups string `json:"fixups,omitempty"`
}

// MaxBody bounds the body of every API request.
const MaxBody = 64 << 10

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
	// Answer is the sealed answer to a registration (see SealAnswer).
	Answer string `json:"answer,omitempty"`
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
	// base URL). It must carry no key but that machine's agent key.
	// When nil, /ipxe/ answers 404.
	Script func(mac, base string) string
	// Allow says which MACs may register; nil allows every machine of
	// the store that is not discovered.
	Allow func(mac string) bool
	// Session, when set, is the only session name register accepts.
	Session string
	// Key is the session key (the bytes of the key file, the chain's
	// key, at least 16 bytes); every key of the API is derived from it
	// (see keys.go). When nil every API call is refused.
	Key []byte
	// Clock replaces time.Now for checking request timestamps (tests).
	Clock func() time.Time
	// Logf receives one line per API call and refused request (optional).
	Logf func(format string, args ...any)
	// Alarmf receives alarms (a used agent key presented again), also
	// when Logf is nil; default Logf.
	Alarmf func(format string, args ...any)
	// Count, if set, is called once per request answered: service
	// "http", outcome "ok" or "error" (a status of 400 or more).
	Count func(service, outcome string)
	// Fixups are sealed into the answer to every registration for the
	// system (not for a stage 2), with the machine's name
	// (state.Machine.Name) when Fixups.Identity is set. They must pass
	// Fixups.Check; a machine whose name is not a host name gets none
	// and cannot register (the server logs why).
	Fixups Fixups

	once    sync.Once
	auth    *verifier
	opKey   []byte // operator key
	dummy   []byte // stands in for the key of a machine that has none
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
		now := s.Clock
		if now == nil {
			now = time.Now
		}
		s.auth = &verifier{now: now, nonces: map[string]time.Time{}}
		s.dummy = make([]byte, KeySize)
		rand.Read(s.dummy)
		if s.Key != nil {
			s.opKey = OperatorKey(s.Key)
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
	if s.Count == nil {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(sw, r)
		outcome := "ok"
		if sw.code >= 400 {
			outcome = "error"
		}
		s.Count("http", outcome)
	})
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
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

func (s *Server) alarmf(format string, args ...any) {
	switch {
	case s.Alarmf != nil:
		s.Alarmf(format, args...)
	case s.Logf != nil:
		s.Logf(format, args...)
	}
}

// deny answers 401. The log line may name the machine (what); the body
// says only why the signature was refused (err comes from
// ParseAuthHeader, verify or a fixed text), which never depends on
// whether a machine is known.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.logf("http: %s from %s refused: %v", what, remoteIP(r), err)
	w.Header().Set("WWW-Authenticate", AuthScheme)
	// The server's clock, so that a client whose clock is off can
	// follow it (see MaxSkew).
	w.Header().Set("Date", s.auth.now().UTC().Format(http.TimeFormat))
	writeJSON(w, http.StatusUnauthorized, Reply{OK: false, Error: err.Error()})
}

// readBody reads a POST's body; on failure it answers 400 and returns
// false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, op string) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil || len(b) > MaxBody {
		s.fail(w, http.StatusBadRequest, "%s: body unreadable or larger than 64 KiB", op)
		return nil, false
	}
	return b, true
}

// header parses r's Authorization and checks that its role is one of
// roles; on failure it answers 401 and returns false.
func (s *Server) header(w http.ResponseWriter, r *http.Request, op string, roles ...Role) (AuthHeader, bool) {
	if s.Key == nil {
		s.deny(w, r, op, fmt.Errorf("%w: this server has no session key, its API is closed", ErrAuth))
		return AuthHeader{}, false
	}
	h, err := ParseAuthHeader(r.Header.Get("Authorization"))
	if err != nil {
		s.deny(w, r, op, err)
		return AuthHeader{}, false
	}
	for _, role := range roles {
		if h.Role == role {
			return h, true
		}
	}
	s.deny(w, r, op, fmt.Errorf("%w: %s needs the signature of %s, not of %s", ErrAuth, op, roleList(roles), h.Role))
	return AuthHeader{}, false
}

func roleList(roles []Role) string {
	var out []string
	for _, r := range roles {
		out = append(out, "the "+string(r))
	}
	return strings.Join(out, " or ")
}

// keyOf returns the key a request of role for mac must be signed with,
// and the machine as stored. A machine without such a key (unknown,
// discovered, not allowed, its agent key not used yet for a machine key)
// gets a random stand-in, so that its refusal reads and costs the same as
// a wrong signature.
func (s *Server) keyOf(role Role, mac string) ([]byte, state.Machine) {
	m, ok := s.Store.Get(mac)
	approved := ok && m.State != state.Discovered && m.KeyID != "" && (s.Allow == nil || s.Allow(mac))
	switch {
	case role == RoleOperator:
		return s.opKey, m
	case role == RoleAgent && approved:
		return AgentKey(s.Key, mac, m.KeyID), m
	case role == RoleMachine && approved && m.KeyUsed:
		return MachineKey(s.Key, mac, m.KeyID), m
	}
	return s.dummy, m
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
	b, ok := s.readBody(w, r, "register")
	if !ok {
		return
	}
	h, ok := s.header(w, r, "register", RoleAgent, RoleMachine)
	if !ok {
		return
	}
	var req RegisterRequest
	if err := decode(b, &req); err != nil {
		s.fail(w, http.StatusBadRequest, "register: bad body: %v", err)
		return
	}
	mac, err := state.NormalizeMAC(req.MAC)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "register: %v", err)
		return
	}
	key, m := s.keyOf(h.Role, mac)
	if err := s.auth.verify(r, h, key, b); err != nil {
		s.deny(w, r, "register of "+mac, err)
		return
	}
	// Authenticated: the caller holds this machine's key.
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
	pub, err := ParseAnswerKey(req.Pub)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "register: %s: %v", mac, err)
		return
	}
	// Sealed before the key is spent: an answer key that cannot be
	// sealed to must not cost the machine its registration.
	creds := Credentials{ChainKey: s.Key, MachineKey: MachineKey(s.Key, mac, m.KeyID)}
	if req.Step == "" {
		f := s.Fixups
		creds.Identity, creds.IdentityIfRoot, creds.Hooks, creds.HookTimeout = f.Identity, f.IdentityIfRoot, f.Hooks, int64(f.HookTimeout/time.Second)
		if f.Identity {
			creds.Name = m.Name
		}
	}
	answer, err := SealAnswer(Credential{Role: h.Role, Key: key}, pub, mac, h.Nonce, creds)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "register: %s: %v", mac, err)
		return
	}
	reg := state.Registration{IP: req.IP, Port: req.Port, Session: req.Session, Step: req.Step, Pub: req.Pub}
	var repeated bool
	if h.Role == RoleAgent {
		m, repeated, err = s.Store.RegisterAgent(mac, m.KeyID, reg)
	} else {
		m, repeated, err = s.Store.ReRegister(mac, m.KeyID, reg)
	}
	switch {
	case errors.Is(err, state.ErrKeyUsed):
		first, _ := s.Store.Get(mac)
		s.alarm(first, reg)
		s.fail(w, http.StatusConflict, "register: the agent key of %s was used already: this machine rebooted during its clone, or another one took its MAC; the operator's herd pxe set %s new gives it a fresh key", mac, mac)
		return
	case errors.Is(err, state.ErrTransition), errors.Is(err, state.ErrKeyStale), errors.Is(err, state.ErrNotApproved):
		s.fail(w, http.StatusConflict, "register: %v", err)
		return
	case err != nil:
		s.fail(w, http.StatusBadRequest, "register: %v", err)
		return
	}
	how := "registered"
	if repeated {
		how = "registered again (same registration, answer repeated)"
	}
	s.logf("http: %s %s from %s:%d session %q%s (%s key, key %d)", m.MAC, how, m.IP, m.Port, m.Session, stepText(m.Step), h.Role, m.KeyGen)
	writeJSON(w, http.StatusOK, Reply{OK: true, Answer: answer})
}

// alarm records and logs a refused registration with the used agent key
// of first.
func (s *Server) alarm(first state.Machine, again state.Registration) {
	now := s.auth.now().UTC().Format(time.RFC3339)
	msg := fmt.Sprintf("%s: registration from %s port %d with the used agent key (key %d) refused; the key served the registration from %s port %d at %s",
		now, again.IP, again.Port, first.KeyGen, first.IP, first.Port, first.Updated.Format(time.RFC3339))
	if _, err := s.Store.RaiseAlarm(first.MAC, msg); err != nil {
		s.logf("http: record alarm of %s: %v", first.MAC, err)
	}
	s.alarmf("http: ALARM: %s: %s. Its MAC is spoofed, or the machine rebooted during its clone; herd pxe set %s new gives it a fresh key", first.MAC, msg, first.MAC)
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	b, ok := s.readBody(w, r, "report")
	if !ok {
		return
	}
	h, ok := s.header(w, r, "report", RoleMachine)
	if !ok {
		return
	}
	var req ReportRequest
	if err := decode(b, &req); err != nil {
		s.fail(w, http.StatusBadRequest, "report: bad body: %v", err)
		return
	}
	mac, err := state.NormalizeMAC(req.MAC)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "report: %v", err)
		return
	}
	key, _ := s.keyOf(RoleMachine, mac)
	if err := s.auth.verify(r, h, key, b); err != nil {
		s.deny(w, r, "report of "+mac, err)
		return
	}
	var m state.Machine
	if len(req.Log) > 0 && !req.OK {
		// Before the report: a machine decided failed has its log.
		if _, err := s.Store.SetLog(mac, req.Log); err != nil {
			s.logf("http: %s: keep its log: %v", mac, err)
		}
	}
	if len(req.AgentLog) > 0 || req.Fixups != "" {
		// Before the report too: a machine decided done has them.
		if _, err := s.Store.SetAgentLog(mac, req.AgentLog, req.Fixups); err != nil {
			s.logf("http: %s: keep its agent's log: %v", mac, err)
		}
	}
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
	h, ok := s.header(w, r, "list", RoleOperator)
	if !ok {
		return
	}
	if err := s.auth.verify(r, h, s.opKey, nil); err != nil {
		s.deny(w, r, "list", err)
		return
	}
	writeJSON(w, http.StatusOK, s.Store.List())
}

func (s *Server) machine(w http.ResponseWriter, r *http.Request) {
	h, ok := s.header(w, r, "machine", RoleOperator, RoleMachine)
	if !ok {
		return
	}
	mac, err := state.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		s.fail(w, http.StatusBadRequest, "machine: %v", err)
		return
	}
	key, m := s.keyOf(h.Role, mac)
	if err := s.auth.verify(r, h, key, nil); err != nil {
		s.deny(w, r, "machine "+mac, err)
		return
	}
	if m.MAC == "" {
		writeJSON(w, http.StatusNotFound, Reply{OK: false, Error: fmt.Sprintf("machine: %s is not known", mac)})
		return
	}
	m, _ = s.Store.Get(mac)
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) set(w http.ResponseWriter, r *http.Request) {
	b, ok := s.readBody(w, r, "set")
	if !ok {
		return
	}
	h, ok := s.header(w, r, "set", RoleOperator)
	if !ok {
		return
	}
	if err := s.auth.verify(r, h, s.opKey, b); err != nil {
		s.deny(w, r, "set", err)
		return
	}
	var req SetRequest
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
	s.logf("http: %s set to %s by the operator from %s (key %d)", m.MAC, m.State, remoteIP(r), m.KeyGen)
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
