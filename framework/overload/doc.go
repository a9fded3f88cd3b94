// Package overload sheds the calls an instance cannot serve in time, so
// that under overload it keeps serving what it can instead of queueing
// every call past its deadline.
//
// A Limiter bounds the calls in flight by what the instance has shown it
// can serve, by Little's law: the most calls completed per second in the
// last window (1 s in 10 buckets), times the shortest latency of a call in
// that window (of the buckets that saw a tenth of the busiest one's calls). It sheds only while the CPU is busy (80 % of what the
// process may use) or within a second of a shed while it was, so an idle or
// I/O-bound instance never sheds; this is the design of BBR in kratos and
// of go-zero's shedder. A call over the limit fails at once with
// RESOURCE_EXHAUSTED, before any handler work; callers retry it elsewhere.
//
// The CPU the process may use is read from its cgroup (v2 cpu.max, v1
// cpu.cfs_quota_us and cpu.cfs_period_us), so a container limited to one
// core of a larger machine sheds at 80 % of that core, not of the machine;
// and it is at most GOMAXPROCS cores, which is all the Go scheduler runs
// Go code on.
//
// Calls to the health service, reflection and ORCA are never shed, nor
// counted or measured; other methods may be made Critical (the same) or
// Sheddable (shed first, at three quarters of the limit) with WithPriority. A stream is admitted or
// shed when it opens, like a unary call, but does not hold a slot while it
// lasts: a long stream is not load in the sense the limit measures.
package overload
