package httpboot

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Fix-ups: what an agent does to the cloned system once its copy
// verified, ordered by the server in the sealed registration answer
// (Credentials), never by the kernel command line, which anyone on the
// provisioning network can read and which the agent cannot check.

// Limits on the fix-ups an answer may carry. An answer holds at most
// MaxHooks hooks of MaxHookSize bytes each.
const (
	MaxHooks       = 16
	MaxHookSize    = 64 << 10
	MaxHookName    = 64
	MaxHookTimeout = 24 * time.Hour
	// MaxHostname is the longest host name (RFC 1123: 253 characters,
	// labels of at most 63).
	MaxHostname = 253
)

// Hook is one script the agent runs in a chroot of the cloned system
// (see pxe/agent RunHook).
type Hook struct {
	// Name is what the operator knows it by (the file's base name): it
	// names the hook in logs and in a failure's reason.
	Name string `json:"name"`
	// Script is the script, run by the clone's /bin/sh in the chroot.
	Script []byte `json:"script"`
}

// Fixups are the fix-ups a server orders every agent of a deploy to do
// after a verified copy of the system (not after a stage 2).
type Fixups struct {
	// Identity makes each agent give its clone its own identity: the
	// machine's name as host name (when it has one), an empty
	// /etc/machine-id, no SSH host keys of the golden's.
	Identity bool
	// IdentityIfRoot, with Identity and no hooks, makes a clone without
	// a root file system (a data disk, a system herd cannot recognize)
	// skip the identity, saying so, rather than fail: the default of
	// herd deploy, where identity was not asked for explicitly.
	IdentityIfRoot bool
	// Hooks run in order in a chroot of the clone, after the identity.
	Hooks []Hook
	// HookTimeout bounds each hook (0: the agent's default).
	HookTimeout time.Duration
}

// Check returns an error naming the first thing in f outside the limits.
func (f Fixups) Check() error {
	if len(f.Hooks) > MaxHooks {
		return fmt.Errorf("httpboot: %d hooks, at most %d", len(f.Hooks), MaxHooks)
	}
	for _, h := range f.Hooks {
		if err := CheckHookName(h.Name); err != nil {
			return err
		}
		if len(h.Script) > MaxHookSize {
			return fmt.Errorf("httpboot: hook %s: %d bytes, at most %d", h.Name, len(h.Script), MaxHookSize)
		}
	}
	if f.HookTimeout < 0 || f.HookTimeout > MaxHookTimeout {
		return fmt.Errorf("httpboot: hook timeout %v: want 0 to %v", f.HookTimeout, MaxHookTimeout)
	}
	return nil
}

// CheckHookName accepts 1 to MaxHookName printable characters without a
// slash or a backslash.
func CheckHookName(s string) error {
	if s == "" || len(s) > MaxHookName || !utf8.ValidString(s) || strings.ContainsAny(s, "/\\") {
		return fmt.Errorf("httpboot: hook name %q: want 1 to %d printable characters without a slash", truncate(s, 80), MaxHookName)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("httpboot: hook name %q: control character", truncate(s, 80))
		}
	}
	return nil
}

// ValidHostname reports whether s is a host name as RFC 1123 allows:
// dot-separated labels of 1 to 63 letters, digits and hyphens, none
// starting or ending with a hyphen, MaxHostname characters at most. An
// agent gives its clone no other name.
func ValidHostname(s string) bool {
	if s == "" || len(s) > MaxHostname {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// checkOrders checks the fix-up fields of an answer's Credentials.
func (c Credentials) checkOrders() error {
	if c.Name != "" && !ValidHostname(c.Name) {
		return fmt.Errorf("machine name %q is not a host name (RFC 1123)", truncate(c.Name, 80))
	}
	if c.HookTimeout < 0 || c.HookTimeout > int64(MaxHookTimeout/time.Second) {
		return fmt.Errorf("hook timeout %d s: want 0 to %d", c.HookTimeout, int64(MaxHookTimeout/time.Second))
	}
	return Fixups{Hooks: c.Hooks, HookTimeout: time.Duration(c.HookTimeout) * time.Second}.Check()
}

// Orders returns the fix-ups the answer orders.
func (c Credentials) Orders() Fixups {
	return Fixups{Identity: c.Identity, IdentityIfRoot: c.IdentityIfRoot, Hooks: c.Hooks, HookTimeout: time.Duration(c.HookTimeout) * time.Second}
}
