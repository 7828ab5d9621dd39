package agent

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/herd-cluster/herd/blockdev/disksel"
	"github.com/herd-cluster/herd/internal/syncio"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/ring/report"
)

// Errors the agent's Run returns; the machine reboots in every case.
var (
	// ErrUnreachable means the server did not answer in any attempt.
	ErrUnreachable = errors.New("agent: cannot reach herd server")
	// ErrCloneFailed means the receive ran but did not verify.
	ErrCloneFailed = errors.New("agent: clone failed")
	// ErrServerLost means the server stopped answering (or forgot this
	// machine) after the agent registered and before any session
	// reached it; it wraps ErrUnreachable, so the machine reboots to try
	// PXE again as when the server was never reached.
	ErrServerLost = fmt.Errorf("%w: lost after registering", ErrUnreachable)
)

// Lease is the network configuration the agent got.
type Lease struct {
	// Interface is the interface name ("eth0").
	Interface string
	// MAC is its hardware address ("52:54:00:12:34:56").
	MAC string
	// IP is its IPv4 address without prefix length.
	IP string
}

// Summary is what the agent learned from the receive.
type Summary struct {
	OK    bool
	Bytes int64
	Error string
}

// Agent runs the agent's flow once: network, register, receive, report,
// reboot. Set Config and Console; the other fields default to the real
// machine (udhcpc on eth0, "herd recv" as a subprocess, the reboot
// system call) and exist so tests can replace them. An Agent must not
// be copied or reused after Run.
type Agent struct {
	// Config holds the orders from the kernel command line.
	Config Config
	// Console receives every message for the operator (the serial
	// console in the initramfs).
	Console io.Writer
	// Drivers loads the kernel modules the machine needs before the
	// network is brought up; default LoadDrivers from ModuleIndex.
	Drivers func(ctx context.Context) error
	// FindDisk turns the disk rule (Config.Disk: a path or a
	// disksel rule) into the device to write; default FindDisk on this
	// machine, waiting up to 20 s for disks to appear.
	FindDisk func(ctx context.Context, rule string) (disksel.Disk, error)
	// NetUp brings the network up; default NetUp: the NIC it booted
	// from (Config.BootMAC) first, herd's own DHCP client.
	NetUp func(ctx context.Context) (Lease, error)
	// KernelLog returns the last n lines of the kernel log, sent with
	// a failure's report; default KernelLog.
	KernelLog func(n int) []string
	// RecvCommand returns the command that receives the image, given
	// herd recv's arguments; default: this executable with those args.
	// Its stdout must carry herd recv's --json lines.
	RecvCommand func(ctx context.Context, args []string) *exec.Cmd
	// HTTP is the client for the server's API; default a plain client
	// whose timeout is Config.Timeout.
	HTTP *http.Client
	// RefusedWait is how long the agent waits after the server refused
	// it (ErrRefused) before it reboots, so that a refused machine does
	// not knock every few seconds (default Config.Timeout times
	// Config.Retries, what an unreachable server costs).
	RefusedWait time.Duration
	// Reboot restarts the machine; default sync and the reboot system
	// call. Run returns what happened once Reboot returns.
	Reboot func() error
	// RetryDelay separates tries within one attempt (default 2 s).
	RetryDelay time.Duration
	// TempDir holds the chain key file while herd recv runs (default
	// os.TempDir(), in the initramfs's RAM).
	TempDir string
	// WatchInterval is how often the agent, once registered and waiting
	// for the session, checks that the server still knows it (default
	// 5 s). When the server has not answered for Config.Timeout and no
	// session connection is open, the wait ends with ErrServerLost.
	WatchInterval time.Duration
	// SessionActive reports whether a session connection reached port
	// (default: an established TCP connection on that local port in
	// /proc/net/tcp or tcp6). While it does the server is not needed.
	SessionActive func(port int) bool

	// Stage2Root is where herd recv is confined while a stage 2
	// arrives; the stage 2 is unpacked into Stage2Root+Stage2Out
	// (default Stage2Root).
	Stage2Root string
	// InStage2 reports whether this agent runs inside a stage 2
	// (default: Stage2Marker exists).
	InStage2 func() bool
	// MountStage2 makes dir an empty RAM file system (default: tmpfs).
	MountStage2 func(dir string) error
	// SwitchRoot makes dir the root and runs init in it as pid 1
	// (default: the moves of /dev, /proc, /sys, then busybox
	// switch_root). On a real machine it does not return on success; a
	// replacement that returns nil ends Run with nil and no reboot.
	SwitchRoot func(dir, init string) error
	// Stage2Credentials is the file through which the first agent hands
	// its machine key to the agent of its stage 2 (default
	// Stage2CredentialsFile; in a stage 2 it is read, before switching
	// the first agent writes it under the stage 2's root).
	Stage2Credentials string

	// Fixup does the server's fix-up orders on the clone written to
	// disk once its copy verified and returns what it did in one line;
	// default: mount the clone's root from disk (MountClone), fix its
	// identity (FixIdentity, RegenerateHostKeys), run the hooks
	// (RunHook), unmount. It is not called when nothing is ordered.
	Fixup func(ctx context.Context, disk string, job FixupJob) (string, error)

	// log keeps the last AgentLogLines lines printed, for the reports.
	log *tailBuffer
	// filesRoot is the UUID of the root file system herd recv --files
	// made (from its closing line), "" otherwise.
	filesRoot string

	client *Client
	// creds are the chain key and machine key from the registration.
	creds *httpboot.Credentials
	// machine signs the calls after the registration.
	machine httpboot.Credential
}

