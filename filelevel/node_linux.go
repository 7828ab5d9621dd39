package filelevel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/desc"
	"github.com/herd-cluster/herd/ring"
)

// ErrNotPrepared is returned by a filesystem item's sink when the disk
// could not be partitioned and formatted (the header item failed).
var ErrNotPrepared = errors.New("filelevel: disk not prepared")

// ReceiverOptions configure a node's side of a file-level session.
type ReceiverOptions struct {
	// Disk is the whole disk (or image file) to partition. Required.
	Disk string
	// Staging is the directory the new filesystems are mounted under
	// while they are filled; "" makes a temporary one (removed after).
	Staging string
	// Hooks are scripts run one after the other, after the fix-ups, in
	// a chroot of the new system (with /proc, /sys and /dev bound in),
	// like KA regenerating modprobe.conf; the new system must hold the
	// script's interpreter. HERD_DISK names the disk in their
	// environment. A failing hook fails the node.
	Hooks []string
	// NoBootloader skips installing extlinux even when the desc marks a
	// boot partition.
	NoBootloader bool
	// MBRCode is the boot code written to the first 440 bytes of the
	// disk when extlinux is installed; "" means Debian's
	// /usr/lib/EXTLINUX/mbr.bin (gptmbr.bin for a GPT table).
	MBRCode string
	// NoVerify skips checking the unpacked files against the golden's
	// digest list (when the sender sends one).
	NoVerify bool
	// DropCache makes the check read every file back from the disk: its
	// pages are dropped from the page cache first.
	DropCache bool
	// Log receives one line per step; nil discards.
	Log io.Writer
}

// Result is what a node did, for its report.
type Result struct {
	Plan       *desc.Plan // the desc laid out for this disk
	FS         []NewFS    // filesystems made, in disk order
	Changes    []Change   // fix-ups made to files of the new system
	Bootloader string     // where extlinux was installed, "" if not
	Hooks      []string   // hooks that ran
	Verified   int        // files checked against the golden's digests
	FromDisk   bool       // the check read the files back from the disk
	Done       bool       // every step finished and everything is unmounted
}

// Receiver is a node's side of a file-level session. Give its Open to
// ring.ReceiverConfig and call Close once ring.Receive has returned.
//
// Items: the first is the Header; when it is synced the Receiver lays
// the desc out for its disk (fill stretches), writes the table, makes
// the filesystems and mounts them under a staging directory. Each later
// item is a tar stream unpacked into its mount point. When the last one
// is synced: fstab and boot configuration are pointed at the new
// filesystems, extlinux is installed when the desc marks a boot
// partition, hooks run, and everything is unmounted. Any error fails
// this node only (ring reports it upstream and keeps forwarding).
type Receiver struct {
	ctx context.Context
	o   ReceiverOptions

	mu       sync.Mutex
	dests    []string // Dest of every item, in order
	prepErr  error
	ready    bool
	staging  string
	tmpStage bool
	mounts   []string // mounted directories, in mount order
	res      Result
	closed   bool
}

// NewReceiver checks the disk and returns a Receiver. ctx bounds the
// external tools (mkfs, extlinux, hooks) it runs.
func NewReceiver(ctx context.Context, o ReceiverOptions) (*Receiver, error) {
	if o.Disk == "" {
		return nil, errors.New("filelevel: no disk given")
	}
	if _, _, err := desc.DeviceSize(o.Disk); err != nil {
		return nil, fmt.Errorf("disk %s: %w", o.Disk, err)
	}
	if err := desc.CheckNotInUse(o.Disk); err != nil {
		return nil, err
	}
	for _, h := range o.Hooks {
		if st, err := os.Stat(h); err != nil {
			return nil, fmt.Errorf("hook: %w", err)
		} else if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("hook %s is not a regular file", h)
		}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return &Receiver{ctx: ctx, o: o}, nil
}

func (r *Receiver) logf(format string, args ...any) {
	fmt.Fprintf(r.o.Log, format+"\n", args...)
}

