package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/herd-cluster/herd/pxe/state"
)

// PowerTimeout bounds one power command.
const PowerTimeout = time.Minute

// ShellPower returns a Power function that runs tmpl with sh -c, {mac},
// {ip} and {name} replaced by the machine's, shell-quoted ({name} is the
// MAC with dashes when the machine has none), for at most PowerTimeout.
// Its error quotes the start of the command's output.
func ShellPower(tmpl string) func(ctx context.Context, m state.Machine) error {
	return func(ctx context.Context, m state.Machine) error {
		ctx, cancel := context.WithTimeout(ctx, PowerTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", PowerCommand(tmpl, m))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(out.String())
			if len(msg) > 200 {
				msg = msg[:200]
			}
			return fmt.Errorf("power command: %v: %s", err, msg)
		}
		return nil
	}
}

// PowerCommand fills the {mac} {ip} {name} placeholders of tmpl,
// shell-quoted.
func PowerCommand(tmpl string, m state.Machine) string {
	name := m.Name
	if name == "" {
		name = strings.ReplaceAll(m.MAC, ":", "-")
	}
	return strings.NewReplacer("{mac}", shellQuote(m.MAC), "{ip}", shellQuote(m.IP), "{name}", shellQuote(name)).Replace(tmpl)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