func (a *Agent) say(format string, args ...any) {
	line := fmt.Sprintf("herd: "+format+"\n", args...)
	io.WriteString(a.Console, line)
	if a.log != nil {
		a.log.Write([]byte(line))
	}
}

// Run executes the flow and reboots at the end, whatever happened: the
// next PXE boot decides what the machine does next (clone again, or
// boot from its disk once the server marked it local). It returns nil
// when the clone verified and was reported, otherwise an error wrapping
// ErrUnreachable, ErrCloneFailed or the local failure; the error is also
// printed on the console.
func (a *Agent) Run(ctx context.Context) error {
	a.defaults()
	c := a.Config
	a.say("agent starting: server %s session %s method %s disk %s port %d, %d attempts of %s",
		c.Server, c.Session, c.Method, c.Disk, c.Port, c.Retries, c.Timeout)
	if err := a.Drivers(ctx); err != nil {
		// Not fatal: the drivers needed may be built in; what is
		// missing shows up as no network or no disk.
		a.say("loading drivers: %v", err)
	}
	err := a.clone(ctx)
	if errors.Is(err, errSwitched) {
		return nil
	}
	if err != nil {
		a.say("%v", err)
	}
	if errors.Is(err, ErrRefused) {
		a.say("the herd server %s does not let this machine in; the operator sees why in herd pxe list (herd pxe set MAC new gives it a fresh agent key); rebooting in %v", c.Server, a.RefusedWait.Round(time.Second))
		select {
		case <-ctx.Done():
		case <-time.After(a.RefusedWait):
		}
	} else if errors.Is(err, ErrServerLost) {
		a.say("herd server %s is gone, rebooting to try PXE again", c.Server)
	} else if errors.Is(err, ErrUnreachable) {
		a.say("giving up on herd server %s after %d attempts, rebooting to try PXE again", c.Server, c.Retries)
	} else if err != nil {
		a.say("clone failed, rebooting")
	}
	if rerr := a.Reboot(); rerr != nil {
		a.say("reboot: %v", rerr)
		return errors.Join(err, fmt.Errorf("reboot: %w", rerr))
	}
	return err
}

