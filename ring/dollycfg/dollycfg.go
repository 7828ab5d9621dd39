// Package dollycfg parses session configs in the formats of Dolly and
// Dolly+, the two tools herd replaces, so existing configs keep working.
//
// A Dolly config copies one item:
//
//	infile /dev/sda
//	outfile /dev/sda
//	server node1
//	firstclient node2
//	lastclient node3
//	clients 2
//	node2
//	node3:9000
//	endconfig
//
// A Dolly+ config copies several, each raw (">") or cooked (">>":
// decompressed, or unpacked from tar/cpio into a directory):
//
//	iofiles 2
//	/dev/hda1 > /dev/hda1
//	boot.tar.Z >> /boot
//	server max5
//	...
//
// Usage:
//
//	cfg, err := dollycfg.Parse("dolly.cfg", data)
//	if err != nil { /* err is a *ParseError naming the line */ }
//	for _, it := range cfg.Items { ... }
//	for _, c := range cfg.Clients { addr := c.Addr() ... }
//
// Parse is pure: it never touches the network or the files named.
//
// Public: Dolly and Dolly+ configs are a file format admins keep.
package dollycfg

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultPort is the TCP port a client listens on when its line names no
// port (Dolly's data port).
const DefaultPort = 9998

// Format says which dialect a config was written in.
type Format int

const (
	// Dolly is the original format: infile/outfile, one item.
	Dolly Format = iota
	// DollyPlus is the iofiles format with several items.
	DollyPlus
)

func (f Format) String() string {
	if f == DollyPlus {
		return "dolly+"
	}
	return "dolly"
}

// Item is one thing to copy: Src on the server, Dst on every client.
type Item struct {
	Src string
	Dst string
	// Cook is set for ">>" (Dolly+) and for a Dolly "compressed infile"
	// written to a plain outfile: the client decompresses or unpacks.
	Cook bool
	// Line is the config line the item came from.
	Line int
}

// Client is one receiving node, in chain order.
type Client struct {
	Host string
	Port int
	Line int
}

// Addr returns "host:port" for dialing.
func (c Client) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Config is a parsed session config.
type Config struct {
	Format      Format
	Items       []Item
	Server      string
	FirstClient string
	LastClient  string
	Clients     []Client
	// SegSize is Dolly's optional TCP segment size; herd only records it.
	SegSize int
	// Fanout is Dolly's tree fan-out; herd always builds a chain and
	// records a warning for a fan-out above 1.
	Fanout int
	// Warnings lists things herd accepted but that a user may want to
	// know about, each prefixed with "line N:".
	Warnings []string
}

// ErrSyntax is wrapped by every ParseError.
var ErrSyntax = errors.New("dollycfg: syntax error")

