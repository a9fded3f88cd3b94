//go:build !linux

package main

import "time"

// threadCPU is not known here: burn spins for wall time instead.
func threadCPU() (time.Duration, bool) { return 0, false }
