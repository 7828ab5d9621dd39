// Package state keeps the boot state of every machine herd provisions,
// keyed by MAC address, in a JSON file that is replaced atomically on
// every change, so a restarted server forgets nothing.
//
// A machine moves new → cloning (its agent registered) → done (its agent
// reported a verified copy) → local (the server switched it to boot from
// its disk); failed (with a reason) can happen from cloning, and a failed
// machine may register again to retry. A machine herd saw PXE-booting
// without being told to provision it is discovered: listed, but it boots
// its disk and cannot register until the operator sets it to new.
//
// Agent keys: every machine that may boot the agent has an agent key
// for one registration (see Machine.KeyID; the key itself is derived
// from the session key by httpboot and never stored). Entering new or
// failed issues a fresh one, so the machine's next PXE boot carries a
// key that works; a second registration with a used key is refused
// (ErrKeyUsed) and the caller raises an alarm on the machine.
//
// Usage:
//
//	st, err := state.Open("/var/lib/herd/machines.json")
//	if err != nil { ... }
//	st.Register("52:54:00:12:34:56", "10.0.0.101", 9998, "lab")
//	st.Report("52:54:00:12:34:56", true, "", 1<<30)
//	st.MarkLocal("52:54:00:12:34:56")
//
// Public: the machine state file is an interface (herd pxe list reads it,
// admins may too).
package state

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Phase is the boot state of one machine.
type Phase string

// The phases a machine goes through.
const (
	New     Phase = "new"
	Cloning Phase = "cloning"
	Done    Phase = "done"
	Local   Phase = "local"
	Failed  Phase = "failed"
	// Discovered is a machine seen PXE-booting that herd was not told
	// to provision: it gets no agent key and boots its disk until the
	// operator sets it to new.
	Discovered Phase = "discovered"
)

// Valid reports whether p is one of the known phases.
func (p Phase) Valid() bool {
	switch p {
	case New, Cloning, Done, Local, Failed, Discovered:
		return true
	}
	return false
}

// Sentinel errors callers branch on.
var (
	ErrBadMAC     = errors.New("state: invalid MAC address")
	ErrUnknown    = errors.New("state: unknown machine")
	ErrTransition = errors.New("state: transition not allowed")
	ErrBadPhase   = errors.New("state: invalid phase")
	ErrBadFile    = errors.New("state: invalid state file")
	// ErrKeyUsed: the machine's agent key already served its one
	// registration.
	ErrKeyUsed = errors.New("state: agent key already used")
	// ErrKeyStale: the agent key named is not the machine's current one.
	ErrKeyStale = errors.New("state: agent key replaced")
	// ErrNotApproved: the machine is discovered, not approved for
	// provisioning (herd pxe set MAC new approves it).
	ErrNotApproved = errors.New("state: machine not approved for provisioning")
	// ErrTooMany: too many discovered machines are recorded already.
	ErrTooMany = errors.New("state: too many discovered machines")
)

// MaxDiscovered bounds how many discovered machines a store records, so
// that boot requests for made-up MACs cannot grow the state file
// without end.
const MaxDiscovered = 1024