// ParseError reports a problem at a line of a config file.
type ParseError struct {
	File string
	Line int // 1-based; 0 when the problem is the file as a whole
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Unwrap lets errors.Is(err, ErrSyntax) match.
func (e *ParseError) Unwrap() error { return ErrSyntax }

// MaxClients bounds the number of client lines (Dolly+ allowed 1024; herd
// is built for more, but a config claiming millions is a mistake).
const MaxClients = 100000

// MaxItems bounds the number of iofiles entries.
const MaxItems = 4096

type line struct {
	no     int
	fields []string
	text   string
}

type parser struct {
	file  string
	lines []line
	pos   int
}

func (p *parser) errf(no int, format string, a ...any) error {
	return &ParseError{File: p.file, Line: no, Msg: fmt.Sprintf(format, a...)}
}

func (p *parser) peek() (line, bool) {
	if p.pos >= len(p.lines) {
		return line{}, false
	}
	return p.lines[p.pos], true
}

func (p *parser) next() (line, bool) {
	l, ok := p.peek()
	if ok {
		p.pos++
	}
	return l, ok
}

// lastLine is the number reported when the file ends too early.
func (p *parser) lastLine() int {
	if len(p.lines) == 0 {
		return 0
	}
	return p.lines[len(p.lines)-1].no
}

// Parse parses a Dolly or Dolly+ config. file is used only in error
// messages. Blank lines and lines starting with '#' are ignored; unlike
// Dolly+, extra spaces and tabs are accepted.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file}
	for i, raw := range strings.Split(string(data), "\n") {
		text := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if strings.ContainsRune(text, 0) {
			return nil, p.errf(i+1, "NUL byte in config")
		}
		p.lines = append(p.lines, line{no: i + 1, fields: strings.Fields(text), text: text})
	}
	if len(p.lines) == 0 {
		return nil, p.errf(0, "empty config: expected 'infile'/'outfile' or 'iofiles N', then 'server', 'firstclient', 'lastclient', 'clients N', the clients and 'endconfig'")
	}
	cfg := &Config{Fanout: 1}
	if err := p.parseItems(cfg); err != nil {
		return nil, err
	}
	if err := p.parseOptions(cfg); err != nil {
		return nil, err
	}
	if err := p.parseHosts(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseItems reads either "iofiles N" and its N lines, or the Dolly
// infile/outfile pair.
func (p *parser) parseItems(cfg *Config) error {
	l, _ := p.peek()
	if l.fields[0] == "iofiles" {
		p.next()
		cfg.Format = DollyPlus
		n, err := p.count(l, "iofiles", MaxItems)
		if err != nil {
			return err
		}
		if n == 0 {
			return p.errf(l.no, "iofiles 0: there is nothing to copy")
		}
		for i := 0; i < n; i++ {
			il, ok := p.next()
			if !ok {
				return p.errf(p.lastLine(), "iofiles %d (line %d) announces %d items but the file ends after %d", n, l.no, n, i)
			}
			it, err := p.ioLine(il)
			if err != nil {
				return err
			}
			if it == nil {
				return p.errf(il.no, "expected item %d of %d as 'SRC > DST' or 'SRC >> DST', found %q (iofiles on line %d counts %d)", i+1, n, il.text, l.no, n)
			}
			cfg.Items = append(cfg.Items, *it)
		}
		if nl, ok := p.peek(); ok {
			if it, _ := p.ioLine(nl); it != nil {
				return p.errf(nl.no, "more item lines than 'iofiles %d' on line %d announces", n, l.no)
			}
		}
		return nil
	}
	cfg.Format = Dolly
	var in, out *line
	var inComp, outComp bool
	for {
		l, ok := p.peek()
		if !ok {
			break
		}
		f := l.fields
		comp := false
		if f[0] == "compressed" {
			comp = true
			f = f[1:]
		}
		if len(f) == 0 || (f[0] != "infile" && f[0] != "outfile") {
			break
		}
		p.next()
		switch {
		case f[0] == "infile":
			if in != nil {
				return p.errf(l.no, "second 'infile' (first on line %d): use 'iofiles N' to copy several items", in.no)
			}
			if len(f) != 2 {
				return p.errf(l.no, "expected 'infile PATH'")
			}
			ll := l
			in, inComp = &ll, comp
		default:
			if out != nil {
				return p.errf(l.no, "second 'outfile' (first on line %d): use 'iofiles N' to copy several items", out.no)
			}
			if len(f) == 4 && f[2] == "split" {
				return p.errf(l.no, "'split' is not supported by herd: write one output, or use 'iofiles N'")
			}
			if len(f) != 2 {
				return p.errf(l.no, "expected 'outfile PATH'")
			}
			ll := l
			out, outComp = &ll, comp
		}
	}
	switch {
	case in == nil && out == nil:
		l, _ := p.peek()
		return p.errf(l.no, "expected 'infile PATH' (dolly) or 'iofiles N' (dolly+), found %q", l.fields[0])
	case in == nil:
		return p.errf(out.no, "'outfile' without 'infile'")
	case out == nil:
		return p.errf(in.no, "'infile' without 'outfile'")
	case outComp && !inComp:
		return p.errf(out.no, "'compressed outfile' from a plain infile is not supported: herd writes what it receives or decompresses it, it does not compress on the node")
	}
	inFields := in.fields[len(in.fields)-1:]
	outFields := out.fields[len(out.fields)-1:]
	cfg.Items = []Item{{Src: inFields[0], Dst: outFields[0], Cook: inComp && !outComp, Line: in.no}}
	return nil
}

// ioLine parses "SRC > DST" or "SRC >> DST" (spaces optional). It returns
// nil, nil when the line is not an item line at all.
func (p *parser) ioLine(l line) (*Item, error) {
	t := l.text
	i := strings.IndexByte(t, '>')
	if i < 0 {
		return nil, nil
	}
	cook := strings.HasPrefix(t[i:], ">>")
	rest := t[i+1:]
	if cook {
		rest = t[i+2:]
	}
	src, dst := strings.TrimSpace(t[:i]), strings.TrimSpace(rest)
	switch {
	case strings.HasPrefix(dst, ">"):
		return nil, p.errf(l.no, "'>>>' is not an operator: use '>' (copy) or '>>' (cook)")
	case src == "" || dst == "":
		return nil, p.errf(l.no, "item line needs a source and a destination: 'SRC > DST' or 'SRC >> DST'")
	case strings.ContainsAny(src, " \t") || strings.ContainsAny(dst, " \t"):
		return nil, p.errf(l.no, "paths with spaces are not supported in item lines: %q", l.text)
	}
	return &Item{Src: src, Dst: dst, Cook: cook, Line: l.no}, nil
}

// parseOptions reads the optional Dolly keywords that may stand between
// the items and the host list.
func (p *parser) parseOptions(cfg *Config) error {
	for {
		l, ok := p.peek()
		if !ok {
			return nil
		}
		switch l.fields[0] {
		case "segsize":
			n, err := p.count(l, "segsize", 1<<30)
			if err != nil {
				return err
			}
			cfg.SegSize = n
		case "fanout":
			n, err := p.count(l, "fanout", 8)
			if err != nil {
				return err
			}
			if n < 1 {
				return p.errf(l.no, "fanout must be at least 1")
			}
			cfg.Fanout = n
			if n > 1 {
				cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("line %d: fanout %d ignored: herd always builds a chain, which Dolly's authors measured to be fastest", l.no, n))
			}
		case "hyphennormal":
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("line %d: hyphennormal has no effect in herd", l.no))
		case "add":
			return p.errf(l.no, "'add' (Dolly's hostname suffix for another interface) is not supported: write the clients' names or addresses on that interface")
		case "infile", "outfile", "compressed":
			return p.errf(l.no, "%q must come before 'server' and the options", l.fields[0])
		case "iofiles":
			return p.errf(l.no, "'iofiles' must be the first keyword of the config")
		default:
			return nil
		}
		p.next()
	}
}

