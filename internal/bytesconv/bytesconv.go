// Package bytesconv views byte slices as strings without copying, for the
// rule evaluators of engine and engine/rule.
package bytesconv

import "unsafe"

// B2S views b as a string without copying. The string aliases b: it is
// valid only while b is neither modified nor reused. The callers hand such
// strings to rule evaluators that run while the request's memory lives and
// keep nothing (TestDecideAllocs in engine shows what a copy would cost).
func B2S(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
