//go:build race

package lb

// raceEnabled: the race detector makes sync.Pool drop objects at random,
// so pooled paths allocate under it.
const raceEnabled = true
