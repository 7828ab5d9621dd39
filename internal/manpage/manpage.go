// Package manpage writes roff man pages (man(7) macros, section 1) for a
// cobra command tree: one page per command, named after its path
// (herd.1, herd-pxe-serve.1), with the sections NAME, SYNOPSIS,
// DESCRIPTION, COMMANDS (commands with subcommands), OPTIONS, EXAMPLES
// (when the command has some), EXIT STATUS and SEE ALSO.
//
// The text comes from the commands themselves: Short, Use, Long, Example
// and the flags. A block of Long that starts with a line "Exit codes:"
// becomes EXIT STATUS, its lines "  N  text" one entry each; commands
// without one get Header.ExitStatus. Lines of Long or Example indented by
// a space or more are kept as they are (no filling).
//
// It is internal: only herd's hidden herd gen man uses it.
//
//	err := manpage.WriteTree(root, "out/man1", manpage.Header{Source: "herd 1.2", Date: "2026-12-04"})
package manpage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Header is what every page shows besides its command's text.
type Header struct {
	// Source is the footer's left part, like "herd 1.2.0".
	Source string
	// Manual is the header's centre, like "herd manual".
	Manual string
	// Date is the page's date, YYYY-MM-DD.
	Date string
	// ExitStatus is EXIT STATUS for commands whose Long lists no exit
	// codes: lines "N  text", one per code.
	ExitStatus string
}

// Commands returns root and every command below it that gets a page:
// those available (not hidden nor deprecated), except help, in path order.
func Commands(root *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		out = append(out, c)
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() && s.Name() != "help" {
				walk(s)
			}
		}
	}
	walk(root)
	return out
}

// PageName is the file name of cmd's page: its path joined by hyphens,
// with ".1".
func PageName(cmd *cobra.Command) string { return baseName(cmd) + ".1" }

func baseName(cmd *cobra.Command) string {
	return strings.ReplaceAll(cmd.CommandPath(), " ", "-")
}

// WriteTree writes one page per command of Commands(root) into dir,
// which must exist. It adds cobra's default help flags (and root's
// --version when root has a Version) first, so the pages list every flag
// a user can give.
func WriteTree(root *cobra.Command, dir string, h Header) error {
	for _, c := range Commands(root) {
		b, err := Page(c, h)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, PageName(c)), b, 0o644); err != nil {
			return fmt.Errorf("manpage: %w", err)
		}
	}
	return nil
}

