package desc_test

import (
	"fmt"

	"github.com/herd-cluster/herd/desc"
)

// KA's default desc laid out on an 80 GB and a 2 TB disk: the fixed
// partitions keep their size, the fill ones stretch.
func ExampleDesc_Layout() {
	d, err := desc.Parse("linux 3500\nextended fill\nlogical swap 500\nlogical linux fill\n")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, size := range []int64{80e9, 2e12} {
		plan, err := d.Layout(size, 512)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, p := range plan.Parts {
			fmt.Printf("%d %s start=%d sectors=%d\n", p.Index, p.Type.Name, p.Start, p.Sectors)
		}
	}
	// Output:
	// 1 linux start=2048 sectors=7168000
	// 2 extended start=7170048 sectors=149078016
	// 5 swap start=7172096 sectors=1024000
	// 6 linux start=8198144 sectors=148049920
	// 1 linux start=2048 sectors=7168000
	// 2 extended start=7170048 sectors=3899078656
	// 5 swap start=7172096 sectors=1024000
	// 6 linux start=8198144 sectors=3898050560
}

// A parse error names the line and column.
func ExampleParse_error() {
	_, err := desc.Parse("linux 3500\nlogical swap 500\n")
	fmt.Println(err)
	// Output:
	// desc:2:1: logical partition without an extended partition before it
}