// Open returns the sink of the next item of the session (ring calls it
// for every item, in order, when the manifest arrives).
func (r *Receiver) Open(it ring.Item) (ring.Sink, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := len(r.dests)
	r.dests = append(r.dests, it.Dest)
	if idx == 0 {
		if it.Name != HeaderItemName {
			return nil, fmt.Errorf("%w: first item is %q, not a file-level header (is the sender running herd send --files?)", ErrHeader, it.Name)
		}
		return &headerSink{r: r}, nil
	}
	if it.Name == VerifyItemName {
		return &verifySink{r: r}, nil
	}
	return &fsSink{r: r, idx: idx}, nil
}

// Result returns what the node did so far.
func (r *Receiver) Result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.res
}

// headerSink collects the header item and prepares the disk on Sync.
type headerSink struct {
	r   *Receiver
	buf []byte
}

func (s *headerSink) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if end > maxHeader {
		return 0, fmt.Errorf("%w: larger than %d bytes", ErrHeader, maxHeader)
	}
	if int64(len(s.buf)) < end {
		s.buf = append(s.buf, make([]byte, int(end)-len(s.buf))...)
	}
	copy(s.buf[off:], p)
	return len(p), nil
}

func (s *headerSink) Sync() error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	err := s.r.prepare(s.buf)
	if err != nil {
		s.r.prepErr = err
		return err
	}
	if len(s.r.dests) == 1 { // a desc without filesystems to fill
		return s.r.finish()
	}
	return nil
}

func (s *headerSink) Close() error { return nil }

// prepare lays out, partitions, formats and mounts. Called with r.mu held.
func (r *Receiver) prepare(b []byte) error {
	h, d, err := DecodeHeader(b)
	if err != nil {
		return err
	}
	if !slices.Equal(r.dests, h.Dests()) {
		return fmt.Errorf("%w: the items go to %v but the header lists %v", ErrHeader, r.dests, h.Dests())
	}
	size, ss, err := desc.DeviceSize(r.o.Disk)
	if err != nil {
		return fmt.Errorf("disk %s: %w", r.o.Disk, err)
	}
	if ss == 0 {
		ss = 512
	}
	plan, err := d.Layout(size, ss)
	if err != nil {
		return fmt.Errorf("lay out the desc for %s (%d bytes): %w", r.o.Disk, size, err)
	}
	for i := range plan.Parts {
		pp := &plan.Parts[i]
		if pp.UUID == "" && desc.MkfsCommand(*pp, "") != nil {
			if pp.UUID, err = newUUID(pp.FS); err != nil {
				return err
			}
		}
	}
	r.res.Plan = plan
	r.logf("layout for %d bytes:\n%s", size, strings.TrimRight(plan.String(), "\n"))
	if err := desc.Apply(r.ctx, plan, r.o.Disk, desc.WithLog(r.o.Log)); err != nil {
		return fmt.Errorf("apply the desc to %s: %w", r.o.Disk, err)
	}
	for _, pp := range plan.Parts {
		if desc.MkfsCommand(pp, "") == nil {
			continue
		}
		m := ""
		if pp.FS != "swap" && pp.Mount != "" {
			m = path.Clean("/" + pp.Mount)
		}
		r.res.FS = append(r.res.FS, NewFS{Mount: m, FS: pp.FS, UUID: pp.UUID, Label: pp.Label, Name: pp.Name})
	}
	if r.o.Staging != "" {
		if err := os.MkdirAll(r.o.Staging, 0o700); err != nil {
			return fmt.Errorf("staging directory: %w", err)
		}
		r.staging = r.o.Staging
	} else {
		if r.staging, err = os.MkdirTemp("", "herd-files-"); err != nil {
			return fmt.Errorf("staging directory: %w", err)
		}
		r.tmpStage = true
	}
	for _, m := range MountOrder(d) {
		if err := r.mount(plan, m); err != nil {
			return err
		}
	}
	r.ready = true
	return nil
}