// Page renders cmd's page.
func Page(cmd *cobra.Command, h Header) ([]byte, error) {
	cmd.InitDefaultHelpFlag()
	if cmd.Root() == cmd && cmd.Version != "" {
		cmd.InitDefaultVersionFlag()
	}
	if h.Manual == "" {
		h.Manual = "User Commands"
	}
	var b bytes.Buffer
	name := baseName(cmd)
	fmt.Fprintf(&b, ".\\\" Generated from the command tree of %s; do not edit.\n", Escape(cmd.Root().Name()))
	fmt.Fprintf(&b, ".TH %s 1 \"%s\" %s %s\n", quoteArg(strings.ToUpper(name)), date(h.Date), quoteArg(h.Source), quoteArg(h.Manual))
	b.WriteString(".nh\n.ad l\n")

	b.WriteString(".SH NAME\n")
	writeLines(&b, name+" - "+cmd.Short)

	b.WriteString(".SH SYNOPSIS\n")
	path := cmd.CommandPath()
	use := strings.TrimSpace(strings.TrimPrefix(cmd.UseLine(), path))
	if !cmd.Runnable() && cmd.HasAvailableSubCommands() {
		use = "COMMAND [flags]"
	}
	writeEscaped(&b, "\\fB"+escapeInline(path)+"\\fR "+escapeInline(use))

	desc, exits := splitExit(cmd.Long)
	if strings.TrimSpace(desc) == "" {
		desc = cmd.Short
	}
	b.WriteString(".SH DESCRIPTION\n")
	writeText(&b, desc, true)

	subs := subcommands(cmd)
	if len(subs) > 0 {
		b.WriteString(".SH COMMANDS\n")
		for _, s := range subs {
			fmt.Fprintf(&b, ".TP\n\\fB%s\\fR\n", Escape(s.Name()))
			writeLines(&b, s.Short)
		}
	}

	b.WriteString(".SH OPTIONS\n")
	n := writeFlags(&b, cmd.NonInheritedFlags())
	if inh := cmd.InheritedFlags(); inh.HasAvailableFlags() {
		if n > 0 {
			b.WriteString(".SS Options of all commands\n")
		}
		n += writeFlags(&b, inh)
	}
	if n == 0 {
		b.WriteString("None.\n")
	}

	if strings.TrimSpace(cmd.Example) != "" {
		b.WriteString(".SH EXAMPLES\n")
		writeText(&b, cmd.Example, true)
	}

	b.WriteString(".SH EXIT STATUS\n")
	if exits == "" {
		exits = h.ExitStatus
	}
	writeExits(&b, exits)

	b.WriteString(".SH SEE ALSO\n")
	var see []string
	if p := cmd.Parent(); p != nil {
		see = append(see, baseName(p))
	}
	for _, s := range subs {
		see = append(see, baseName(s))
	}
	if len(see) == 0 {
		see = append(see, baseName(cmd.Root()))
	}
	for i, s := range see {
		sep := ","
		if i == len(see)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, ".BR %s (1)%s\n", Escape(s), sep)
	}
	return b.Bytes(), nil
}

func subcommands(cmd *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, s := range cmd.Commands() {
		if s.IsAvailableCommand() && s.Name() != "help" {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// splitExit cuts long at a line "Exit codes:" into the description and
// the exit codes' lines.
func splitExit(long string) (desc, exits string) {
	lines := strings.Split(long, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "Exit codes:" && !startsIndented(l) {
			return strings.Join(lines[:i], "\n"), strings.Join(lines[i+1:], "\n")
		}
	}
	return long, ""
}

// writeFlags writes one .TP entry per visible flag of fs and returns
// how many it wrote.
func writeFlags(b *bytes.Buffer, fs *pflag.FlagSet) int {
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		n++
		b.WriteString(".TP\n")
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			fmt.Fprintf(b, "\\fB%s\\fR, ", Escape("-"+f.Shorthand))
		}
		fmt.Fprintf(b, "\\fB%s\\fR", Escape("--"+f.Name))
		varname, usage := pflag.UnquoteUsage(f)
		if f.Value.Type() == "bool" {
			varname = ""
		}
		if varname != "" {
			fmt.Fprintf(b, " \\fI%s\\fR", Escape(varname))
		}
		b.WriteString("\n")
		text := usage
		if d := f.DefValue; d != "" && d != "false" && d != "[]" && !(f.Value.Type() == "bool" && d == "true" && f.NoOptDefVal != "") {
			if f.Value.Type() == "string" {
				d = fmt.Sprintf("%q", d)
			}
			text += " (default " + d + ")"
		}
		if f.Deprecated != "" {
			text += " Deprecated: " + f.Deprecated
		}
		writeLines(b, text)
	})
	return n
}

