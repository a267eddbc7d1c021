//go:build race

package engine

// raceEnabled is set when the race detector is on: long tests run
// smaller then.
const raceEnabled = true
