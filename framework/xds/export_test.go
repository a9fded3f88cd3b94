package xds

import "time"

// SetTimes replaces holdUnknown, forgetAfter and forgetCheck for s; call
// it before Run.
func SetTimes(s *Server, hold, forget, check time.Duration) {
	s.hold, s.forget, s.check = hold, forget, check
}

// Holding returns the number of requests s holds.
func Holding(s *Server) int { return s.cache.holding() }