// mount mounts the filesystem of plan whose mount point is m.
func (r *Receiver) mount(plan *desc.Plan, m string) error {
	var pp *desc.PlannedPart
	for i := range plan.Parts {
		if p := plan.Parts[i]; p.Mount != "" && path.Clean("/"+p.Mount) == m {
			pp = &plan.Parts[i]
		}
	}
	if pp == nil {
		return fmt.Errorf("no partition for mount point %s", m)
	}
	dir := filepath.Join(r.staging, m)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mount point %s: %w", m, err)
	}
	lf, err := attachLoop(r.o.Disk, pp.Offset(plan.SectorSize), pp.Bytes(plan.SectorSize))
	if err != nil {
		return fmt.Errorf("partition %d: %w", pp.Index, err)
	}
	defer lf.Close() // the mount keeps it; autoclear detaches it at umount
	data := ""
	if pp.FS == "vfat" {
		// vfat cannot hold owners and most modes: make chown and chmod
		// of the unpacked files succeed without effect, as on the golden.
		data = "quiet"
	}
	err = unix.Mount(lf.Name(), dir, pp.FS, 0, data)
	if errors.Is(err, unix.ENODEV) {
		// The filesystem's module is not loaded: load it and retry.
		_ = exec.CommandContext(r.ctx, "modprobe", pp.FS).Run()
		err = unix.Mount(lf.Name(), dir, pp.FS, 0, data)
		if errors.Is(err, unix.ENODEV) {
			err = fmt.Errorf("%w: this kernel cannot mount %s (modprobe %s failed)", err, pp.FS, pp.FS)
		}
	}
	if err != nil {
		return fmt.Errorf("mount partition %d (%s on %s) at %s: %w", pp.Index, pp.FS, lf.Name(), dir, err)
	}
	r.mounts = append(r.mounts, dir)
	r.logf("partition %d (%s %s) mounted for %s", pp.Index, pp.FS, pp.UUID, m)
	return nil
}

// fsSink unpacks one filesystem's tar stream; its CookSink is opened
// on the first write, once the disk is prepared.
type fsSink struct {
	r     *Receiver
	idx   int
	inner ring.Sink
}

func (s *fsSink) open() error {
	if s.inner != nil {
		return nil
	}
	s.r.mu.Lock()
	ready, perr, dest := s.r.ready, s.r.prepErr, s.r.dests[s.idx]
	dir := filepath.Join(s.r.staging, dest)
	s.r.mu.Unlock()
	if !ready {
		if perr != nil {
			return fmt.Errorf("%w: %v", ErrNotPrepared, perr)
		}
		return ErrNotPrepared
	}
	// The tree is an operating system unpacked onto filesystems this
	// receiver made itself: its device nodes, setuid programs, owners and
	// capabilities are the point (Special).
	inner, err := blockdev.OpenCookSink(s.r.ctx, "filesystem.tar", dir, -1, blockdev.SinkOptions{Special: true})
	if err != nil {
		return fmt.Errorf("unpack %s: %w", dest, err)
	}
	s.inner = inner
	return nil
}

func (s *fsSink) WriteAt(p []byte, off int64) (int, error) {
	if err := s.open(); err != nil {
		return 0, err
	}
	return s.inner.WriteAt(p, off)
}

func (s *fsSink) Sync() error {
	if err := s.open(); err != nil {
		return err
	}
	if err := s.inner.Sync(); err != nil {
		return err
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.logf("unpacked %s", s.r.dests[s.idx])
	if s.idx == len(s.r.dests)-1 {
		return s.r.finish()
	}
	return nil
}

func (s *fsSink) Close() error {
	if s.inner == nil {
		return nil
	}
	return s.inner.Close()
}

// verifySink checks every file of the digest list as its line arrives
// (the file streams have all been unpacked by then), and finishes the
// node on Sync.
type verifySink struct {
	r       *Receiver
	root    *os.Root
	next    int64
	partial []byte
	checked int
	bad     []string
	nbad    int
}

func (s *verifySink) WriteAt(p []byte, off int64) (int, error) {
	if off != s.next {
		return 0, fmt.Errorf("filelevel: digest list written at %d, expected %d", off, s.next)
	}
	s.next += int64(len(p))
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		if err := s.line(string(s.partial[:i])); err != nil {
			return 0, err
		}
		s.partial = s.partial[i+1:]
	}
	if len(s.partial) > 64<<10 {
		return 0, fmt.Errorf("%w: a line longer than 64 KiB", ErrSumLine)
	}
	return len(p), nil
}

