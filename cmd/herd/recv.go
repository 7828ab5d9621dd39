package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/internal/units"
	"github.com/herd-cluster/herd/ring"
	"github.com/herd-cluster/herd/ring/dollycfg"
	"github.com/herd-cluster/herd/ring/report"
)

type recvOptions struct {
	listen   string
	root     string
	keyFile  string
	insecure bool
	json     bool
	verbose  bool
	sink     sinkOptions
	files    filesRecvOptions
	// stateDir keeps a journal so a restarted recv rejoins its session.
	stateDir string
	memory   string // chunk memory (a size); "" the ring's default
}

func newRecvCmd() *cobra.Command {
	var o recvOptions
	cmd := &cobra.Command{
		Use:   "recv --key-file FILE (--allow PATTERN... | --root DIR | --files --disk DEV)",
		Short: "Wait for one session, write its items here and forward them to the next node",
		Long: `Recv waits for one session from a herd sender (or the node before this one in
the chain), writes every item to its destination, forwards the data to the next
node while writing, and checks the BLAKE3 digest of what it wrote.

Keys: with --key-file FILE (herd key new FILE makes one; copy it to every node
and the sender) only a sender holding the same key is heard. Without a key
herd recv refuses to start, unless --insecure says that any machine that
reaches the port may write here (a warning is printed at every start and in
the summary).

` + allowHelp + `

A target that is mounted or in use, or too small for the item, is refused
before anything is written; the node still forwards to the rest of the chain.

Exit codes:
  0  the session completed and every item verified
  1  the session ran but this node failed (digest mismatch, write error, refused target)
  2  usage error (no key, nothing allowed, a bad flag): nothing listened
  3  no session (interrupted, network error)`,
		Example: `  herd recv --key-file /etc/herd/key --allow /dev/sda
  herd recv --key-file /etc/herd/key --allow '/srv/images/**,/dev/sd?'
  herd recv --key-file /etc/herd/key --root /srv/herd
  herd recv --key-file /etc/herd/key --files --disk /dev/sda`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRecv(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", fmt.Sprintf(":%d", dollycfg.DefaultPort), "address and port to wait on")
	f.StringVar(&o.root, "root", "", "take every destination inside this directory (everything under it may be written, block devices excepted)")
	f.StringVar(&o.stateDir, "state", "", "directory for a journal of what this node writes: restarted with the same --state while the session runs, it checks what it wrote and receives only the rest")
	f.StringVar(&o.keyFile, "key-file", "", "file holding the session key (herd key new FILE makes one); sessions without it are refused")
	f.BoolVar(&o.insecure, "insecure", false, "run without a key: any machine that reaches the port may write what --allow/--root permit")
	f.StringVar(&o.memory, "memory", "64M", "memory for chunks received and not yet written and forwarded (at least 4 chunks are kept whatever the size); less for a node that runs from RAM, more to absorb a slow disk")
	f.BoolVar(&o.json, "json", false, "print the result as a JSON line on stdout")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log connections and progress on stderr")
	addSinkFlags(f, &o.sink)
	addFilesRecvFlags(f, &o.files)
	return cmd
}

func runRecv(ctx context.Context, o recvOptions, stdout, stderr io.Writer) (err error) {
	// --json ends with a summary line whatever happens: when no session
	// ran, one with ok=false and the reason.
	summarized := false
	if o.json {
		defer func() {
			if err != nil && !summarized {
				no := false
				writeJSON(stdout, report.Event{Event: report.Summary, OK: &no, Error: err.Error(), Insecure: o.insecure,
					Nodes: []report.Node{{Index: -1, Addr: o.listen, State: string(ring.StateFailed), Error: err.Error()}}})
			}
		}()
	}
	// Every usage error comes before anything listens.
	key, err := recvKey(o)
	if err != nil {
		return err
	}
	if err := o.sink.prepare(o.root); err != nil {
		return err
	}
	fr, err := o.files.receiver(ctx, o.root, o.sink.verify, stderr) // nil without --files
	if err != nil {
		return err
	}
	if fr != nil {
		defer fr.Close()
	}
	if o.sink.conf.AllowsNothing() && !o.files.enabled {
		return usagef("herd recv would write nothing: say what this node may write with --allow PATTERN (like --allow /dev/sda or --allow '/srv/images/**'), --root DIR, or --files --disk DEV")
	}
	if err := checkListen("listen", o.listen); err != nil {
		return err
	}
	mem, err := units.ParseSize(o.memory)
	if err != nil {
		return usageError{units.FlagError("--memory", err)}
	}
	if mem < 1<<20 {
		return usagef("--memory %q: want at least 1M (like 64M)", o.memory)
	}
	if o.stateDir != "" {
		// The journal's folder is made here, before anything listens: a
		// missing one would only show once a session started, as a
		// journal that is not kept (and a restart receiving everything).
		if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
			return usagef("--state %q: %v", o.stateDir, err)
		}
	}
	writes := o.sink.conf.String()
	if fr != nil {
		writes = "disk " + o.files.disk + " (--files)"
	}
	if o.insecure {
		loggerFrom(ctx, stderr).Warn(fmt.Sprintf("recv: --insecure: any machine that reaches %s can write here (%s), unauthenticated and in clear", o.listen, writes))
	}
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return exitError{code: ExitFailed, err: err} // "listen tcp ADDR: why"
	}
	defer l.Close()
	log := loggerFrom(ctx, stderr)
	recvLogf := printfAt(log, slog.LevelInfo)
	logf := func(format string, args ...any) { recvLogf("recv: "+format, args...) }
	o.sink.ctx, o.sink.logf = ctx, logf // cooked items stop with the receiver and say what they left out
	if !o.json {
		id := "NO KEY (--insecure)"
		if key != nil {
			id = "key " + keyID(key)
		}
		log.Info(fmt.Sprintf("recv: waiting for a session on %s; %s; writes: %s", l.Addr(), id, writes))
	}
	var lastPrint time.Time
	progress := func(st ring.NodeStatus) {
		if !o.verbose || time.Since(lastPrint) < 2*time.Second {
			return
		}
		lastPrint = time.Now()
		log.Info(fmt.Sprintf("recv: node %d %s %s %s", st.Index+1, st.State, humanBytes(st.Bytes), humanRate(st.Rate)), "node", st.Index+1)
	}
	open := refuseFileLevel(func(it ring.Item) (ring.Sink, error) { return openReadableSink(it, o.sink) })
	if fr != nil {
		open = fr.Open
	}
	st, err := ring.Receive(ctx, l, ring.ReceiverConfig{
		MemoryLimit: mem,
		StateDir:    o.stateDir,
		Key:         key,
		Insecure:    o.insecure,
		Open:        open,
		Progress:    progress,
		Logf:        logf,
	})
	reportFiles(ctx, fr, stderr)
	if st != nil {
		if o.json {
			ok := err == nil && st.State == ring.StateDone
			ev := report.Event{Event: report.Summary, OK: &ok, Bytes: st.Bytes, Nodes: []report.Node{toJSONNode(*st)}, Insecure: o.insecure}
			if err != nil {
				ev.Error = err.Error()
			}
			writeJSON(stdout, ev)
			summarized = true
		} else {
			var parts []string
			for _, it := range st.Items {
				v := "verified"
				if !it.Verified {
					v = "NOT verified"
				}
				parts = append(parts, fmt.Sprintf("%s (%s, blake3 %s, %s)", it.Dest, humanBytes(it.Bytes), short(it.Digest), v))
			}
			fmt.Fprintf(stdout, "herd recv: node %d %s: %s\n", st.Index+1, st.State, strings.Join(parts, "; "))
			if o.insecure {
				fmt.Fprintln(stdout, "herd recv: WARNING: --insecure: this session had no key; nothing proved who sent it or that it was not altered")
			}
		}
	}
	if err != nil {
		if st != nil && st.Index >= 0 && st.State != "" && st.State != ring.StateWaiting {
			return exitError{code: ExitPartial, err: err}
		}
		return exitError{code: ExitFailed, err: err}
	}
	return nil
}

// openReadableSink opens a sink; a raw item's can also be read back, so
// this node can resend chunks to a node after a failed one.
func openReadableSink(it ring.Item, o sinkOptions) (ring.Sink, error) {
	s, dest, err := openSink(it, o)
	if err != nil || it.Cook {
		return s, err
	}
	return ring.WithReadBack(s, dest), nil
}

func short(digest string) string {
	if len(digest) > 16 {
		return digest[:16] + "…"
	}
	return digest
}
