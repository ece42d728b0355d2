package portal

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
)

// Two nodes on one PostgreSQL database race to spend one code, 8 submissions each: exactly one
// of the 16 is accepted, however the race falls (the process's own locks cannot see the other
// node; the claim in the store does). A code issued on one node is checked on the other.
func TestElevationCodeIsSpentOnceAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	w := newPortalWorld(t) // for its users file
	a, b := newNode(t, dsn, w.users, nil), newNode(t, dsn, w.users, nil)
	const sessionID = "a-session-id"
	for round := range 10 {
		code, err := a.issueCode(t.Context(), "john", sessionID)
		if err != nil {
			t.Fatal(err)
		}
		var accepted atomic.Int32
		var wg sync.WaitGroup
		for i := range 16 {
			n := []*Portal{a, b}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := n.spendCode(context.Background(), "john", sessionID, code)
				if err != nil {
					t.Error(err)
				} else if ok {
					accepted.Add(1)
				}
			}()
		}
		wg.Wait()
		if accepted.Load() != 1 {
			t.Fatalf("round %d: %d of 16 submissions on two nodes accepted, want 1", round, accepted.Load())
		}
	}
}
