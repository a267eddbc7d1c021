//go:build race

package index

// raceEnabled is set when the race detector is on: allocation counts are
// not meaningful then.
const raceEnabled = true