func (a *Agent) clone(ctx context.Context) error {
	c := a.Config
	if c.Method != "raw" && c.Method != "files" {
		return fmt.Errorf("agent: method %q is not supported by this agent (raw or files)", c.Method)
	}
	if c.Stage2 {
		if !a.InStage2() {
			return a.stage2(ctx)
		}
		a.say("running in the stage 2")
	}
	// The disk first: a machine without one must not join the chain.
	// It registers all the same, to tell the server why.
	found, derr := a.FindDisk(ctx, c.Disk)
	disk := found.Path
	lease, err := a.join(ctx, "")
	if err != nil {
		return err
	}
	if err := derr; err != nil {
		// Tell the server why, so the operator sees it in herd pxe
		// list and in the deploy's result, then stay on the console
		// a while rather than reboot into the same question.
		a.say("%v", err)
		if rerr := a.report(ctx, httpboot.ReportRequest{MAC: lease.MAC, OK: false, Error: err.Error()}); rerr != nil {
			a.say("cannot report to herd server %s: %v", c.Server, rerr)
		}
		a.say("nothing was written; rebooting in %v", a.RefusedWait.Round(time.Second))
		select {
		case <-ctx.Done():
		case <-time.After(a.RefusedWait):
		}
		return err
	}
	a.say("disk %s: %s", c.Disk, found)
	var methodArgs []string
	switch c.Method {
	case "raw":
		// herd recv writes this machine's disk and nothing else,
		// whatever the sender's manifest names.
		methodArgs = []string{"--allow", disk, "--disk-dest", disk}
	case "files":
		// KA's file-level method: herd recv partitions the disk from the
		// sender's desc, makes the file systems and unpacks the files.
		methodArgs = []string{"--allow", disk, "--files", "--disk", disk}
	}
	sum, err := a.receive(ctx, lease, methodArgs...)
	if errors.Is(err, ErrServerLost) {
		return err // nobody to report to
	}
	bytes := int64(0)
	if sum != nil {
		bytes = sum.Bytes
	}
	var fixups string
	if err == nil {
		fixups, err = a.fixup(ctx, disk, lease)
	}
	rep := httpboot.ReportRequest{MAC: lease.MAC, OK: err == nil, Bytes: bytes, Fixups: fixups}
	if err != nil {
		rep.Error = err.Error()
	}
	if rerr := a.report(ctx, rep); rerr != nil {
		a.say("cannot report to herd server %s: %v", c.Server, rerr)
		if err == nil {
			err = fmt.Errorf("agent: report: %w", rerr)
		}
	}
	if err != nil {
		return err
	}
	a.say("clone verified (%d bytes), rebooting", bytes)
	return nil
}

// fixup does the fix-ups the registration's answer ordered on the
// clone just written to disk; an error wraps ErrFixup.
func (a *Agent) fixup(ctx context.Context, disk string, lease Lease) (string, error) {
	if a.creds == nil {
		return "", nil
	}
	job := FixupJob{Orders: a.creds.Orders(), Name: a.creds.Name, MAC: lease.MAC, IP: lease.IP}
	if job.empty() {
		return "", nil
	}
	if job.Name != "" && !httpboot.ValidHostname(job.Name) {
		return "", fmt.Errorf("%w: machine name %q from the server is not a host name, refused", ErrFixup, job.Name)
	}
	what := fmt.Sprintf("%d hook(s)", len(job.Orders.Hooks))
	if job.Orders.Identity {
		what = fmt.Sprintf("identity (name %q) and %s", job.Name, what)
	}
	a.say("fix-ups of the clone on %s: %s", disk, what)
	done, err := a.Fixup(ctx, disk, job)
	if err != nil {
		a.say("fix-ups failed: %v", err)
		return "", fmt.Errorf("%w: %v", ErrFixup, err)
	}
	a.say("fix-ups done: %s", done)
	return done, nil
}

// join brings the network up and registers. An attempt lasts up to
// Config.Timeout, trying again every RetryDelay within it (a server that
// does not answer, or answers with an error, is asked again until the
// attempt's time is up); after Config.Retries failed attempts it gives
// up. A refusal (ErrRefused) ends it at once.
//
// step is what the agent waits for: state.StepStage2 or "" (the image).
// The agent registers with its agent key, or inside its stage 2 with the
// machine key the first agent left it; the answer gives it the chain
// key and its machine key (a.creds, a.machine).
func (a *Agent) join(ctx context.Context, step string) (Lease, error) {
	c := a.Config
	signer, wantMAC, err := a.signer()
	if err != nil {
		return Lease{}, err
	}
	priv, err := httpboot.NewAnswerKey()
	if err != nil {
		return Lease{}, fmt.Errorf("agent: answer key: %w", err)
	}
	var lease Lease
	var last error
	for i := 1; i <= c.Retries; i++ {
		actx, cancel := context.WithTimeout(ctx, c.Timeout)
		l, err := a.attempt(actx, lease, step, signer, wantMAC, priv)
		cancel()
		if err == nil {
			what := "session " + c.Session
			if step != "" {
				what = "the " + step + " of session " + c.Session
			}
			a.say("registered with %s as %s %s, waiting for %s on port %d", c.Server, l.MAC, l.IP, what, c.Port)
			return l, nil
		}
		if ctx.Err() != nil {
			return Lease{}, ctx.Err()
		}
		if errors.Is(err, ErrRefused) {
			return Lease{}, err
		}
		last = err
		if l.IP == "" {
			a.say("no network, cannot reach herd server %s (attempt %d/%d): %v", c.Server, i, c.Retries, err)
		} else {
			a.say("cannot reach herd server %s (attempt %d/%d): %v", c.Server, i, c.Retries, err)
		}
		lease = l
	}
	return Lease{}, fmt.Errorf("%w %s after %d attempts: %v", ErrUnreachable, c.Server, c.Retries, last)
}

