package main

// herd's config file: flag defaults for every command in one YAML file
// (docs/config.md). parseConfig reads it without looking at any command;
// applyConfig sets the flags of the command that runs.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// defaultConfigPath is read when neither --config nor HERD_CONFIG names a
// file, and only if it exists.
var defaultConfigPath = "/etc/herd/herd.yaml"

// configEnv names a config file like --config does.
const configEnv = "HERD_CONFIG"

// maxConfigFile bounds what herd reads as a config file.
const maxConfigFile = 1 << 20

// configError is an error in a config file, at a line (0: the whole file).
type configError struct {
	File string
	Line int
	Msg  string
}

func (e *configError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// configValue is one key's value: a scalar, or a list (a YAML sequence).
type configValue struct {
	Line   int
	Scalar string
	List   []string
	IsList bool
}

// siteConfig is a parsed config file: top-level flag values for every
// command, and sections (keyed by command path without "herd", like
// "pxe serve") whose values override them for that command.
type siteConfig struct {
	File     string
	Top      map[string]configValue
	Sections map[string]configSection
}

// configSection is the flag values of one command.
type configSection struct {
	Line   int
	Values map[string]configValue
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseConfig reads a config file's text. It checks the shape only
// (a mapping of flag names to scalars or lists, and of command paths to
// such mappings); applyConfig checks the names against the commands.
func parseConfig(file string, data []byte) (*siteConfig, error) {
	cfg := &siteConfig{File: file, Top: map[string]configValue{}, Sections: map[string]configSection{}}
	if len(data) > maxConfigFile {
		return nil, &configError{File: file, Msg: fmt.Sprintf("larger than %d bytes: is it a config file?", maxConfigFile)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 0
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		return nil, &configError{File: file, Line: line, Msg: "not YAML: " + msg}
	}
	if doc.Kind == 0 { // empty file
		return cfg, nil
	}
	top := &doc
	if top.Kind == yaml.DocumentNode {
		if len(top.Content) == 0 {
			return cfg, nil
		}
		top = top.Content[0]
	}
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return cfg, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, &configError{File: file, Line: top.Line, Msg: "want a mapping of flag names to values (flag: value), like session: rack1 (a Dolly config goes to herd send -f)"}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		name, err := configKey(file, k)
		if err != nil {
			return nil, err
		}
		if l, dup := seen[name]; dup {
			return nil, &configError{File: file, Line: k.Line, Msg: fmt.Sprintf("%s given twice (first on line %d)", name, l)}
		}
		seen[name] = k.Line
		if v.Kind == yaml.MappingNode {
			sec := configSection{Line: k.Line, Values: map[string]configValue{}}
			inner := map[string]int{}
			for j := 0; j+1 < len(v.Content); j += 2 {
				sk, sv := v.Content[j], v.Content[j+1]
				sname, err := configKey(file, sk)
				if err != nil {
					return nil, err
				}
				if l, dup := inner[sname]; dup {
					return nil, &configError{File: file, Line: sk.Line, Msg: fmt.Sprintf("%s: %s given twice (first on line %d)", name, sname, l)}
				}
				inner[sname] = sk.Line
				val, err := configValueOf(file, name+": "+sname, sv)
				if err != nil {
					return nil, err
				}
				sec.Values[sname] = val
			}
			cfg.Sections[name] = sec
			continue
		}
		val, err := configValueOf(file, name, v)
		if err != nil {
			return nil, err
		}
		cfg.Top[name] = val
	}
	return cfg, nil
}

// configKey reads a mapping key: a plain name.
func configKey(file string, k *yaml.Node) (string, error) {
	if k.Kind != yaml.ScalarNode || strings.TrimSpace(k.Value) == "" {
		return "", &configError{File: file, Line: k.Line, Msg: "want a flag name or a command as the key"}
	}
	name := strings.Join(strings.Fields(k.Value), " ")
	if strings.HasPrefix(name, "-") {
		return "", &configError{File: file, Line: k.Line, Msg: fmt.Sprintf("%q: write the flag's name without dashes", k.Value)}
	}
	return name, nil
}

// configValueOf reads a flag's value: a scalar or a list of scalars.
func configValueOf(file, what string, v *yaml.Node) (configValue, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return configValue{}, &configError{File: file, Line: v.Line, Msg: fmt.Sprintf("%s has no value", what)}
		}
		return configValue{Line: v.Line, Scalar: v.Value}, nil
	case yaml.SequenceNode:
		cv := configValue{Line: v.Line, IsList: true}
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return configValue{}, &configError{File: file, Line: e.Line, Msg: fmt.Sprintf("%s: a list of plain values, not of lists or mappings", what)}
			}
			cv.List = append(cv.List, e.Value)
		}
		return cv, nil
	case yaml.AliasNode:
		return configValue{}, &configError{File: file, Line: v.Line, Msg: fmt.Sprintf("%s: aliases (*name) are not allowed", what)}
	default:
		return configValue{}, &configError{File: file, Line: v.Line, Msg: fmt.Sprintf("%s: want a value or a list", what)}
	}
}

