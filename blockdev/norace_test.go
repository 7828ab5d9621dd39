//go:build !race

package blockdev

const raceSlowdown = 1