// line checks one file of the digest list.
func (s *verifySink) line(l string) error {
	fs, err := ParseFileSum(l)
	if err != nil {
		return err
	}
	if s.r.o.NoVerify {
		return nil
	}
	if s.root == nil {
		s.r.mu.Lock()
		ready, staging := s.r.ready, s.r.staging
		s.r.mu.Unlock()
		if !ready {
			return ErrNotPrepared
		}
		if s.root, err = os.OpenRoot(staging); err != nil {
			return err
		}
	}
	if msg := checkFile(s.root, fs, s.r.o.DropCache); msg != "" {
		s.nbad++
		if len(s.bad) < 5 {
			s.bad = append(s.bad, msg)
		}
	}
	s.checked++
	return nil
}

// checkFile compares one unpacked file with its golden digest and
// returns what differs ("" when it is the same).
func checkFile(root *os.Root, fs FileSum, dropCache bool) string {
	name := path.Join(strings.TrimPrefix(fs.Mount, "/"), fs.Path)
	if name == "" {
		name = "."
	}
	shown := path.Join(fs.Mount, fs.Path)
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Sprintf("%s: %v", shown, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return fmt.Sprintf("%s: not a regular file", shown)
	}
	if st.Size() != fs.Size {
		return fmt.Sprintf("%s: %d bytes, the golden has %d", shown, st.Size(), fs.Size)
	}
	if dropCache {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	h := blake3.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Sprintf("%s: read back: %v", shown, err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	if sum != fs.Sum {
		return fmt.Sprintf("%s: contents differ from the golden", shown)
	}
	return ""
}

func (s *verifySink) Sync() error {
	if len(s.partial) > 0 {
		return fmt.Errorf("%w: the list ends in the middle of a line", ErrSumLine)
	}
	if s.root != nil {
		s.root.Close()
		s.root = nil
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if !s.r.ready {
		return ErrNotPrepared
	}
	if s.nbad > 0 {
		return fmt.Errorf("filelevel: verify: %d of %d files differ from the golden: %s", s.nbad, s.checked, strings.Join(s.bad, "; "))
	}
	s.r.res.Verified, s.r.res.FromDisk = s.checked, s.r.o.DropCache && !s.r.o.NoVerify
	if !s.r.o.NoVerify {
		how := "from the page cache"
		if s.r.o.DropCache {
			how = "read back from the disk"
		}
		s.r.logf("verified %d files against the golden's digests (%s)", s.checked, how)
	}
	return s.r.finish()
}

func (s *verifySink) Close() error {
	if s.root != nil {
		s.root.Close()
	}
	return nil
}

// finish runs the fix-ups, the boot loader and the hooks, then unmounts.
// Called with r.mu held.
func (r *Receiver) finish() error {
	if err := r.fixups(); err != nil {
		return err
	}
	if err := r.bootloader(); err != nil {
		return err
	}
	for _, h := range r.o.Hooks {
		if err := r.runHook(h); err != nil {
			return err
		}
		r.res.Hooks = append(r.res.Hooks, h)
	}
	if err := r.unmountAll(); err != nil {
		return err
	}
	r.res.Done = true
	return nil
}

// rootFS returns the new filesystem mounted at "/", if any.
func (r *Receiver) rootFS() (NewFS, bool) {
	for _, f := range r.res.FS {
		if f.Mount == "/" {
			return f, true
		}
	}
	return NewFS{}, false
}

// bootConfigs are where boot loader configurations are looked for in
// the new system.
var bootConfigs = []string{
	"boot/extlinux/extlinux.conf", "boot/extlinux.conf", "extlinux/extlinux.conf", "extlinux.conf",
	"boot/syslinux/syslinux.cfg", "syslinux/syslinux.cfg", "boot/grub/grub.cfg",
}

// fixups rewrites /etc/fstab and the boot configurations of the new
// system (only when its root filesystem is part of the desc).
func (r *Receiver) fixups() error {
	rootFS, ok := r.rootFS()
	if !ok {
		r.logf("no / filesystem in the desc: fstab and boot configuration left as they are")
		return nil
	}
	root, err := os.OpenRoot(r.staging)
	if err != nil {
		return err
	}
	defer root.Close()
	uuids := map[string]string{}
	if b, err := root.ReadFile("etc/fstab"); err == nil {
		nb, ch, specs, err := RewriteFstab(b, r.res.FS)
		if err != nil {
			return fmt.Errorf("new system's /etc/fstab: %w", err)
		}
		if err := writeKeepMode(root, "etc/fstab", nb); err != nil {
			return err
		}
		r.res.Changes = append(r.res.Changes, ch...)
		for o, n := range specs {
			ou, ok1 := strings.CutPrefix(o, "UUID=")
			nu, ok2 := strings.CutPrefix(n, "UUID=")
			if ok1 && ok2 {
				uuids[ou] = nu
			}
		}
	} else if errors.Is(err, os.ErrNotExist) {
		r.logf("the new system has no /etc/fstab")
	} else {
		return fmt.Errorf("read the new system's /etc/fstab: %w", err)
	}
	resume := ""
	for _, f := range r.res.FS {
		if f.FS == "swap" {
			resume = "UUID=" + f.UUID
			break
		}
	}
	for _, c := range bootConfigs {
		b, err := root.ReadFile(c)
		if err != nil {
			continue
		}
		nb, ch := RewriteBootConfig("/"+c, b, "UUID="+rootFS.UUID, resume, uuids)
		if len(ch) == 0 {
			continue
		}
		if err := writeKeepMode(root, c, nb); err != nil {
			return err
		}
		r.res.Changes = append(r.res.Changes, ch...)
	}
	for _, c := range r.res.Changes {
		r.logf("fix-up: %s", c)
	}
	return nil
}

// writeKeepMode replaces the contents of name under root, keeping its
// mode and owner.
func writeKeepMode(root *os.Root, name string, b []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", name, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("rewrite %s: %w", name, err)
	}
	return f.Close()
}

// bootloader installs extlinux into the new system when the desc marks
// a boot partition holding an extlinux configuration.
func (r *Receiver) bootloader() error {
	var boot *desc.PlannedPart
	for i, pp := range r.res.Plan.Parts {
		if pp.Boot {
			boot = &r.res.Plan.Parts[i]
		}
	}
	if boot == nil || r.o.NoBootloader {
		return nil
	}
	if boot.FS == "swap" || boot.Mount == "" {
		r.logf("boot partition %d is not mounted for the copy: boot loader not installed", boot.Index)
		return nil
	}
	bm := path.Clean("/" + boot.Mount)
	var conf string
	for _, c := range bootConfigs[:6] {
		g := path.Join("/", c)
		if holding := parentMount(path.Dir(g), mountSet(r.res.FS)); holding != bm {
			continue
		}
		if st, err := os.Lstat(filepath.Join(r.staging, g)); err == nil && st.Mode().IsRegular() {
			conf = g
			break
		}
	}
	if conf == "" {
		r.logf("no extlinux.conf or syslinux.cfg on the boot partition (%s): boot loader not installed (use a hook for grub)", bm)
		return nil
	}
	dir := filepath.Join(r.staging, path.Dir(conf))
	if _, err := exec.LookPath("extlinux"); err != nil {
		return fmt.Errorf("install the boot loader for %s: extlinux is not installed on this node (Debian package extlinux)", conf)
	}
	if out, err := exec.CommandContext(r.ctx, "extlinux", "--install", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("extlinux --install %s: %w: %s", path.Dir(conf), err, lastLine(out))
	}
	code := r.o.MBRCode
	if code == "" {
		code = "/usr/lib/EXTLINUX/mbr.bin"
		if r.res.Plan.Table == desc.GPT {
			code = "/usr/lib/EXTLINUX/gptmbr.bin"
		}
	}
	b, err := os.ReadFile(code)
	if err != nil {
		return fmt.Errorf("boot code: %w (Debian package syslinux-common)", err)
	}
	if len(b) > 440 {
		b = b[:440]
	}
	f, err := os.OpenFile(r.o.Disk, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write boot code: %w", err)
	}
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write boot code to %s: %w", r.o.Disk, err)
	}
	r.res.Bootloader = path.Dir(conf)
	r.logf("extlinux installed in %s, boot code %s written to %s", path.Dir(conf), code, r.o.Disk)
	return nil
}

func mountSet(fss []NewFS) map[string]bool {
	m := map[string]bool{}
	for _, f := range fss {
		if f.Mount != "" {
			m[f.Mount] = true
		}
	}
	return m
}

// runHook runs one hook script in a chroot of the new system.
func (r *Receiver) runHook(hook string) (err error) {
	if _, ok := r.rootFS(); !ok {
		return fmt.Errorf("hook %s: the desc has no / filesystem to chroot into", hook)
	}
	script, err := os.ReadFile(hook)
	if err != nil {
		return fmt.Errorf("hook: %w", err)
	}
	name := fmt.Sprintf("herd-hook-%d", os.Getpid())
	root, err := os.OpenRoot(r.staging)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.WriteFile(name, script, 0o700); err != nil {
		return fmt.Errorf("hook %s: copy into the new system: %w", hook, err)
	}
	defer root.Remove(name)
	var binds, made []string
	defer func() {
		for i := len(binds) - 1; i >= 0; i-- {
			if uerr := unix.Unmount(binds[i], unix.MNT_DETACH); uerr != nil && err == nil {
				err = fmt.Errorf("hook %s: unmount %s: %w", hook, binds[i], uerr)
			}
		}
		for _, d := range made { // leave the tree as it came
			_ = root.Remove(d)
		}
	}()
	for _, d := range []string{"proc", "sys", "dev"} {
		if _, err := root.Lstat(d); errors.Is(err, os.ErrNotExist) {
			if err := root.Mkdir(d, 0o755); err != nil {
				return fmt.Errorf("hook %s: /%s in the new system: %w", hook, d, err)
			}
			made = append(made, d)
		}
		target := filepath.Join(r.staging, d)
		if st, err := os.Lstat(target); err != nil || !st.IsDir() {
			return fmt.Errorf("hook %s: /%s in the new system is not a directory", hook, d)
		}
		if err := unix.Mount("/"+d, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("hook %s: bind /%s: %w", hook, d, err)
		}
		binds = append(binds, target)
	}
	cmd := exec.CommandContext(r.ctx, "chroot", r.staging, "/"+name)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HERD_DISK=" + r.o.Disk, "HERD_HOOK=" + filepath.Base(hook)}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l != "" {
			r.logf("hook %s: %s", filepath.Base(hook), l)
		}
	}
	if err != nil {
		return fmt.Errorf("hook %s in a chroot of the new system: %w: %s", hook, err, lastLine(out))
	}
	r.logf("hook %s ran", hook)
	return nil
}

