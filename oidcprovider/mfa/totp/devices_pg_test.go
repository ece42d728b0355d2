package totp

import (
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// Two nodes on one PostgreSQL database (two Devices on two stores), many requests split over
// them, all sending the same valid code at once: exactly one is accepted and every other one is
// a replay, round after round. The process's lock cannot see the other node; only a claim in the
// shared store can.
func TestACodeIsAcceptedOnceAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	node := func() *Devices {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		return newDevices(t, Config{}, kv)
	}
	a, b := node(), node()
	secret := enrol(t, a, "uN")
	cfg := a.Config()

	const requests, rounds = 16, 20
	for round := 1; round <= rounds; round++ {
		now := t0.Add(time.Duration(round) * 30 * time.Second)
		c := code(t, cfg, secret, now)
		start := make(chan struct{})
		errs := make([]error, requests)
		var wg sync.WaitGroup
		for i := range requests {
			n := a
			if i%2 == 1 {
				n = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = n.Check(t.Context(), "uN", c, now)
			}()
		}
		close(start)
		wg.Wait()
		accepted := 0
		for i, err := range errs {
			switch {
			case err == nil:
				accepted++
			case !errors.Is(err, ErrReplayed):
				t.Errorf("round %d, request %d: %v, want accepted or ErrReplayed", round, i, err)
			}
		}
		if accepted != 1 {
			t.Fatalf("round %d: the code was accepted %d times, want exactly once", round, accepted)
		}
		// and once the race is over, on either node, it stays used
		for _, n := range []*Devices{a, b} {
			if err := n.Check(t.Context(), "uN", c, now.Add(time.Second)); !errors.Is(err, ErrReplayed) {
				t.Fatalf("round %d: the code again after the race: %v", round, err)
			}
		}
	}
}