// parseHosts reads server, firstclient, lastclient, clients N, the client
// lines and endconfig.
func (p *parser) parseHosts(cfg *Config) error {
	kw := func(name string) (line, error) {
		l, ok := p.next()
		if !ok {
			return line{}, p.errf(p.lastLine(), "config ends before '%s'", name)
		}
		if l.fields[0] != name {
			return line{}, p.errf(l.no, "expected '%s', found %q", name, l.fields[0])
		}
		return l, nil
	}
	single := func(name string) (string, line, error) {
		l, err := kw(name)
		if err != nil {
			return "", l, err
		}
		if len(l.fields) != 2 {
			return "", l, p.errf(l.no, "expected '%s HOST'", name)
		}
		return l.fields[1], l, nil
	}
	var err error
	if cfg.Server, _, err = single("server"); err != nil {
		return err
	}
	var fl, ll line
	if cfg.FirstClient, fl, err = single("firstclient"); err != nil {
		return err
	}
	if cfg.LastClient, ll, err = single("lastclient"); err != nil {
		return err
	}
	cl, err := kw("clients")
	if err != nil {
		return err
	}
	n, err := p.count(cl, "clients", MaxClients)
	if err != nil {
		return err
	}
	if n == 0 {
		return p.errf(cl.no, "clients 0: there is nobody to clone to")
	}
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		hl, ok := p.next()
		if !ok {
			return p.errf(p.lastLine(), "'clients %d' on line %d but the file ends after %d client lines", n, cl.no, i)
		}
		if hl.fields[0] == "endconfig" {
			return p.errf(hl.no, "'clients %d' on line %d but only %d client lines before endconfig", n, cl.no, i)
		}
		if len(hl.fields) != 1 {
			return p.errf(hl.no, "expected one client per line (host or host:port), found %q", hl.text)
		}
		c, err := ParseClient(hl.fields[0])
		if err != nil {
			return p.errf(hl.no, "%v", err)
		}
		c.Line = hl.no
		if prev, dup := seen[c.Addr()]; dup {
			return p.errf(hl.no, "client %s is listed twice (also on line %d)", c.Addr(), prev)
		}
		seen[c.Addr()] = hl.no
		cfg.Clients = append(cfg.Clients, c)
	}
	el, ok := p.next()
	if !ok {
		return p.errf(p.lastLine(), "missing 'endconfig' at the end")
	}
	if el.fields[0] != "endconfig" {
		return p.errf(el.no, "expected 'endconfig' after %d clients, found %q (is the 'clients' count on line %d right?)", n, el.text, cl.no)
	}
	if extra, ok := p.next(); ok {
		return p.errf(extra.no, "text after 'endconfig': %q", extra.text)
	}
	if first := cfg.Clients[0]; !sameHost(cfg.FirstClient, first) {
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("line %d: firstclient %s is not the first client line (%s); herd follows the client lines", fl.no, cfg.FirstClient, first.Host))
	}
	if last := cfg.Clients[len(cfg.Clients)-1]; !sameHost(cfg.LastClient, last) {
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("line %d: lastclient %s is not the last client line (%s); herd follows the client lines", ll.no, cfg.LastClient, last.Host))
	}
	return nil
}

