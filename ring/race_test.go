//go:build race

package ring

// raceEnabled: under the race detector everything runs several times
// slower, and timing-based policies (the slow-node detection) misjudge
// healthy nodes; tests that measure them skip.
const raceEnabled = true
