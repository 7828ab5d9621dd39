package filelevel

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/desc"
)

// AddMounts sets the mount point of every partition of p whose
// filesystem is mounted at dir or below it, matched by filesystem UUID
// (so it works for partitions reached through loop devices too): a
// filesystem mounted at dir gets "/", one at dir/var gets "/var". p must
// have been probed (desc.Probe) for the UUIDs. It returns one line per
// partition given a mount point. Bind mounts and other mounts of the same
// filesystem count once, at their shallowest point.
func AddMounts(p *desc.Plan, dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	ms, err := blockdev.ParseMountinfo(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	sort.SliceStable(ms, func(i, j int) bool { return len(ms[i].Point) < len(ms[j].Point) })
	byUUID := map[string]string{}
	for _, m := range ms {
		rel, ok := under(abs, m.Point)
		if !ok || !strings.HasPrefix(m.Source, "/dev/") {
			continue
		}
		uuid := probeUUID(m.Source)
		if _, seen := byUUID[uuid]; uuid != "" && !seen {
			byUUID[uuid] = rel
		}
	}
	var out []string
	for i := range p.Parts {
		pp := &p.Parts[i]
		if rel, ok := byUUID[pp.UUID]; ok && pp.UUID != "" && pp.FS != "swap" {
			pp.Mount = rel
			out = append(out, fmt.Sprintf("partition %d (%s %s) is mounted at %s", pp.Index, pp.FS, pp.UUID, filepath.Join(abs, rel)))
		}
	}
	return out, nil
}

// under returns point relative to dir as an absolute path ("/", "/var")
// when point is dir or inside it.
func under(dir, point string) (string, bool) {
	if point == dir {
		return "/", true
	}
	if dir == "/" {
		return point, strings.HasPrefix(point, "/")
	}
	if rest, ok := strings.CutPrefix(point, dir+"/"); ok {
		return "/" + rest, true
	}
	return "", false
}

// probeUUID returns the filesystem UUID on a device, "" if unknown.
func probeUUID(dev string) string {
	f, err := os.Open(dev)
	if err != nil {
		return ""
	}
	defer f.Close()
	_, _, uuid := desc.ProbeFS(f)
	return uuid
}
