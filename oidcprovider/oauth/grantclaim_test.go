package oauth

import (
	"net/http"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// Two nodes on one PostgreSQL database race to exchange the same code, or to rotate the same
// refresh token: exactly one gets tokens, the other finds it spent (a replay, which revokes what
// the first obtained), however the race falls; the process's own locks cannot see the other
// node, the claim in the store does.
func TestACodeIsExchangedOnceAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	node := func() *flowProvider {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		return newFlowProviderOn(t, kv)
	}
	a, b := node(), node()
	for i := range 20 {
		code := a.authorize("app", nil)
		var wg sync.WaitGroup
		var statuses [2]int
		for j, n := range []*flowProvider{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[j], _ = n.exchange("app", code, "")
			}()
		}
		wg.Wait()
		ok := 0
		for _, s := range statuses {
			if s == http.StatusOK {
				ok++
			} else if s != http.StatusBadRequest {
				t.Errorf("race %d: an exchange answered %d", i, s)
			}
		}
		if ok != 1 {
			t.Fatalf("race %d: %d nodes exchanged the code (statuses %v), want exactly one", i, ok, statuses)
		}
	}
	// a refresh token rotated on both nodes at once: one rotation, and the other is a reuse
	for i := range 10 {
		_, out := a.exchange("app", a.authorize("app", nil), "")
		rt, _ := out["refresh_token"].(string)
		if rt == "" {
			t.Fatalf("no refresh token: %v", out)
		}
		var wg sync.WaitGroup
		var statuses [2]int
		for j, n := range []*flowProvider{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[j], _ = n.refresh("app", rt)
			}()
		}
		wg.Wait()
		if statuses[0] == statuses[1] || (statuses[0] != http.StatusOK && statuses[1] != http.StatusOK) {
			t.Fatalf("refresh race %d: statuses %v, want one 200 and one refusal", i, statuses)
		}
	}
	// the claims are given back: nothing is left under their prefix
	if n := a.keysUnder(t.Context(), grantClaimPrefix); n != 0 {
		t.Errorf("%d grant claims left in the store", n)
	}
}
