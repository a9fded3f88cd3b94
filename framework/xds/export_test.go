package xds

import (
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// SetTimes replaces holdUnknown, forgetAfter and forgetCheck for s; call
// it before Run.
func SetTimes(s *Server, hold, forget, check time.Duration) {
	s.hold, s.forget, s.check = hold, forget, check
}

// Holding returns the number of requests s holds.
func Holding(s *Server) int { return s.cache.holding() }

// HoldUnknown is holdUnknown.
const HoldUnknown = holdUnknown

// HoldingCache is holdingCache.
type HoldingCache = holdingCache

// NewHoldingCache returns a holdingCache over inner.
func NewHoldingCache(inner cachev3.SnapshotCache) *HoldingCache { return newHoldingCache(inner) }

// Release ends h's hold.
func Release(h *HoldingCache) error { return h.release() }

// Held returns the number of requests h holds.
func Held(h *HoldingCache) int { return h.holding() }

// NodeGroup is the node the server's snapshots are set for.
const NodeGroup = nodeGroup
