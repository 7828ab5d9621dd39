package ring

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/herd-cluster/herd/ring/wire"
)

// SessionID identifies a session (random unless SenderConfig.Session is set).
type SessionID = wire.SessionID

// ErrResume is wrapped by every error about a resume file.
var ErrResume = errors.New("ring: bad resume file")

// resumeState is what a resume file holds: the session, the key its chunks
// are sealed with, and what it sends where, so a restarted source can only
// take up the very same session.
type resumeState struct {
	Version int      `json:"version"`
	Session string   `json:"session"`
	DataKey string   `json:"data_key,omitempty"` // hex; the nodes that hold the manifest open chunks with it
	Nodes   []string `json:"nodes"`
	Items   []Item   `json:"items"`
}

// resumeVersion is the version of the resume file format.
const resumeVersion = 2

// Resumable is a session a source runs so that it can take it up again:
// give Session and DataKey to SenderConfig.
type Resumable struct {
	Session SessionID
	// DataKey seals the session's chunks (ring/seal): nodes that already
	// hold the manifest expect it.
	DataKey []byte
	// Resumed: the file existed (a source that stopped before the end
	// wrote it): the session is taken up again.
	Resumed bool
}

// ResumeFile returns the session a source should run for nodes and items,
// kept in path: when path exists (a source that stopped before the end
// wrote it), its session and data key, after checking that it was for the
// same chain and items (Resumed is true); otherwise a new random session
// and data key, written to path first (mode 0600: the data key is a
// secret of the session). Nodes that still run that session (their
// Receive waits for a new upstream for ReceiverConfig.UpstreamWait) or
// that were restarted with their StateDir answer how far they got, and the
// source reads its items again but sends only what they lack (the digests
// cover everything, so a source changed in between is found out). Remove
// path once the session succeeded.
func ResumeFile(path string, nodes []string, items []Item) (Resumable, error) {
	var r Resumable
	if b, err := os.ReadFile(path); err == nil {
		st, err := parseResume(b)
		if err != nil {
			return r, fmt.Errorf("%s: %w", path, err)
		}
		if !slices.Equal(st.Nodes, nodes) || !slices.Equal(st.Items, items) {
			return r, fmt.Errorf("%w: %s is for another chain or other items", ErrResume, path)
		}
		hex.Decode(r.Session[:], []byte(st.Session))
		r.DataKey, _ = hex.DecodeString(st.DataKey)
		r.Resumed = true
		return r, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return r, fmt.Errorf("read resume file: %w", err)
	}
	randomBytes(r.Session[:])
	r.DataKey = make([]byte, wire.KeySize)
	randomBytes(r.DataKey)
	b, _ := json.MarshalIndent(resumeState{Version: resumeVersion, Session: hex.EncodeToString(r.Session[:]),
		DataKey: hex.EncodeToString(r.DataKey), Nodes: nodes, Items: items}, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return r, fmt.Errorf("write resume file: %w", err)
	}
	return r, nil
}

// parseResume reads a resume file.
func parseResume(b []byte) (*resumeState, error) {
	var st resumeState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResume, err)
	}
	if st.Version != resumeVersion {
		return nil, fmt.Errorf("%w: version %d (want %d; a file of another herd cannot be resumed: remove it to start afresh)", ErrResume, st.Version, resumeVersion)
	}
	if s, err := hex.DecodeString(st.Session); err != nil || len(s) != len(SessionID{}) {
		return nil, fmt.Errorf("%w: session %q is not 32 hex digits", ErrResume, st.Session)
	}
	if k, err := hex.DecodeString(st.DataKey); err != nil || len(k) != wire.KeySize {
		return nil, fmt.Errorf("%w: data key is not %d hex digits", ErrResume, 2*wire.KeySize)
	}
	if len(st.Nodes) == 0 {
		return nil, fmt.Errorf("%w: no nodes", ErrResume)
	}
	return &st, nil
}
