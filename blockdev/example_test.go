package blockdev_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/herd-cluster/herd/blockdev"
)

// Copy a sparse image to a new file, sending only its data, and check the
// copy by reading it back.
func Example() {
	dir, _ := os.MkdirTemp("", "blockdev-example-")
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "disk.img")
	f, _ := os.Create(img)
	f.Truncate(8 << 20)                    // 8 MiB, all hole
	f.WriteAt([]byte("boot sector"), 0)    // some data at the start
	f.WriteAt([]byte("superblock"), 4<<20) // and in the middle
	f.Close()

	src, err := blockdev.OpenSource(img, blockdev.SourceOptions{SkipZeros: true, ZeroBlock: 4096})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	dst, err := blockdev.OpenFileSink("copy.img", src.Size(), blockdev.SinkOptions{Root: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	sent := blockdev.NewRunDigest()
	buf := make([]byte, 1<<20)
	for {
		off, n, err := src.ReadChunk(buf)
		if err == io.EOF {
			break
		}
		sent.Add(off, buf[:n])
		dst.WriteAt(buf[:n], off)
	}
	dst.Sync()
	dst.Close()
	back, _ := dst.ReadBack()
	fmt.Println(src.Stats().YieldedBytes, "bytes sent of", src.Size())
	fmt.Println("verified:", back == sent.Sum())
	// Output:
	// 8192 bytes sent of 8388608
	// verified: true
}

// The Dolly+ cooking rules, by source name.
func ExamplePlanCook() {
	for _, name := range []string{"root.tar.gz", "boot.cpio.Z", "disk.img.zst"} {
		p, _ := blockdev.PlanCook(name)
		fmt.Printf("%s: compression=%q archive=%q\n", name, p.Compression, p.Archive)
	}
	// Output:
	// root.tar.gz: compression="gzip" archive="tar"
	// boot.cpio.Z: compression="compress" archive="cpio"
	// disk.img.zst: compression="zstd" archive=""
}

func ExampleStats_String() {
	fmt.Println(blockdev.Stats{Method: "ext4", DeviceBytes: 64 << 20, UsedBytes: 5 << 20, YieldedBytes: 5 << 20})
	// Output: ext4: 64.0 MiB on the device, 5.0 MiB used (7.8%), 5.0 MiB sent
}