// writeExits writes lines "N  text" (continued on more indented lines)
// as .TP entries; other lines as text.
func writeExits(b *bytes.Buffer, exits string) {
	open := false
	for _, l := range strings.Split(exits, "\n") {
		t := strings.TrimSpace(l)
		if t == "" {
			continue
		}
		code, rest, ok := strings.Cut(t, " ")
		if ok && isDigits(code) {
			fmt.Fprintf(b, ".TP\n.B %s\n", code)
			writeLines(b, strings.TrimSpace(rest))
			open = true
			continue
		}
		if !open {
			b.WriteString(".PP\n")
		}
		writeLines(b, t)
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// writeText writes s as paragraphs: blank lines separate them, runs of
// indented lines are kept unfilled. first says s opens a section (no
// paragraph macro needed).
func writeText(b *bytes.Buffer, s string, first bool) {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	para := true // a paragraph starts
	pp := func() {
		if !first {
			b.WriteString(".PP\n")
		}
		first = false
	}
	nf := false
	for _, l := range lines {
		l = strings.TrimRight(strings.ReplaceAll(l, "\t", "        "), " ")
		switch {
		case l == "":
			if nf {
				b.WriteString(".fi\n.RE\n")
				nf = false
			}
			para = true
			continue
		case startsIndented(l):
			if !nf {
				pp()
				b.WriteString(".RS 4\n.nf\n")
				nf = true
			}
			// Keep the indentation beyond the common two spaces as
			// unbreakable space.
			trimmed := strings.TrimLeft(l, " ")
			extra := len(l) - len(trimmed) - 2
			if extra > 0 {
				b.WriteString(strings.Repeat("\\ ", extra))
				b.WriteString(escapeInline(trimmed) + "\n")
			} else {
				b.WriteString(Escape(trimmed) + "\n")
			}
			para = false
			continue
		}
		if nf {
			b.WriteString(".fi\n.RE\n")
			nf = false
			para = true
		}
		if para {
			pp()
			para = false
		}
		writeLines(b, l)
	}
	if nf {
		b.WriteString(".fi\n.RE\n")
	}
}

// writeLines writes s as text lines in fill mode, each escaped and
// wrapped at spaces to at most 80 bytes where it can.
func writeLines(b *bytes.Buffer, s string) {
	for _, l := range strings.Split(s, "\n") {
		writeEscaped(b, escapeInline(l))
	}
}

// writeEscaped writes the escaped text l in fill mode, wrapped at spaces.
func writeEscaped(b *bytes.Buffer, l string) {
	l = strings.Join(strings.Fields(l), " ")
	{
		for l != "" {
			cut := len(l)
			if cut > 80 {
				if i := strings.LastIndexByte(l[:81], ' '); i > 0 {
					cut = i
				} else if i := strings.IndexByte(l, ' '); i > 0 {
					cut = i
				}
			}
			b.WriteString(protect(l[:cut]) + "\n")
			l = strings.TrimLeft(l[cut:], " ")
		}
	}
}

// date returns d when it is YYYY-MM-DD (mandoc reads it as a date), else
// d escaped as text.
func date(d string) string {
	if _, err := time.Parse(time.DateOnly, d); err == nil {
		return d
	}
	return escapeInline(d)
}

func startsIndented(l string) bool { return strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") }

// Escape makes s one safe line of roff text: backslashes and hyphens
// escaped (\e, \-, so options copy as typed), a leading period or
// apostrophe (a request) and leading spaces neutralized with \&, every
// character beyond ASCII written as \[uXXXX], control characters
// dropped, and line breaks turned into spaces.
func Escape(s string) string { return protect(escapeInline(s)) }

// protect puts \& before an escaped line that would read as a request.
func protect(e string) string {
	if strings.HasPrefix(e, ".") || strings.HasPrefix(e, "'") || strings.HasPrefix(e, " ") {
		e = "\\&" + e
	}
	return e
}

// escapeInline escapes s for the middle of a line.
func escapeInline(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-':
			b.WriteString(`\-`)
		case r == '\n' || r == '\t' || r == '\r':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f:
			// dropped
		case r > 0x7e:
			if r == 0xfffd || r > 0x10ffff {
				b.WriteString(`\[uFFFD]`)
			} else {
				fmt.Fprintf(&b, `\[u%04X]`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// quoteArg makes s one argument of a macro line: quoted, its quotes
// doubled (""), escaped as text.
func quoteArg(s string) string {
	return `"` + strings.ReplaceAll(escapeInline(s), `"`, `""`) + `"`
}
