// Package state keeps the boot state of every machine herd provisions,
// keyed by MAC address, in a JSON file that is replaced atomically on
// every change, so a restarted server forgets nothing.
//
// A machine moves new → cloning (its agent registered) → done (its agent
// reported a verified copy) → local (the server switched it to boot from
// its disk); failed (with a reason) can happen from cloning, and a failed
// or done machine may register again to retry.
//
// Usage:
//
//	st, err := state.Open("/var/lib/herd/machines.json")
//	if err != nil { ... }
//	st.Register("52:54:00:12:34:56", "10.0.0.101", 9998, "lab")
//	st.Report("52:54:00:12:34:56", true, "", 1<<30)
//	st.MarkLocal("52:54:00:12:34:56")
package state

import (
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
)

// Valid reports whether p is one of the known phases.
func (p Phase) Valid() bool {
	switch p {
	case New, Cloning, Done, Local, Failed:
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
)

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
	// Step says where a cloning machine is in a flow with a stage 2
	// (see the Step constants); empty when it waits for the image.
	Step    string    `json:"step,omitempty"`
	Updated time.Time `json:"updated"`
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

// Add makes mac known in state new unless it is already known; name, when
// not empty, replaces the stored name.
func (s *Store) Add(mac, name string) (Machine, error) {
	return s.update(mac, true, func(m *Machine, isNew bool) error {
		if isNew {
			m.State = New
		}
		if name != "" {
			m.Name = name
		}
		return nil
	})
}

// Register records that the agent of mac started a clone: it moves the
// machine (created if unknown) to cloning and records its address.
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
		m.State, m.IP, m.Port, m.Session, m.Reason, m.Bytes, m.Step = Cloning, ip, port, session, "", 0, step
		return nil
	})
}

// ReportStage2 records the outcome of the stage-2 transfer of mac, which
// must be cloning at StepStage2: when ok it stays cloning at
// StepStage2Received, otherwise it fails with reason.
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
		return nil
	})
}

// Report records the outcome of the clone of mac: done when ok, failed
// with reason otherwise. The machine must be cloning.
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
		}
		return nil
	})
}

// MarkLocal switches a machine whose clone is done to local boot.
func (s *Store) MarkLocal(mac string) (Machine, error) {
	return s.update(mac, false, func(m *Machine, _ bool) error {
		if m.State != Done && m.State != Local {
			return fmt.Errorf("%w: %s is %s, only a done machine goes local", ErrTransition, m.MAC, m.State)
		}
		m.State, m.Step = Local, ""
		return nil
	})
}

// Fail moves a known machine to failed with reason, whatever its state.
func (s *Store) Fail(mac, reason string) (Machine, error) {
	return s.update(mac, false, func(m *Machine, _ bool) error {
		m.State, m.Reason, m.Step = Failed, reason, ""
		return nil
	})
}

// Set forces the phase of mac (created if unknown), for an operator who
// knows better; reason is kept only for failed.
func (s *Store) Set(mac string, p Phase, reason string) (Machine, error) {
	if !p.Valid() {
		return Machine{}, fmt.Errorf("%w: %q", ErrBadPhase, p)
	}
	return s.update(mac, true, func(m *Machine, _ bool) error {
		m.State, m.Reason, m.Step = p, "", ""
		if p == Failed {
			m.Reason = reason
		}
		return nil
	})
}

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
