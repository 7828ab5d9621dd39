package bmc

import (
	"context"
	"fmt"
	"time"
)

// PowerState is a machine's power as its BMC reports it.
type PowerState string

// Power states.
const (
	On  PowerState = "on"
	Off PowerState = "off"
)

// Action is a power action.
type Action string

// Power actions.
const (
	PowerOn  Action = "on"
	PowerOff Action = "off" // at once, as the power button held
	// PowerCycle turns a machine that is on off and on again, and one
	// that is off on: either way it boots now.
	PowerCycle Action = "cycle"
)

// Device is what a machine boots from.
type Device string

// Boot devices.
const (
	PXE  Device = "pxe"
	Disk Device = "disk"
)

// Boot is a boot override.
type Boot struct {
	Device Device
	// Persistent keeps it for every later boot; else it is for the
	// next boot only.
	Persistent bool
	// EFI asks for the firmware's UEFI boot path: without it some
	// BMCs switch a UEFI machine to legacy boot with the override.
	EFI bool
}

// Controller is one machine's BMC.
type Controller interface {
	// State returns the machine's power state.
	State(ctx context.Context) (PowerState, error)
	// Power does a power action.
	Power(ctx context.Context, a Action) error
	// SetBoot sets what the machine boots from.
	SetBoot(ctx context.Context, b Boot) error
}

// Timeout bounds one request to a BMC when the caller's context has no
// deadline.
const Timeout = 30 * time.Second

// MaxResponse bounds what a BMC's answer may cost to read.
const MaxResponse = 1 << 20

// Open returns the Controller of the BMC at a, reached with c.
func Open(a Addr, c Credentials) (Controller, error) {
	switch a.Protocol {
	case IPMI:
		return &ipmiBMC{addr: a, creds: c, tool: "ipmitool"}, nil
	case Redfish:
		return newRedfish(a, c)
	}
	return nil, fmt.Errorf("%w: protocol %q", ErrAddr, a.Protocol)
}

// ParseAction reads on, off or cycle.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case PowerOn, PowerOff, PowerCycle:
		return a, nil
	}
	return "", fmt.Errorf("bmc: power action %q (want on, off or cycle)", s)
}

// withTimeout gives ctx the default Timeout when it has no deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, Timeout)
}
