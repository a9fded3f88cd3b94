//go:build !unix

package overload

import "time"

// processCPU is unknown here: the limiter then takes the CPU as busy and
// sheds by the limit alone.
func processCPU() (time.Duration, bool) { return 0, false }
