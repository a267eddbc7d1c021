// Package server is edgerec's HTTP front: fasthttp routing and handlers,
// request parsing, JSON writing, authentication, limits and metrics, over
// the snapshots and state store of package index.
//
// The serving API of ../shared/DESIGN.md lands here with the serving issue
// (Spine 2); until then this package holds no code.
package server
