// Package desc reads, lays out, encodes, decodes and applies partition
// descriptions ("descs"), the text format KA used to describe a disk,
// extended by herd with GPT, filesystems, labels, mount points, flags
// and sizes with units or percentages (see docs/desc.md for the grammar).
//
// The work goes in four steps, and nothing touches a disk before the
// last one:
//
//	d, err := desc.Parse(text)                 // text → model (errors name line:col)
//	plan, err := d.Layout(diskBytes, 512)      // model → exact sectors, 1 MiB aligned
//	writes, err := plan.Encode()               // plan → MBR/EBR or GPT bytes
//	err = desc.Apply(ctx, plan, "/dev/loop3")  // write the table, then mkfs each filesystem
//
// The way back reads a table from any disk or image:
//
//	plan, err := desc.ReadTable(f, size)       // MBR (with EBR chain) or GPT
//	desc.Probe(f, plan)                        // optional: find filesystems, labels, UUIDs
//	fmt.Print(desc.ToDesc(plan))               // last partition of each container is `fill`
//
// Parse, Layout, Encode, ReadTable and ToDesc are pure and safe for
// concurrent use on distinct values. Apply runs external tools
// (losetup, mkfs.*, mkswap) and must be given a device nobody uses.
//
// Public: descs are a file format admins write, and other tools may lay
// them out or apply them.
package desc