// signer returns what the registration is signed with: the machine key
// the first agent left for the agent of a stage 2 (with the MAC it is
// for), else the agent key from the kernel line.
func (a *Agent) signer() (httpboot.Credential, string, error) {
	if a.Config.Stage2 && a.InStage2() {
		b, err := os.ReadFile(a.Stage2Credentials)
		if err != nil {
			return httpboot.Credential{}, "", fmt.Errorf("%w: this stage 2 holds no machine key from the first agent: %v", ErrRefused, err)
		}
		mac, key, err := ParseCredentials(b)
		if err != nil {
			return httpboot.Credential{}, "", fmt.Errorf("%w: %s: %v", ErrRefused, a.Stage2Credentials, err)
		}
		return httpboot.Credential{Role: httpboot.RoleMachine, Key: key}, mac, nil
	}
	if a.Config.AgentKey == nil {
		return httpboot.Credential{}, "", fmt.Errorf("%w: the boot configuration carries no agent key (herd.agentkey): the server does not know this machine or has not approved it", ErrRefused)
	}
	return httpboot.Credential{Role: httpboot.RoleAgent, Key: a.Config.AgentKey}, "", nil
}

// attempt tries, until ctx ends, to get a lease (unless lease already
// holds one) and register. It returns the lease it has even on failure,
// and at once on a refusal.
func (a *Agent) attempt(ctx context.Context, lease Lease, step string, signer httpboot.Credential, wantMAC string, priv *ecdh.PrivateKey) (Lease, error) {
	c := a.Config
	// telling is the last error that says something about the server
	// (a refused or forged answer): a call cut short by ctx's end says
	// only that time ran out, and must not hide it.
	var telling error
	for {
		var err error
		if lease.IP == "" {
			var l Lease
			if l, err = a.NetUp(ctx); err == nil {
				lease = l
				a.say("network up: %s %s %s", l.Interface, l.MAC, l.IP)
			}
		}
		if lease.IP != "" {
			if wantMAC != "" && lease.MAC != wantMAC {
				return lease, fmt.Errorf("%w: the machine key the first agent left is for %s, this is %s", ErrRefused, wantMAC, lease.MAC)
			}
			reg := httpboot.RegisterRequest{MAC: lease.MAC, IP: lease.IP, Port: c.Port, Session: c.Session, Step: step, Pub: httpboot.EncodeAnswerKey(priv.PublicKey())}
			rctx, cancel := context.WithTimeout(ctx, c.Timeout)
			var creds httpboot.Credentials
			creds, err = a.client.Register(rctx, reg, signer, priv)
			cancel()
			if err == nil {
				a.creds = &creds
				a.machine = httpboot.Credential{Role: httpboot.RoleMachine, Key: creds.MachineKey}
				return lease, nil
			}
			if errors.Is(err, ErrRefused) {
				return lease, err
			}
		}
		if err != nil && ctx.Err() == nil {
			telling = err
		}
		select {
		case <-ctx.Done():
			if telling != nil {
				return lease, telling
			}
			return lease, err
		case <-time.After(a.RetryDelay):
		}
	}
}

// ReportLogLines is how much of the kernel log a failure's report
// carries.
const ReportLogLines = 30

