package ring

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/herd-cluster/herd/ring/wire"
)

// SessionID identifies a session (random unless SenderConfig.Session is set).
type SessionID = wire.SessionID

// ErrResume is wrapped by every error about a resume file.
var ErrResume = errors.New("ring: bad resume file")

// resumeState is what a resume file holds: the session and what it sends
// where, so a restarted source can only take up the very same session.
type resumeState struct {
	Version int      `json:"version"`
	Session string   `json:"session"`
	Nodes   []string `json:"nodes"`
	Items   []Item   `json:"items"`
}

// ResumeFile returns the session a source should run for nodes and items,
// kept in path: when path exists (a source that stopped before the end
// wrote it), its session, after checking that it was for the same chain
// and items (resumed is true); otherwise a new random session, written to
// path first. Give the id to SenderConfig.Session. Nodes that still run
// that session (their Receive waits for a new upstream for
// ReceiverConfig.UpstreamWait) or that were restarted with their StateDir
// answer how far they got, and the source reads its items again but sends
// only what they lack (the digests cover everything, so a source changed
// in between is found out). Remove path once the session succeeded.
func ResumeFile(path string, nodes []string, items []Item) (id SessionID, resumed bool, err error) {
	if b, err := os.ReadFile(path); err == nil {
		st, err := parseResume(b)
		if err != nil {
			return id, false, fmt.Errorf("%s: %w", path, err)
		}
		if !sameStrings(st.Nodes, nodes) || !sameItems(st.Items, items) {
			return id, false, fmt.Errorf("%w: %s is for another chain or other items", ErrResume, path)
		}
		hex.Decode(id[:], []byte(st.Session))
		return id, true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return id, false, fmt.Errorf("read resume file: %w", err)
	}
	randomBytes(id[:])
	b, _ := json.MarshalIndent(resumeState{Version: 1, Session: hex.EncodeToString(id[:]), Nodes: nodes, Items: items}, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return id, false, fmt.Errorf("write resume file: %w", err)
	}
	return id, false, nil
}

// parseResume reads a resume file.
func parseResume(b []byte) (*resumeState, error) {
	var st resumeState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResume, err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("%w: version %d (want 1)", ErrResume, st.Version)
	}
	if s, err := hex.DecodeString(st.Session); err != nil || len(s) != len(SessionID{}) {
		return nil, fmt.Errorf("%w: session %q is not 32 hex digits", ErrResume, st.Session)
	}
	if len(st.Nodes) == 0 {
		return nil, fmt.Errorf("%w: no nodes", ErrResume)
	}
	return &st, nil
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameItems(a, b []Item) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