func sameHost(name string, c Client) bool {
	n, err := ParseClient(name)
	if err != nil {
		return false
	}
	if n.Host != c.Host {
		return false
	}
	// A name without a port matches the client on any port.
	return n.Port == c.Port || !strings.Contains(strings.TrimPrefix(name, "["+n.Host+"]"), ":")
}

// count parses "KEYWORD N" with 0 <= N <= max.
func (p *parser) count(l line, name string, max int) (int, error) {
	if len(l.fields) != 2 {
		return 0, p.errf(l.no, "expected '%s N'", name)
	}
	n, err := strconv.Atoi(l.fields[1])
	if err != nil || n < 0 {
		return 0, p.errf(l.no, "'%s' needs a non-negative number, found %q", name, l.fields[1])
	}
	if n > max {
		return 0, p.errf(l.no, "'%s %d' is more than the limit of %d", name, n, max)
	}
	return n, nil
}

// ParseClient parses a client as "host", "host:port", "[v6]" or
// "[v6]:port". The port defaults to DefaultPort.
func ParseClient(s string) (Client, error) {
	if s == "" {
		return Client{}, fmt.Errorf("empty client name")
	}
	host, port := s, DefaultPort
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		if !strings.HasPrefix(s, "[") || strings.Contains(s, "]:") {
			h, ps, err := net.SplitHostPort(s)
			if err != nil {
				return Client{}, fmt.Errorf("bad client %q: %v", s, err)
			}
			n, err := strconv.Atoi(ps)
			if err != nil || n < 1 || n > 65535 {
				return Client{}, fmt.Errorf("bad port in client %q: want 1-65535", s)
			}
			host, port = h, n
		} else {
			if !strings.HasSuffix(s, "]") {
				return Client{}, fmt.Errorf("bad client %q: missing ']'", s)
			}
			host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		}
	}
	if host == "" {
		return Client{}, fmt.Errorf("bad client %q: empty host", s)
	}
	if strings.ContainsAny(host, "/\\ \t[]") {
		return Client{}, fmt.Errorf("bad client %q: not a host name or address", s)
	}
	return Client{Host: host, Port: port}, nil
}