// report sends rep signed with the machine key, with the agent's log
// (and with a failure the kernel log's tail) cut to fit the API's body
// limit.
func (a *Agent) report(ctx context.Context, rep httpboot.ReportRequest) error {
	if !rep.OK && rep.Log == nil {
		rep.Log = a.KernelLog(ReportLogLines)
	}
	if rep.AgentLog == nil && a.log != nil {
		rep.AgentLog = a.log.Lines()
	}
	rep = FitReport(rep, httpboot.MaxBody-1024)
	rctx, cancel := context.WithTimeout(ctx, a.Config.Timeout)
	defer cancel()
	return a.client.Report(rctx, rep, a.machine)
}

// ChainKeyFile is the name, under Agent.TempDir, of the file holding the
// chain key while herd recv runs (mode 0600, removed afterwards).
const ChainKeyFile = "herd-chain.key"

// confined reports whether herd recv's arguments say where it may write.
func confined(args []string) bool {
	for i, a := range args {
		if (a == "--allow" || a == "--root") && i+1 < len(args) && args[i+1] != "" {
			return true
		}
	}
	return false
}

// writePrivate writes b to a new file path readable by its owner only;
// whatever was at path (a file, a link) is removed first and never
// followed.
func writePrivate(path string, b []byte) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
	}
	return werr
}

// receive runs herd recv with the chain key from the registration
// (--key-file, a 0600 file in TempDir) and extra, which must say where it
// may write (--allow or --root), and reads its summary line. While herd
// recv waits, a watchdog checks that the server is still there (see
// WatchInterval); if it is gone, herd recv is stopped and receive
// returns ErrServerLost.
func (a *Agent) receive(ctx context.Context, lease Lease, extra ...string) (*Summary, error) {
	c := a.Config
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan error, 1)
	watchDone := make(chan struct{})
	defer func() { <-watchDone }()
	defer cancel()
	go func() {
		defer close(watchDone)
		if err := a.watch(ctx, lease); err != nil {
			lost <- err
			cancel()
		}
	}()
	if a.creds == nil || len(a.creds.ChainKey) == 0 {
		return nil, fmt.Errorf("agent: no chain key from the server: herd recv never runs without one")
	}
	if !confined(extra) {
		return nil, fmt.Errorf("agent: herd recv needs --allow or --root (got %q)", extra)
	}
	kf := filepath.Join(a.TempDir, ChainKeyFile)
	if err := writePrivate(kf, a.creds.ChainKey); err != nil {
		return nil, fmt.Errorf("agent: write the chain key file: %w", err)
	}
	defer os.Remove(kf)
	args := append([]string{"recv", "--listen", ":" + strconv.Itoa(c.Port), "--json", "--key-file", kf}, extra...)
	cmd := a.RecvCommand(ctx, args)
	// herd recv's messages go to the console and the agent's log; the
	// files method's closing line names the root file system.
	a.filesRoot = ""
	cmd.Stderr = io.MultiWriter(a.Console, a.log, &lineWatcher{fn: func(l string) {
		if u := ParseFilesRoot(l); u != "" {
			a.filesRoot = u
		}
	}})
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("agent: recv: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("agent: start recv: %w", err)
	}
	var sum *Summary
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if s, ok := ParseSummary(sc.Bytes()); ok {
			sum = s
		}
	}
	io.Copy(io.Discard, out)
	werr := cmd.Wait()
	select {
	case err := <-lost:
		return nil, err
	default:
	}
	switch {
	case sum == nil && werr != nil:
		return nil, fmt.Errorf("%w: herd recv: %v (no summary)", ErrCloneFailed, werr)
	case sum == nil:
		return nil, fmt.Errorf("%w: herd recv printed no summary", ErrCloneFailed)
	case !sum.OK:
		return sum, fmt.Errorf("%w: %s", ErrCloneFailed, orDefault(sum.Error, "not verified"))
	case werr != nil:
		return sum, fmt.Errorf("%w: herd recv: %v", ErrCloneFailed, werr)
	}
	return sum, nil
}

