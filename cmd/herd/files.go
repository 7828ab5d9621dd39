package main

// The file-level method (KA) in herd send and herd recv: flags and the
// glue between the commands and package filelevel.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/pflag"

	"github.com/herd-cluster/herd/filelevel"
	"github.com/herd-cluster/herd/ring"
)

// filesSendOptions are herd send's flags for the file-level method.
type filesSendOptions struct {
	enabled   bool
	desc      string
	from      string
	excludes  []string
	keepUUIDs bool
	noDigests bool
}

func addFilesSendFlags(f *pflag.FlagSet, o *filesSendOptions) {
	f.BoolVar(&o.enabled, "files", false, "file-level method (KA): send the files of the golden system's filesystems; every node partitions its disk from --desc, makes the filesystems and unpacks (use with --desc, --from, --to)")
	f.StringVar(&o.desc, "desc", "", "with --files: partition description of the golden disk (mount=/ etc. say which filesystem is which; see herd desc)")
	f.StringVar(&o.from, "from", "/", "with --files: where the golden system's filesystems are mounted")
	f.StringArrayVarP(&o.excludes, "exclude", "x", nil, "with --files: path of the golden system not to send (repeatable; globs allowed); a directory arrives empty, like ka-d.sh -x /tmp")
	f.BoolVar(&o.noDigests, "no-digests", false, "with --files: do not send the BLAKE3 digest of every golden file (nodes then check the stream digests only, not their unpacked files); hashing costs CPU on the golden node")
	f.BoolVar(&o.keepUUIDs, "keep-uuids", false, "with --files: give each new filesystem the UUID the golden /etc/fstab names for it, so fstab and boot configuration stay as they are")
}

// buildFilesSession checks the file-level flags of herd send and returns
// its clients; the items come from filesItems.
func buildFilesSession(o sendOptions) (*session, error) {
	switch {
	case o.config != "" || o.in != "" || o.out != "" || o.cook:
		return nil, usagef("--files sends the golden system's files: use --desc, --from and --to, not -f, --in, --out or --cook")
	case o.files.desc == "":
		return nil, usagef("--files needs --desc DESC: the partition description every node lays out for its disk")
	case o.to == "":
		return nil, usagef("--to is required: the clients in chain order")
	}
	s := &session{}
	clients, err := parseTo(o.to)
	if err != nil {
		return nil, err
	}
	s.clients = clients
	return s, nil
}

// filesItems reads the desc, checks the golden tree and returns the
// session's items (a header, then one tar stream per filesystem) and
// their statistics, filled as each stream ends. With report set, a line
// per filesystem is printed when its stream ends.
func filesItems(ctx context.Context, o filesSendOptions, stderr io.Writer, report bool) ([]ring.SendItem, []sourceStats, error) {
	text, err := os.ReadFile(o.desc)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("read desc: %w", err)}
	}
	log := loggerFrom(ctx, stderr)
	s, err := filelevel.NewSender(ctx, string(text), filelevel.SendOptions{
		From: o.from, Excludes: o.excludes, KeepUUIDs: o.keepUUIDs, NoVerify: o.noDigests,
		Logf: printfAt(log, slog.LevelInfo),
	})
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("%s: %w", o.desc, err)}
	}
	items := s.Items()
	stats := make([]sourceStats, len(items))
	stats[0] = sourceStats{Item: items[0].Name, Method: "header"}
	if report {
		log.Info(fmt.Sprintf("file-level copy of %s (%s) from %s", o.desc, strings.Join(s.Header.Mounts, " "), o.from))
	}
	for i := range items[1:] {
		it, st := &items[i+1], &stats[i+1]
		open, m := it.Open, it.Dest
		st.Item, st.Method = it.Name, "files"
		it.Open = func() (ring.Source, error) {
			src, err := open()
			if err != nil {
				return nil, err
			}
			return &reportSource{Source: src, wire: &st.WireBytes, done: func() {
				ts := s.Stats()[m]
				st.UsedBytes, st.DeviceBytes = ts.Bytes, ts.Bytes+ts.SparseHoles
				if report {
					log.Info(fmt.Sprintf("%s: %d files, %d dirs, %d links, %d symlinks, %s of data (%s of holes not sent), %d excluded, %d mount points sent empty",
						m, ts.Files, ts.Dirs, ts.Links, ts.Symlinks, humanBytes(ts.Bytes), humanBytes(ts.SparseHoles), ts.Excluded, ts.Skipped))
				}
			}}, nil
		}
	}
	return items, stats, nil
}