// configPath returns the config file to read and whether it was asked
// for (--config, HERD_CONFIG: then it must exist); "" when there is none.
func configPath(root *cobra.Command) (string, bool) {
	if f := root.PersistentFlags().Lookup("config"); f != nil && f.Changed {
		return f.Value.String(), true
	}
	if p := os.Getenv(configEnv); p != "" {
		return p, true
	}
	return defaultConfigPath, false
}

// loadConfig reads the config file of this run; nil when there is none.
func loadConfig(root *cobra.Command) (*siteConfig, error) {
	path, explicit := configPath(root)
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, usageError{fmt.Errorf("config: %w", err)}
	}
	cfg, err := parseConfig(path, data)
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// configCommandPath is cmd's path without the root's name: "pxe serve".
func configCommandPath(cmd *cobra.Command) string {
	p := cmd.CommandPath()
	if i := strings.IndexByte(p, ' '); i >= 0 {
		return p[i+1:]
	}
	return ""
}

// noConfigFlags are flags a config file cannot set.
var noConfigFlags = map[string]bool{"config": true, "help": true}

// applyConfig checks cfg against the command tree of root and sets the
// flags of cmd that its command line left alone: a section named by cmd's
// path overrides the top level. A top-level key that is a flag of other
// commands only is ignored; one that no command has is an error, as is a
// section that names no command or a key its command lacks.
func applyConfig(root, cmd *cobra.Command, cfg *siteConfig) error {
	known := map[string]bool{}
	commands := map[string]*cobra.Command{}
	walkCommands(root, func(c *cobra.Command) {
		commands[configCommandPath(c)] = c
		for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { known[f.Name] = true })
		}
	})
	for _, name := range sortedKeys(cfg.Top) {
		v := cfg.Top[name]
		if noConfigFlags[name] {
			return usageError{&configError{File: cfg.File, Line: v.Line, Msg: fmt.Sprintf("--%s cannot be set in a config file", name)}}
		}
		if !known[name] {
			return usageError{&configError{File: cfg.File, Line: v.Line, Msg: fmt.Sprintf("unknown key %q: no herd command has a --%s flag", name, name)}}
		}
	}
	var secNames []string
	for n := range cfg.Sections {
		secNames = append(secNames, n)
	}
	sort.Strings(secNames)
	for _, n := range secNames {
		sec := cfg.Sections[n]
		c, ok := commands[n]
		if !ok || n == "" {
			return usageError{&configError{File: cfg.File, Line: sec.Line, Msg: fmt.Sprintf("unknown key %q: neither a herd command nor a flag given a value", n)}}
		}
		for _, name := range sortedKeys(sec.Values) {
			v := sec.Values[name]
			if noConfigFlags[name] {
				return usageError{&configError{File: cfg.File, Line: v.Line, Msg: fmt.Sprintf("--%s cannot be set in a config file", name)}}
			}
			if c.Flags().Lookup(name) == nil && c.InheritedFlags().Lookup(name) == nil {
				return usageError{&configError{File: cfg.File, Line: v.Line, Msg: fmt.Sprintf("herd %s has no --%s flag", n, name)}}
			}
		}
	}
	values := map[string]configValue{}
	for k, v := range cfg.Top {
		values[k] = v
	}
	for k, v := range cfg.Sections[configCommandPath(cmd)].Values {
		values[k] = v
	}
	fs := cmd.Flags()
	for _, name := range sortedKeys(values) {
		f := fs.Lookup(name)
		if f == nil || f.Changed {
			continue
		}
		v := values[name]
		if err := setFromConfig(fs, f, v); err != nil {
			return usageError{&configError{File: cfg.File, Line: v.Line, Msg: fmt.Sprintf("--%s: %v", name, err)}}
		}
	}
	return nil
}

// setFromConfig sets flag f of fs to v: a list element by element for a
// flag that takes several values, else the one value.
func setFromConfig(fs *pflag.FlagSet, f *pflag.Flag, v configValue) error {
	_, multi := f.Value.(pflag.SliceValue)
	if v.IsList {
		if !multi {
			return fmt.Errorf("takes one value, not a list")
		}
		if len(v.List) == 0 {
			return f.Value.(pflag.SliceValue).Replace(nil)
		}
		for _, e := range v.List {
			if err := fs.Set(f.Name, e); err != nil {
				return trimSetError(err)
			}
		}
		return nil
	}
	return trimSetError(fs.Set(f.Name, v.Scalar))
}

// trimSetError drops pflag's own wrapping of a refused value.
func trimSetError(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.TrimPrefix(err.Error(), "invalid argument "))
}

func sortedKeys(m map[string]configValue) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// walkCommands calls fn for c and every command below it.
func walkCommands(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, s := range c.Commands() {
		walkCommands(s, fn)
	}
}
