package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/herd-cluster/herd/internal/units"
	"github.com/herd-cluster/herd/ring"
	"github.com/herd-cluster/herd/ring/dollycfg"
	"github.com/herd-cluster/herd/ring/report"
)

type sendOptions struct {
	config         string
	keyFile        string
	insecure       bool
	verbose        bool
	json           bool
	to             string
	in             string
	out            string
	cook           bool
	connectTimeout time.Duration
	deadTimeout    time.Duration
	slow           string
	slowAfter      time.Duration
	resume         string
	compress       string
	chunkSize      string
	source         sourceOptions
	files          filesSendOptions
	live           liveOptions
}

func newSendCmd() *cobra.Command {
	var o sendOptions
	cmd := &cobra.Command{
		Use:   "send -f DOLLYCFG | send --to HOST[:PORT],... --in SRC --out DST",
		Short: "Send items from this (golden) node down the chain to every client",
		Long: `Send streams one or more items (disk, partition, image or archive) from this
node to every client listed, through a pipelined TCP chain: this node sends to
the first client, which writes and forwards to the next, and so on. Every node
checks a BLAKE3 digest of what it wrote against this node's.

DOLLYCFG (-f, --dolly) is a Dolly config (infile/outfile) or a Dolly+ config
(iofiles N with "SRC > DST" copied raw and "SRC >> DST" cooked: decompressed or
unpacked), then server, firstclient, lastclient, clients N, one client per line
(host or host:port, default port 9998) and endconfig. (--config is its old,
deprecated name: herd send reads herd's own config file from $HERD_CONFIG or
/etc/herd/herd.yaml.) Without -f, --to, --in and --out
describe one item.

Progress: bars on a terminal, periodic lines otherwise, JSON lines with --json
(the last line is {"event":"summary",...}).` + exitHelp,
		Example: `  herd send -f dolly.cfg
  herd send --to node1,node2,node3:9000 --in /dev/sda --out /dev/sda
  herd send --to node1,node2 --in boot.tar.gz --out /boot --cook --key-file /etc/herd/key
  herd send --files --desc golden.desc --from /mnt/golden -x /tmp --to node1,node2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSend(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "dolly", "f", "", "Dolly or Dolly+ config file")
	// --config was the Dolly config's long name before herd had a config
	// file of its own; it still works here, deprecated.
	f.StringVar(&o.config, "config", "", "deprecated name of --dolly")
	deprecateFlag(f, "config", "use -f/--dolly FILE for a Dolly config; herd send reads herd's own config file from $"+configEnv+" or "+defaultConfigPath)
	f.StringVar(&o.keyFile, "key-file", "", "file holding the session key (every node must use the same; herd key new FILE makes one); nodes without it write nothing")
	f.BoolVar(&o.insecure, "insecure", false, "send without a key, to nodes started with herd recv --insecure (anyone on the network can read and alter the session; nodes with a key refuse it)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print progress every second, one line per node")
	f.BoolVar(&o.json, "json", false, "print progress and the summary as JSON lines on stdout")
	f.StringVar(&o.to, "to", "", "comma-separated clients in chain order (host or host:port)")
	f.StringVar(&o.in, "in", "", "item to send: file, block device, partition or image")
	f.StringVar(&o.out, "out", "", "where every client writes the item")
	f.BoolVar(&o.cook, "cook", false, "clients decompress or unpack the item (like '>>' in a Dolly+ config)")
	f.DurationVar(&o.connectTimeout, "connect-timeout", ring.DefaultConnectTimeout, "how long to keep trying to reach the first client (clients may start later)")
	f.DurationVar(&o.deadTimeout, "dead-timeout", ring.DefaultDeadTimeout, "how long a silent node may stay silent before it is declared dead")
	f.StringVar(&o.slow, "slow", string(ring.SlowMove), "a node far slower than the rest (its disk lags) for --slow-after: move (to the tail of the chain: the others finish at full speed, it completes at its own pace), wait (it sets the pace of everyone) or drop (reported failed, too slow)")
	f.DurationVar(&o.slowAfter, "slow-after", ring.DefaultSlowAfter, "how long a node must lag before --slow applies")
	f.StringVar(&o.chunkSize, "chunk-size", "256K", "bytes per chunk on the wire (64K to 64M): a node forwards a chunk once it has all of it, so smaller chunks start the end of a long chain sooner; larger ones cost less CPU per byte")
	f.StringVar(&o.compress, "compress", string(ring.CompressNone), "compress chunks on the wire: none, zstd (every chunk that shrinks; every node decompresses), or auto (zstd that pauses while the data does not shrink); the summary says how many bytes went on the wire")
	f.StringVar(&o.resume, "resume", "", "session file: when it exists (this source stopped before the end), take up that session again and send nodes only what they lack; else start a new session and keep it there (removed once every node verified)")
	addSourceFlags(f, &o.source)
	addFilesSendFlags(f, &o.files)
	addLiveFlags(f, &o.live)
	return cmd
}

// insecureSendWarning is printed on stderr by every herd send --insecure.
const insecureSendWarning = "--insecure: no key: anyone on the network can read and alter this session; only nodes started with herd recv --insecure take it"

// session is what a config or the flags describe, checked but not opened.
type session struct {
	items   []dollycfg.Item
	clients []string
}

// buildSession turns -f DOLLYCFG or --to/--in/--out into a session. Errors
// are usage errors: nothing has been opened or sent yet.
func buildSession(ctx context.Context, o sendOptions, stderr io.Writer) (*session, error) {
	if o.files.enabled {
		return buildFilesSession(o)
	}
	if o.config != "" {
		if o.to != "" || o.in != "" || o.out != "" {
			return nil, usagef("use either -f DOLLYCFG or --to/--in/--out, not both")
		}
		data, err := os.ReadFile(o.config)
		if err != nil {
			return nil, usageError{fmt.Errorf("read config: %w", err)}
		}
		cfg, err := dollycfg.Parse(o.config, data)
		if err != nil {
			return nil, usageError{err}
		}
		for _, w := range cfg.Warnings {
			loggerFrom(ctx, stderr).Warn(fmt.Sprintf("%s: %s", o.config, w))
		}
		s := &session{items: cfg.Items}
		for _, c := range cfg.Clients {
			s.clients = append(s.clients, c.Addr())
		}
		return s, nil
	}
	switch {
	case o.to == "" && o.in == "" && o.out == "":
		return nil, usagef("nothing to send: give -f DOLLYCFG, or --to, --in and --out")
	case o.to == "":
		return nil, usagef("--to is required: the clients in chain order")
	case o.in == "":
		return nil, usagef("--in is required: what to send")
	case o.out == "":
		return nil, usagef("--out is required: where the clients write it")
	}
	s := &session{items: []dollycfg.Item{{Src: o.in, Dst: o.out, Cook: o.cook}}}
	clients, err := parseTo(o.to)
	if err != nil {
		return nil, err
	}
	s.clients = clients
	return s, nil
}

func runSend(ctx context.Context, o sendOptions, stdout, stderr io.Writer) (err error) {
	// --json ends with a summary line whatever happens: when the session
	// did not run, one with ok=false, every node and the reason.
	var clients []string
	summarized := false
	if o.json {
		defer func() {
			if err != nil && !summarized {
				writeJSON(stdout, failedSendSummary(clients, nil, err, o.insecure))
			}
		}()
	}
	s, err := buildSession(ctx, o, stderr)
	if err != nil {
		return err
	}
	clients = s.clients
	key, err := sendKey(o)
	if err != nil {
		return err
	}
	if _, err := ring.ParseSlowPolicy(o.slow); err != nil {
		return usageError{err}
	}
	chunk, err := units.ParseSize(o.chunkSize)
	if err != nil {
		return usageError{units.FlagError("--chunk-size", err)}
	}
	if chunk < 64<<10 || chunk > 64<<20 {
		return usagef("--chunk-size %q: want a size from 64K to 64M", o.chunkSize)
	}
	if _, err := ring.ParseCompressMode(o.compress); err != nil {
		return usageError{err}
	}
	if err := o.live.check(); err != nil {
		return err
	}
	// Open every source once before connecting: an unreadable infile is
	// reported before anyone is disturbed.
	items := make([]ring.SendItem, 0, len(s.items))
	stats := make([]sourceStats, len(s.items))
	for i, it := range s.items {
		stats[i].Item = it.Src
	}
	for i, it := range s.items {
		probe, err := openSource(it.Src, it.Cook, o.source)
		if err != nil {
			return usageError{fmt.Errorf("item %d (%s): %w", i+1, it.Src, err)}
		}
		size := probe.Size()
		probe.Close()
		src, i := it.Src, i
		cook := it.Cook
		items = append(items, ring.SendItem{
			Item: ring.Item{Name: it.Src, Dest: it.Dst, Cook: it.Cook, Size: size},
			Open: func() (ring.Source, error) {
				s, err := openSource(src, cook, o.source)
				if err != nil {
					return nil, err
				}
				return statsSource{s, &stats[i]}, nil
			},
		})
	}
	if o.files.enabled {
		if items, stats, err = filesItems(ctx, o.files, stderr, !o.json); err != nil {
			return err
		}
	}
	tty := false
	if f, ok := stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	progressOut := stderr
	if o.json {
		progressOut = stdout
	}
	progress := newProgress(progressOut, tty && !o.json, o.json, o.verbose)
	log := loggerFrom(ctx, stderr)
	// The chain's events: shown with --verbose, else at --log-level debug.
	logf := printfAt(log, slog.LevelDebug)
	if o.verbose {
		logf = printfAt(log, slog.LevelInfo)
	}
	if o.insecure {
		log.Warn(insecureSendWarning)
	}
	if !o.json {
		log.Info(fmt.Sprintf("sending %d item(s) to %d node(s): %s", len(items), len(s.clients), strings.Join(s.clients, " ")))
	}
	hub, endLive, err := o.live.start(ctx, "send", stderr)
	if err != nil {
		return err
	}
	defer endLive()
	hub.Plan(s.clients, nil)
	var session ring.SessionID
	var dataKey []byte
	if o.resume != "" {
		its := make([]ring.Item, len(items))
		for i, it := range items {
			its[i] = it.Item
		}
		r, err := ring.ResumeFile(o.resume, s.clients, its)
		if err != nil {
			return usageError{err}
		}
		session, dataKey = r.Session, r.DataKey
		if r.Resumed && !o.json {
			log.Info(fmt.Sprintf("resuming session %x from %s", r.Session[:4], o.resume), "session", fmt.Sprintf("%x", r.Session[:4]))
		}
	}
	rep, err := ring.Send(ctx, ring.SenderConfig{
		Session:        session,
		DataKey:        dataKey,
		Nodes:          s.clients,
		Items:          items,
		Key:            key,
		Insecure:       o.insecure,
		ConnectTimeout: o.connectTimeout,
		DeadTimeout:    o.deadTimeout,
		Slow:           ring.SlowPolicy(o.slow),
		Compress:       ring.CompressMode(o.compress),
		ChunkSize:      int(chunk),
		SlowAfter:      o.slowAfter,
		Progress: func(sn ring.Snapshot) {
			progress(sn)
			hub.Progress(sn)
		},
		Logf: logf,
	})
	if err != nil {
		hub.Finish(false)
		if o.json {
			writeJSON(stdout, failedSendSummary(clients, rep, err, o.insecure))
			summarized = true
		}
		if errors.Is(err, ring.ErrConfig) {
			return usageError{err}
		}
		return err
	}
	ok, failed := outcome(rep)
	hub.Outcome(verdicts(rep))
	hub.Finish(failed == 0 && ok > 0)
	if o.json {
		summarized = true
		okAll := failed == 0 && ok > 0
		ev := report.Event{Event: report.Summary, OK: &okAll, Seconds: rep.Elapsed.Seconds(), Bytes: rep.Bytes, Items: toJSONItems(rep.Items), Stats: stats, Compress: compressName(rep.Compress), WireBytes: rep.WireBytes, Insecure: o.insecure}
		for _, n := range rep.Nodes {
			ev.Nodes = append(ev.Nodes, toJSONNode(n))
		}
		writeJSON(stdout, ev)
	} else {
		printSummary(stdout, rep, stats)
		fmt.Fprintf(stdout, "compression %s: %s on the wire for %s\n", compressName(rep.Compress), humanBytes(rep.WireBytes), humanBytes(rep.Bytes))
		if o.insecure {
			fmt.Fprintln(stdout, "WARNING: --insecure: this session had no key; nothing proved who sent it or that it was not altered")
		}
	}
	switch {
	case failed == 0 && ok > 0:
		if o.resume != "" {
			os.Remove(o.resume) // the session is over
		}
		return nil
	case ok > 0:
		return exitError{code: ExitPartial, err: fmt.Errorf("%d of %d nodes failed", failed, ok+failed)}
	default:
		return exitError{code: ExitFailed, err: fmt.Errorf("no node completed")}
	}
}

// parseTo reads --to: clients in chain order, host or host:port, each once.
func parseTo(to string) ([]string, error) {
	var clients []string
	seen := map[string]bool{}
	for _, h := range strings.Split(to, ",") {
		c, err := dollycfg.ParseClient(strings.TrimSpace(h))
		if err != nil {
			return nil, usagef("--to: %v", err)
		}
		if seen[c.Addr()] {
			return nil, usagef("--to: client %s is listed twice", c.Addr())
		}
		seen[c.Addr()] = true
		clients = append(clients, c.Addr())
	}
	return clients, nil
}

// failedSendSummary is the --json summary of a session that did not run to
// its end: ok=false, err as the reason, every node of rep (or, without a
// report, every client, failed with err).
func failedSendSummary(clients []string, rep *ring.Report, err error, insecure bool) report.Event {
	no := false
	ev := report.Event{Event: report.Summary, OK: &no, Error: err.Error(), Insecure: insecure}
	if rep != nil {
		ev.Seconds, ev.Bytes, ev.Items = rep.Elapsed.Seconds(), rep.Bytes, toJSONItems(rep.Items)
		ev.Compress, ev.WireBytes = compressName(rep.Compress), rep.WireBytes
		for _, n := range rep.Nodes {
			ev.Nodes = append(ev.Nodes, toJSONNode(n))
		}
		return ev
	}
	for i, c := range clients {
		ev.Nodes = append(ev.Nodes, report.Node{Index: i, Addr: c, State: string(ring.StateFailed), Error: "not sent: " + err.Error()})
	}
	return ev
}