// watch polls the server every WatchInterval until ctx ends. It returns
// ErrServerLost once the server has failed to confirm that it knows this
// machine for Config.Timeout while no session connection is open, and
// nil when ctx ends first.
func (a *Agent) watch(ctx context.Context, lease Lease) error {
	c := a.Config
	var since time.Time // first failure of the current run of failures
	var last error
	tick := time.NewTicker(a.WatchInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		err := a.checkKnown(ctx, lease.MAC)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil || a.SessionActive(c.Port) {
			since, last = time.Time{}, nil
			continue
		}
		if since.IsZero() {
			since = time.Now()
			a.say("herd server %s does not answer while waiting for session %s: %v", c.Server, c.Session, err)
		}
		last = err
		if time.Since(since) >= c.Timeout {
			a.say("no answer from herd server %s for %v and no session started", c.Server, c.Timeout.Round(time.Second))
			return fmt.Errorf("%w: %s: %v", ErrServerLost, c.Server, last)
		}
	}
}

// checkKnown asks the server whether it still knows mac.
func (a *Agent) checkKnown(ctx context.Context, mac string) error {
	rctx, cancel := context.WithTimeout(ctx, a.WatchInterval)
	defer cancel()
	return a.client.Known(rctx, mac, a.machine)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// ParseSummary reads one line of herd recv --json output and returns the
// summary it holds, or false when the line is not a summary event.
func ParseSummary(line []byte) (*Summary, bool) {
	ev, err := report.Parse(line)
	if err != nil || !ev.IsSummary() {
		return nil, false
	}
	return &Summary{OK: *ev.OK, Bytes: ev.Bytes, Error: ev.Failed()}, true
}

func (a *Agent) defaults() {
	if a.Console == nil {
		a.Console = io.Discard
	}
	a.Console = syncio.NewWriter(a.Console)
	a.log = newTailBuffer(AgentLogLines, AgentLogLine)
	if a.Fixup == nil {
		a.Fixup = a.fixupDisk
	}
	if a.Drivers == nil {
		a.Drivers = func(ctx context.Context) error { return LoadDrivers(ctx, ModuleIndex, a.Console) }
	}
	if a.FindDisk == nil {
		a.FindDisk = func(ctx context.Context, rule string) (disksel.Disk, error) {
			return FindDisk(ctx, rule, 20*time.Second)
		}
	}
	if a.NetUp == nil {
		a.NetUp = func(ctx context.Context) (Lease, error) { return NetUp(ctx, a.Config.BootMAC, a.Console) }
	}
	if a.KernelLog == nil {
		a.KernelLog = KernelLog
	}
	if a.RecvCommand == nil {
		a.RecvCommand = func(ctx context.Context, args []string) *exec.Cmd {
			self, err := os.Executable()
			if err != nil {
				self = "/bin/herd"
			}
			return exec.CommandContext(ctx, self, args...)
		}
	}
	if a.HTTP == nil {
		a.HTTP = &http.Client{Timeout: a.Config.Timeout}
	}
	a.client = &Client{Server: a.Config.Server, HTTP: a.HTTP, Say: a.say}
	if a.Reboot == nil {
		a.Reboot = Reboot
	}
	if a.WatchInterval <= 0 {
		a.WatchInterval = 5 * time.Second
	}
	if a.SessionActive == nil {
		a.SessionActive = SessionActive
	}
	if a.RetryDelay == 0 {
		a.RetryDelay = 2 * time.Second
	}
	if a.TempDir == "" {
		a.TempDir = os.TempDir()
		os.MkdirAll(a.TempDir, 0o1777) // a stage 2 may come without /tmp
	}
	if a.Stage2Root == "" {
		a.Stage2Root = Stage2Root
	}
	if a.InStage2 == nil {
		a.InStage2 = func() bool { _, err := os.Stat(Stage2Marker); return err == nil }
	}
	if a.MountStage2 == nil {
		a.MountStage2 = MountTmpfs
	}
	if a.SwitchRoot == nil {
		a.SwitchRoot = SwitchRoot
	}
	if a.Config.Retries < 1 {
		a.Config.Retries = 1
	}
	if a.Config.Timeout <= 0 {
		a.Config.Timeout = DefaultTimeout
	}
	if a.RefusedWait <= 0 {
		a.RefusedWait = a.Config.Timeout * time.Duration(a.Config.Retries)
	}
	if a.Stage2Credentials == "" {
		a.Stage2Credentials = Stage2CredentialsFile
	}
}
