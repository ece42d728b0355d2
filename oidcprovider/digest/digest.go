// Package digest is the bounded, cached verification of password and secret digests. Every
// digest check of the process (client secrets, user passwords) runs through Run, in one of a few
// process-wide slots, so guessing can never starve the gateway's other requests of CPU; a Cache
// remembers secrets that passed a full check, so a caller presenting the same secret again costs
// one HMAC instead of a digest.
package digest

import (
	"context"
	"runtime"
)

// slots caps the digest checks that run at once in the process, at about the core count. It is
// process-wide on purpose: CPU is, and a config reload must not double it.
var slots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// Slots is how many digest checks run at once at most.
func Slots() int { return cap(slots) }

// Run runs check (a password or secret digest check) in one of the process-wide digest slots,
// waiting for one while ctx allows; when ctx ends first, check does not run and the error is
// ctx's. Every kind of digest work shares the same cap.
func Run(ctx context.Context, check func() bool) (bool, error) {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-slots }()
	return check(), nil
}
