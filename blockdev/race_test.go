//go:build race

package blockdev

// raceSlowdown: under the race detector everything runs several times
// slower; time budgets of tests scale by it.
const raceSlowdown = 10
