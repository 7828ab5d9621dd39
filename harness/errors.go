package harness

import "errors"

// Sentinel errors callers may test with errors.Is.
var (
	// ErrNotRoot: the harness needs root (namespaces, loop devices).
	ErrNotRoot = errors.New("harness: root required")
	// ErrNotFound: no cluster or node of that name.
	ErrNotFound = errors.New("harness: not found")
	// ErrExists: a cluster of that name is already up.
	ErrExists = errors.New("harness: cluster already exists")
	// ErrBadConfig: the Config cannot be built.
	ErrBadConfig = errors.New("harness: bad config")
	// ErrBadState: a state file is unreadable or inconsistent.
	ErrBadState = errors.New("harness: bad state file")
	// ErrBusy: an object could not be released (processes survive, no
	// free loop device).
	ErrBusy = errors.New("harness: busy")
	// ErrUnsupported: this machine cannot provide the feature (for example
	// disk throttling without a blkio controller).
	ErrUnsupported = errors.New("harness: unsupported on this machine")
	// ErrClosed: the cluster was closed.
	ErrClosed = errors.New("harness: cluster closed")
)