// Machine is what the server knows about one machine.
type Machine struct {
	MAC     string `json:"mac"`
	Name    string `json:"name,omitempty"`
	State   Phase  `json:"state"`
	IP      string `json:"ip,omitempty"`
	Port    int    `json:"port,omitempty"`
	Session string `json:"session,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Bytes   int64  `json:"bytes,omitempty"`
	// Log is the tail of the kernel log its agent sent with its last
	// failure (cleared when it registers again).
	Log []string `json:"log,omitempty"`
	// AgentLog is the tail of what its agent printed, sent with its
	// last report (cleared when it registers again).
	AgentLog []string `json:"agent_log,omitempty"`
	// Fixups is what its agent did to the clone after the copy
	// verified (identity, hooks), from its last report.
	Fixups string `json:"fixups,omitempty"`
	// Step says where a cloning machine is in a flow with a stage 2
	// (see the Step constants); empty when it waits for the image.
	Step    string    `json:"step,omitempty"`
	Updated time.Time `json:"updated"`

	// KeyID names the machine's current agent key: 16 random bytes in
	// hex. The key is derived from the session key, the MAC and KeyID
	// (httpboot.AgentKey), so this file holds no secret. Empty when no
	// key was issued (a discovered machine).
	KeyID string `json:"key_id,omitempty"`
	// KeyGen counts the agent keys issued to this machine.
	KeyGen int `json:"key_gen,omitempty"`
	// KeyUsed says the current agent key served its one registration.
	KeyUsed bool `json:"key_used,omitempty"`
	// RegPub is the answer key (base64) the agent sent with that
	// registration: the very same registration repeated (its answer was
	// lost) is answered again, any other is refused.
	RegPub string `json:"reg_pub,omitempty"`
	// Alarm, when set, says that a registration with an already used
	// agent key was refused: the MAC was spoofed or the machine
	// rebooted during its clone. A machine with an alarm never goes
	// local by itself; the operator's herd pxe set clears it.
	Alarm string `json:"alarm,omitempty"`
}

// Steps of a cloning machine in a flow with a stage 2 (Machine.Step).
const (
	// StepStage2 is an agent in the boot initramfs waiting for the
	// stage 2 to come down the chain.
	StepStage2 = "stage2"
	// StepStage2Received is a machine that reported its stage 2
	// verified and is switching to it; its agent there registers again
	// (with an empty step) to receive the image.
	StepStage2Received = "stage2-received"
)

// fileFormat is the JSON layout of the state file.
type fileFormat struct {
	Version  int       `json:"version"`
	Machines []Machine `json:"machines"`
}

const fileVersion = 1

// NormalizeMAC parses s (colon or hyphen separated, any case) and returns
// it as lower-case colon-separated text, e.g. "52:54:00:12:34:56".
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%w: %q", ErrBadMAC, s)
	}
	return hw.String(), nil
}

// Store holds the machines and writes them to its file after every
// change. The zero value is not usable; call Open. All methods are safe
// for concurrent use.
type Store struct {
	mu       sync.Mutex
	path     string
	machines map[string]*Machine
	now      func() time.Time
	changed  chan struct{}
}

// Open loads the store from path, creating an empty one if the file does
// not exist. An empty path gives a store kept only in memory.
func Open(path string) (*Store, error) {
	s := &Store{path: path, machines: map[string]*Machine{}, now: time.Now, changed: make(chan struct{})}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	ms, err := Load(b)
	if err != nil {
		return nil, fmt.Errorf("load state %s: %w", path, err)
	}
	for i := range ms {
		m := ms[i]
		s.machines[m.MAC] = &m
	}
	return s, nil
}

// SetClock replaces the clock used for Updated times (tests).
func (s *Store) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// Load decodes the contents of a state file and checks every entry: MACs
// must be valid and unique, phases known.
func Load(b []byte) ([]Machine, error) {
	var f fileFormat
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFile, err)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrBadFile, f.Version, fileVersion)
	}
	seen := map[string]bool{}
	out := make([]Machine, 0, len(f.Machines))
	for i, m := range f.Machines {
		mac, err := NormalizeMAC(m.MAC)
		if err != nil {
			return nil, fmt.Errorf("%w: machine %d: %v", ErrBadFile, i, err)
		}
		if !m.State.Valid() {
			return nil, fmt.Errorf("%w: machine %d (%s): phase %q", ErrBadFile, i, mac, m.State)
		}
		if m.Step != "" && m.Step != StepStage2 && m.Step != StepStage2Received {
			return nil, fmt.Errorf("%w: machine %d (%s): step %q", ErrBadFile, i, mac, m.Step)
		}
		if m.KeyID != "" && !validKeyID(m.KeyID) {
			return nil, fmt.Errorf("%w: machine %d (%s): key_id %q (want 32 hex digits)", ErrBadFile, i, mac, m.KeyID)
		}
		if m.KeyGen < 0 {
			return nil, fmt.Errorf("%w: machine %d (%s): key_gen %d", ErrBadFile, i, mac, m.KeyGen)
		}
		if seen[mac] {
			return nil, fmt.Errorf("%w: machine %d: duplicate MAC %s", ErrBadFile, i, mac)
		}
		seen[mac] = true
		m.MAC = mac
		out = append(out, m)
	}
	return out, nil
}

// Changed returns a channel closed at the next change of any machine.
// Call it again after it fires to wait for the following change.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Get returns the machine with the given MAC.
func (s *Store) Get(mac string) (Machine, bool) {
	mac, err := NormalizeMAC(mac)
	if err != nil {
		return Machine{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.machines[mac]
	if !ok {
		return Machine{}, false
	}
	return *m, true
}

// List returns all machines sorted by MAC.
func (s *Store) List() []Machine {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Machine, 0, len(s.machines))
	for _, m := range s.machines {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

// Add makes mac known: an unknown or discovered machine becomes new with
// a fresh agent key; a known one keeps its state. name, when not empty,
// replaces the stored name.
func (s *Store) Add(mac, name string) (Machine, error) {
	return s.update(mac, true, func(m *Machine, isNew bool) error {
		if isNew || m.State == Discovered {
			m.State, m.Reason, m.Step = New, "", ""
			issueKey(m)
		}
		if name != "" {
			m.Name = name
		}
		return nil
	})
}

// Discover records mac, seen PXE-booting, as discovered unless it is
// known already; it returns the machine as stored. At most MaxDiscovered
// discovered machines are recorded (ErrTooMany).
func (s *Store) Discover(mac string) (Machine, error) {
	norm, err := NormalizeMAC(mac)
	if err != nil {
		return Machine{}, err
	}
	s.mu.Lock()
	if m, ok := s.machines[norm]; ok {
		s.mu.Unlock()
		return *m, nil
	}
	n := 0
	for _, m := range s.machines {
		if m.State == Discovered {
			n++
		}
	}
	s.mu.Unlock()
	if n >= MaxDiscovered {
		return Machine{}, fmt.Errorf("%w: %d recorded, %s not recorded", ErrTooMany, n, norm)
	}
	return s.update(norm, true, func(m *Machine, isNew bool) error {
		if isNew {
			m.State = Discovered
		}
		return nil
	})
}

// EnsureKey gives a known machine that may boot the agent (neither
// discovered nor local) an agent key if it has none (a state file from an
// older herd) and returns it.
func (s *Store) EnsureKey(mac string) (Machine, error) {
	if m, ok := s.Get(mac); ok && (m.KeyID != "" || m.State == Discovered || m.State == Local) {
		return m, nil
	}
	return s.update(mac, false, func(m *Machine, _ bool) error {
		if m.KeyID == "" && m.State != Discovered && m.State != Local {
			issueKey(m)
		}
		return nil
	})
}

// issueKey gives m a fresh agent key.
func issueKey(m *Machine) {
	var b [16]byte
	rand.Read(b[:])
	m.KeyID, m.KeyGen, m.KeyUsed, m.RegPub = hex.EncodeToString(b[:]), m.KeyGen+1, false, ""
}

func validKeyID(s string) bool {
	return len(s) == 32 && strings.Trim(s, "0123456789abcdef") == ""
}

// Registration is what an agent's registration records.
type Registration struct {
	IP      string
	Port    int
	Session string
	// Step is StepStage2 or "" (see RegisterStep).
	Step string
	// Pub is the agent's answer key (see Machine.RegPub).
	Pub string
}

// RegisterAgent records a registration made with the agent key keyID of
// mac (the caller checked the signature): the machine must be known and
// approved (ErrUnknown, ErrNotApproved), not local (ErrTransition), and
// keyID must still be its key (ErrKeyStale). The key serves one
// registration: a second one gets ErrKeyUsed, unless it repeats the
// first exactly (same address, port, session, step and answer key: its
// answer was lost), which changes nothing and returns repeated true.
func (s *Store) RegisterAgent(mac, keyID string, r Registration) (m Machine, repeated bool, err error) {
	if err := r.check(mac); err != nil {
		return Machine{}, false, err
	}
	m, err = s.update(mac, false, func(m *Machine, _ bool) error {
		switch {
		case m.State == Discovered:
			return fmt.Errorf("%w: %s (herd pxe set %s new approves it)", ErrNotApproved, m.MAC, m.MAC)
		case m.State == Local:
			return fmt.Errorf("%w: %s boots its disk (herd pxe set %s new clones it again)", ErrTransition, m.MAC, m.MAC)
		case m.KeyID == "" || m.KeyID != keyID:
			return fmt.Errorf("%w: %s", ErrKeyStale, m.MAC)
		case m.KeyUsed && m.State == Cloning && m.RegPub == r.Pub && m.IP == r.IP && m.Port == r.Port && m.Session == r.Session && m.Step == r.Step:
			repeated = true
			return errUnchanged
		case m.KeyUsed:
			return fmt.Errorf("%w: %s registered from %s at %s (key %d)", ErrKeyUsed, m.MAC, m.IP, m.Updated.Format(time.RFC3339), m.KeyGen)
		}
		m.State, m.IP, m.Port, m.Session, m.Reason, m.Bytes, m.Step = Cloning, r.IP, r.Port, r.Session, "", 0, r.Step
		m.Log, m.AgentLog, m.Fixups = nil, nil, ""
		m.KeyUsed, m.RegPub = true, r.Pub
		return nil
	})
	return m, repeated, err
}

// ReRegister records the registration of the agent of a stage 2, signed
// with the machine key of the registration that used keyID: mac must be
// cloning with its stage 2 received (ErrTransition). Repeating a
// registration that is already recorded (its answer was lost) changes
// nothing and returns repeated true.
func (s *Store) ReRegister(mac, keyID string, r Registration) (m Machine, repeated bool, err error) {
	if err := r.check(mac); err != nil {
		return Machine{}, false, err
	}
	if r.Step != "" {
		return Machine{}, false, fmt.Errorf("%w: %s: a stage 2 registers for the image, not for step %q", ErrTransition, mac, r.Step)
	}
	m, err = s.update(mac, false, func(m *Machine, _ bool) error {
		switch {
		case m.KeyID == "" || m.KeyID != keyID || !m.KeyUsed:
			return fmt.Errorf("%w: %s", ErrKeyStale, m.MAC)
		case m.State == Cloning && m.Step == "" && m.IP == r.IP && m.Port == r.Port && m.Session == r.Session:
			repeated = true
			return errUnchanged
		case m.State != Cloning || m.Step != StepStage2Received:
			return fmt.Errorf("%w: %s is %s step %q; only a machine whose stage 2 arrived registers again", ErrTransition, m.MAC, m.State, m.Step)
		}
		m.IP, m.Port, m.Session, m.Step, m.Reason = r.IP, r.Port, r.Session, "", ""
		return nil
	})
	return m, repeated, err
}

func (r Registration) check(mac string) error {
	if r.IP != "" && net.ParseIP(r.IP) == nil {
		return fmt.Errorf("state: register %s: invalid IP %q", mac, r.IP)
	}
	if r.Step != "" && r.Step != StepStage2 {
		return fmt.Errorf("state: register %s: unknown step %q", mac, r.Step)
	}
	return nil
}

// RaiseAlarm records alarm on mac (see Machine.Alarm) without changing
// its state.
func (s *Store) RaiseAlarm(mac, alarm string) (Machine, error) {
	return s.update(mac, false, func(m *Machine, _ bool) error {
		m.Alarm = alarm
		return nil
	})
}

// Register records that the agent of mac started a clone: it moves the
// machine (created if unknown) to cloning and records its address. It
// checks no agent key: the API server uses RegisterAgent.
func (s *Store) Register(mac, ip string, port int, session string) (Machine, error) {
	return s.RegisterStep(mac, ip, port, session, "")
}

// RegisterStep is Register for an agent at step (StepStage2 for an agent
// that waits for a stage 2, "" for one that waits for the image).
func (s *Store) RegisterStep(mac, ip string, port int, session, step string) (Machine, error) {
	if ip != "" && net.ParseIP(ip) == nil {
		return Machine{}, fmt.Errorf("state: register %s: invalid IP %q", mac, ip)
	}
	if step != "" && step != StepStage2 {
		return Machine{}, fmt.Errorf("state: register %s: unknown step %q", mac, step)
	}
	return s.update(mac, true, func(m *Machine, _ bool) error {
		m.State, m.IP, m.Port, m.Session, m.Reason, m.Bytes, m.Step, m.Log = Cloning, ip, port, session, "", 0, step, nil
		m.AgentLog, m.Fixups = nil, ""
		return nil
	})
}

// ReportStage2 records the outcome of the stage-2 transfer of mac, which
// must be cloning at StepStage2: when ok it stays cloning at
// StepStage2Received, otherwise it fails with reason (and a fresh agent
// key).
func (s *Store) ReportStage2(mac string, ok bool, reason string, bytes int64) (Machine, error) {
	return s.update(mac, false, func(m *Machine, _ bool) error {
		if m.State != Cloning || m.Step != StepStage2 {
			return fmt.Errorf("%w: stage-2 report for %s in state %s step %q (want %s step %s)", ErrTransition, m.MAC, m.State, m.Step, Cloning, StepStage2)
		}
		m.Bytes = bytes
		if ok {
			m.Step, m.Reason = StepStage2Received, ""
			return nil
		}
		if reason == "" {
			reason = "agent reported failure"
		}
		m.State, m.Step, m.Reason = Failed, "", "stage 2: "+reason
		issueKey(m)
		return nil
	})
}

// Bounds of a machine's Log.
const (
	MaxLogLines = 40
	MaxLogLine  = 300
)

// Bounds of a machine's AgentLog and Fixups.
const (
	MaxAgentLogLines = 200
	MaxFixups        = 1024
)

// SetLog keeps lines as mac's Log: the last MaxLogLines, each cut to
// MaxLogLine bytes, control characters replaced, valid UTF-8.
func (s *Store) SetLog(mac string, lines []string) (Machine, error) {
	clean := cleanLines(lines, MaxLogLines)
	return s.update(mac, false, func(m *Machine, _ bool) error {
		m.Log = clean
		return nil
	})
}

// SetAgentLog keeps lines as mac's AgentLog (the last MaxAgentLogLines,
// cleaned as by SetLog) and fixups as its Fixups (cut to MaxFixups
// bytes, cleaned).
func (s *Store) SetAgentLog(mac string, lines []string, fixups string) (Machine, error) {
	clean := cleanLines(lines, MaxAgentLogLines)
	fixups = cleanLine(fixups, MaxFixups)
	return s.update(mac, false, func(m *Machine, _ bool) error {
		m.AgentLog, m.Fixups = clean, fixups
		return nil
	})
}

// cleanLines returns the last max lines, each cleaned by cleanLine to
// MaxLogLine bytes.
func cleanLines(lines []string, max int) []string {
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	clean := make([]string, 0, len(lines))
	for _, l := range lines {
		clean = append(clean, cleanLine(l, MaxLogLine))
	}
	return clean
}

// cleanLine makes l valid UTF-8 of at most n bytes with its control
// characters (but tabs) replaced by '?'.
func cleanLine(l string, n int) string {
	l = strings.ToValidUTF8(l, "?")
	if len(l) > n {
		l = strings.ToValidUTF8(l[:n], "")
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return '?'
		}
		return r
	}, l)
}

// Report records the outcome of the clone of mac: done when ok, failed
// with reason (and a fresh agent key for its next boot) otherwise. The
// machine must be cloning.
func (s *Store) Report(mac string, ok bool, reason string, bytes int64) (Machine, error) {
	return s.update(mac, false, func(m *Machine, _ bool) error {
		if m.State != Cloning {
			return fmt.Errorf("%w: report for %s in state %s (want %s)", ErrTransition, m.MAC, m.State, Cloning)
		}
		if m.Step != "" {
			return fmt.Errorf("%w: image report for %s at step %s (its agent has not registered for the image)", ErrTransition, m.MAC, m.Step)
		}
		m.Bytes = bytes
		if ok {
			m.State, m.Reason = Done, ""
		} else {
			if reason == "" {
				reason = "agent reported failure"
			}
			m.State, m.Reason = Failed, reason
			issueKey(m)
		}
		return nil
	})
}

// MarkLocal switches a machine whose clone is done to local boot; a
// machine with an alarm is refused (ErrTransition).
func (s *Store) MarkLocal(mac string) (Machine, error) {
	return s.update(mac, false, func(m *Machine, _ bool) error {
		if m.Alarm != "" {
			return fmt.Errorf("%w: %s has an alarm (%s); only the operator sets it local", ErrTransition, m.MAC, m.Alarm)
		}
		if m.State != Done && m.State != Local {
			return fmt.Errorf("%w: %s is %s, only a done machine goes local", ErrTransition, m.MAC, m.State)
		}
		m.State, m.Step = Local, ""
		return nil
	})
}

// Fail moves a known machine to failed with reason, whatever its state,
// with a fresh agent key for its next boot.
func (s *Store) Fail(mac, reason string) (Machine, error) {
	return s.update(mac, false, func(m *Machine, _ bool) error {
		m.State, m.Reason, m.Step = Failed, reason, ""
		issueKey(m)
		return nil
	})
}

// Set forces the phase of mac (created if unknown), for an operator who
// knows better; reason is kept only for failed. It clears the alarm.
// New and failed issue a fresh agent key (the machine's next PXE boot
// gets a key that works once); discovered withdraws the key.
func (s *Store) Set(mac string, p Phase, reason string) (Machine, error) {
	if !p.Valid() {
		return Machine{}, fmt.Errorf("%w: %q", ErrBadPhase, p)
	}
	return s.update(mac, true, func(m *Machine, _ bool) error {
		m.State, m.Reason, m.Step, m.Alarm = p, "", "", ""
		switch p {
		case Failed:
			m.Reason = reason
			issueKey(m)
		case New:
			issueKey(m)
		case Discovered:
			m.KeyID, m.KeyUsed, m.RegPub = "", false, ""
		}
		return nil
	})
}

// errUnchanged from an update's fn leaves the machine as it is and
// returns it without error.
var errUnchanged = errors.New("state: unchanged")

// update applies fn to the machine mac under the lock and saves the
// store; the change is undone when saving fails.
func (s *Store) update(mac string, create bool, fn func(m *Machine, isNew bool) error) (Machine, error) {
	norm, err := NormalizeMAC(mac)
	if err != nil {
		return Machine{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.machines[norm]
	if !exists && !create {
		return Machine{}, fmt.Errorf("%w: %s", ErrUnknown, norm)
	}
	m := Machine{MAC: norm}
	if exists {
		m = *old
	}
	if err := fn(&m, !exists); err != nil {
		if errors.Is(err, errUnchanged) {
			return m, nil
		}
		return Machine{}, err
	}
	m.Updated = s.now().UTC()
	s.machines[norm] = &m
	if err := s.saveLocked(); err != nil {
		if exists {
			s.machines[norm] = old
		} else {
			delete(s.machines, norm)
		}
		return Machine{}, err
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return m, nil
}

// saveLocked writes the store to a temporary file beside its path, syncs
// it and renames it over the old file.
func (s *Store) saveLocked() error {
	if s.path == "" {
		return nil
	}
	f := fileFormat{Version: fileVersion, Machines: make([]Machine, 0, len(s.machines))}
	for _, m := range s.machines {
		f.Machines = append(f.Machines, *m)
	}
	sort.Slice(f.Machines, func(i, j int) bool { return f.Machines[i].MAC < f.Machines[j].MAC })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save state %s: %w", s.path, err)
	}
	tmpName := tmp.Name()
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmpName, s.path)
	}
	if werr != nil {
		os.Remove(tmpName)
		return fmt.Errorf("save state %s: %w", s.path, werr)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
