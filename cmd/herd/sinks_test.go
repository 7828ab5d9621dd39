package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/ring"
)

// TestDiskDest checks the destination herd deploy sends: written to
// --disk-dest only, and only where --allow permits; refused without it.
func TestDiskDest(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	other := filepath.Join(dir, "other.img")
	it := ring.Item{Name: "golden.img", Dest: agent.DiskDest, Size: 4}

	o := sinkOptions{allowFlags: []string{disk}}
	if err := o.prepare(""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openSink(it, o); !errors.Is(err, blockdev.ErrNotAllowed) {
		t.Fatalf("herd:disk without --disk-dest: %v", err)
	}
	o.diskDest = other
	if _, _, err := openSink(it, o); !errors.Is(err, blockdev.ErrNotAllowed) {
		t.Fatalf("--disk-dest outside --allow: %v", err)
	}
	o.diskDest = disk
	s, got, err := openSink(it, o)
	if err != nil {
		t.Fatal(err)
	}
	if got != disk {
		t.Fatalf("opened %s, want %s", got, disk)
	}
	if _, err := s.WriteAt([]byte("herd"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(disk); string(b) != "herd" {
		t.Fatalf("disk holds %q", b)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("%s was written", other)
	}
}
