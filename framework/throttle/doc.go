// Package throttle rejects a client's calls locally, before they leave the
// process, while the backend is rejecting most of them: the adaptive
// throttling of Google's SRE book (chapter 21, "Handling Overload").
//
// A Throttle counts, over a sliding window (10 s in 10 buckets by
// default), the calls the client attempted (requests) and those the
// backend accepted (accepts: every outcome but RESOURCE_EXHAUSTED and
// UNAVAILABLE, the answers of a backend shedding load or gone). Each new
// call is rejected locally with probability
//
//	max(0, (requests − K × accepts − slack) / (requests + 1))
//
// with K = 2 and slack = 10 by default, over 3 s. While the backend
// accepts half the calls or more nothing is rejected; when it accepts
// fewer, the client sends about K times what it accepts, so a fleet that
// sheds is not also buried under the calls it refuses, and the client
// still sends enough to see the backend recover. Calls rejected locally
// count as requests, so the probability falls window by window as accepts
// return: two to four windows after a total outage ends.
//
// It is off by default: one Throttle serves one backend (a target, as the
// SRE book keeps one per backend); its interceptors go on that target's
// conn, e.g. through client.WithUnaryInterceptor and
// client.WithStreamInterceptor.
// Server side, package overload sheds what an instance cannot serve; this
// package is its client-side counterpart for clients that would otherwise
// pile onto a shedding fleet. Retries (gRPC's retry throttling in package
// client) happen inside a call: a throttled call is not retried.
package throttle