// reportSource counts the bytes of its source and calls done after it
// is closed.
type reportSource struct {
	ring.Source
	wire *int64
	done func()
}

func (r *reportSource) ReadChunk(p []byte) (int64, int, error) {
	off, n, err := r.Source.ReadChunk(p)
	atomic.AddInt64(r.wire, int64(n))
	return off, n, err
}

func (r *reportSource) Close() error {
	err := r.Source.Close()
	r.done()
	return err
}

// filesRecvOptions are herd recv's flags for the file-level method.
type filesRecvOptions struct {
	enabled      bool
	disk         string
	hooks        []string
	staging      string
	noBootloader bool
}

func addFilesRecvFlags(f *pflag.FlagSet, o *filesRecvOptions) {
	f.BoolVar(&o.enabled, "files", false, "file-level method (KA): partition --disk from the sender's desc (laid out for this disk's size), make the filesystems, unpack the golden files, fix fstab and boot configuration, install extlinux")
	f.StringVar(&o.disk, "disk", "", "with --files: the whole disk to partition (everything on it is lost)")
	f.StringArrayVar(&o.hooks, "hook", nil, "with --files: script run in a chroot of the new system after the fix-ups (repeatable, in order); HERD_DISK names the disk")
	f.StringVar(&o.staging, "staging", "", "with --files: directory where the new filesystems are mounted while filled (default: a temporary one)")
	f.BoolVar(&o.noBootloader, "no-bootloader", false, "with --files: do not install extlinux even when the desc marks a boot partition")
}

// receiver returns the file-level receiver for herd recv --files, or nil
// without --files.
// With verify, the unpacked files are read back from the disk when they
// are checked against the golden's digests.
func (o filesRecvOptions) receiver(ctx context.Context, root string, verify bool, stderr io.Writer) (*filelevel.Receiver, error) {
	if !o.enabled {
		if o.disk != "" || len(o.hooks) > 0 {
			return nil, usagef("--disk and --hook are for the file-level method: add --files")
		}
		return nil, nil
	}
	if o.disk == "" {
		return nil, usagef("--files needs --disk DEV: the disk to partition")
	}
	if root != "" {
		return nil, usagef("--files writes a whole disk: it cannot be confined with --root")
	}
	r, err := filelevel.NewReceiver(ctx, filelevel.ReceiverOptions{
		Disk: o.disk, Hooks: o.hooks, Staging: o.staging, NoBootloader: o.noBootloader, DropCache: verify,
		Log: &logLineWriter{log: loggerFrom(ctx, stderr), prefix: "recv: "},
	})
	if err != nil {
		return nil, exitError{code: ExitFailed, err: err}
	}
	return r, nil
}

// refuseFileLevel wraps a plain receiver's Open so that a file-level
// session is refused with a hint instead of writing its header as a file.
func refuseFileLevel(open func(ring.Item) (ring.Sink, error)) func(ring.Item) (ring.Sink, error) {
	return func(it ring.Item) (ring.Sink, error) {
		if filelevel.IsSessionItem(it.Name) {
			return nil, fmt.Errorf("the sender runs the file-level method: start this node with herd recv --files --disk DEV")
		}
		return open(it)
	}
}

// reportFiles prints what the file-level receiver did.
func reportFiles(ctx context.Context, r *filelevel.Receiver, stderr io.Writer) {
	if r == nil {
		return
	}
	res := r.Result()
	if res.Plan == nil {
		return
	}
	var fs []string
	for _, f := range res.FS {
		m := f.Mount
		if m == "" {
			m = "swap"
		}
		fs = append(fs, fmt.Sprintf("%s=%s(%s)", m, f.FS, f.UUID))
	}
	sort.Strings(fs)
	state := "done"
	if !res.Done {
		state = "NOT finished"
	}
	from := "page cache"
	if res.FromDisk {
		from = "disk"
	}
	loggerFrom(ctx, stderr).Info(fmt.Sprintf("recv: file-level copy %s: %s; %d files verified (%s); %d fix-ups; boot loader: %s; hooks: %d",
		state, strings.Join(fs, " "), res.Verified, from, len(res.Changes), orNone(res.Bootloader), len(res.Hooks)))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// logLineWriter logs every line written to it (a hook's output, the
// file-level receiver's messages) as one record, with a prefix.
type logLineWriter struct {
	log    *slog.Logger
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *logLineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.log.Info(w.prefix + string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a very long line without an end
		w.log.Info(w.prefix + string(w.buf))
		w.buf = nil
	}
	return len(b), nil
}
