package webauthn

import (
	"errors"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// Two nodes on one PostgreSQL database (two Devices on two stores), many requests split over
// them, all finishing the same login ceremony with the same signed answer at once: the ceremony
// (its challenge) is taken once, so exactly one request is accepted, round after round. The
// process's lock cannot see the other node; only a claim in the shared store can.
func TestALoginCeremonyIsFinishedOnceAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	node := func() *Devices {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		d, _ := newDevices(t, kv)
		return d
	}
	a, b := node(), node()
	key := newAuthenticator(t)
	register(t, a, key, "uN", "key")

	const requests, rounds = 16, 20
	for round := 1; round <= rounds; round++ {
		options, err := a.BeginLogin(t.Context(), "uN", "session-1")
		if err != nil {
			t.Fatal(err)
		}
		response := key.login(t, options)
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
				errs[i] = n.FinishLogin(t.Context(), "uN", "session-1", response)
			}()
		}
		close(start)
		wg.Wait()
		accepted := 0
		for i, err := range errs {
			switch {
			case err == nil:
				accepted++
			case !errors.Is(err, ErrNoCeremony) && !errors.Is(err, ErrVerification):
				t.Errorf("round %d, request %d: %v, want accepted, ErrNoCeremony or ErrVerification", round, i, err)
			}
		}
		if accepted != 1 {
			t.Fatalf("round %d: the login was accepted %d times, want exactly once", round, accepted)
		}
	}
}
