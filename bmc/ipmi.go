package bmc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/herd-cluster/herd/internal/ipmitool"
)

// ipmiBMC drives a BMC over IPMI-over-LAN (RMCP+, "lanplus") with
// ipmitool. The password reaches ipmitool through its environment
// (-E), never its command line, which any user can read in /proc.
type ipmiBMC struct {
	addr  Addr
	creds Credentials
	tool  string
}

// run runs ipmitool with args and returns its standard output.
func (b *ipmiBMC) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	argv := []string{"-I", "lanplus", "-H", b.addr.Host, "-p", strconv.Itoa(b.addr.Port),
		"-U", b.creds.User, "-E", "-N", "3", "-R", "3"}
	if b.addr.Cipher != 0 {
		argv = append(argv, "-C", strconv.Itoa(b.addr.Cipher))
	}
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, b.tool, argv...)
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+b.creds.Password)
	var out, errb bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, n: MaxResponse}
	cmd.Stderr = &limitedWriter{w: &errb, n: 4096}
	err := cmd.Run()
	if err == nil && ipmitool.Failed(errb.String()) {
		// ipmitool exits 0 after some refused requests (a boot
		// device the BMC does not take, among them).
		err = errors.New("failure reported")
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		if ctx.Err() != nil {
			msg = "no answer in time: " + msg
		}
		return "", fmt.Errorf("%w: %s: ipmitool %s: %v: %s", ErrBMC, b.addr, strings.Join(args, " "), err, firstLine(msg))
	}
	return out.String(), nil
}

func (b *ipmiBMC) State(ctx context.Context) (PowerState, error) {
	out, err := b.run(ctx, "chassis", "power", "status")
	if err != nil {
		return "", err
	}
	st, err := parseIPMIPower(out)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrBMC, b.addr, err)
	}
	return st, nil
}

func (b *ipmiBMC) Power(ctx context.Context, a Action) error {
	switch a {
	case PowerOn, PowerOff:
		_, err := b.run(ctx, "chassis", "power", string(a))
		return err
	case PowerCycle:
		// IPMI refuses a power cycle of a machine that is off.
		st, err := b.State(ctx)
		if err != nil {
			return err
		}
		if st == Off {
			_, err = b.run(ctx, "chassis", "power", "on")
		} else {
			_, err = b.run(ctx, "chassis", "power", "cycle")
		}
		return err
	}
	return fmt.Errorf("%w: power action %q", ErrBMC, a)
}

func (b *ipmiBMC) SetBoot(ctx context.Context, bt Boot) error {
	dev := map[Device]string{PXE: "pxe", Disk: "disk"}[bt.Device]
	if dev == "" {
		return fmt.Errorf("%w: boot device %q", ErrBMC, bt.Device)
	}
	var opts []string
	if bt.Persistent {
		opts = append(opts, "persistent")
	}
	if bt.EFI {
		opts = append(opts, "efiboot")
	}
	args := []string{"chassis", "bootdev", dev}
	if len(opts) > 0 {
		args = append(args, "options="+strings.Join(opts, ","))
	}
	_, err := b.run(ctx, args...)
	return err
}

// parseIPMIPower reads ipmitool's "Chassis Power is on|off".
func parseIPMIPower(out string) (PowerState, error) {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "Chassis Power is "); ok {
			switch strings.ToLower(strings.TrimSpace(rest)) {
			case "on":
				return On, nil
			case "off":
				return Off, nil
			}
		}
	}
	return "", fmt.Errorf("power status not understood: %q", firstLine(out))
}

// firstLine returns s's first line, at most 200 bytes of it.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// limitedWriter keeps the first n bytes written to it and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