func lastLine(out []byte) string {
	s := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// unmountAll unmounts the new filesystems, deepest first, and removes a
// temporary staging directory. Called with r.mu held.
func (r *Receiver) unmountAll() error {
	var errs []error
	for i := len(r.mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(r.mounts[i], 0); err != nil {
			r.logf("unmount %s: %v; detaching it lazily", r.mounts[i], err)
			if err2 := unix.Unmount(r.mounts[i], unix.MNT_DETACH); err2 != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", r.mounts[i], err))
			}
		}
	}
	r.mounts = nil
	if r.tmpStage && r.staging != "" {
		if err := os.RemoveAll(r.staging); err != nil {
			errs = append(errs, err)
		}
		r.tmpStage = false
	}
	if len(errs) == 0 {
		unix.Sync()
	}
	return errors.Join(errs...)
}

// Close unmounts whatever is still mounted (after a failure) and
// removes the temporary staging directory. Safe to call more than once.
func (r *Receiver) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	return r.unmountAll()
}

// newUUID returns a random filesystem id: a version-4 UUID, or for vfat
// a volume id (XXXX-XXXX).
func newUUID(fs string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random UUID: %w", err)
	}
	if fs == "vfat" {
		return fmt.Sprintf("%02X%02X-%02X%02X", b[0], b[1], b[2], b[3]), nil
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
