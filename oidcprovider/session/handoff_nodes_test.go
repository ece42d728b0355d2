package session

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// Two nodes on one PostgreSQL database race to redeem one hand-off code, 4 tries each: exactly
// one of the 8 gets the session, however the race falls; and one sign-out on either node ends
// the sign-in's sessions on both domains.
func TestHandoffCodeIsUsedOnceAcrossNodes(t *testing.T) {
	dsn := pgtest.Start(t).Database(t)
	node := func() (*Store, *Handoffs) {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		return New(Config{}, kv), NewHandoffs(kv, time.Minute)
	}
	sa, ha := node()
	sb, hb := node()
	ctx := t.Context()
	id, sess, err := sa.Create(ctx, "john", OneFactor, false)
	if err != nil {
		t.Fatal(err)
	}
	_, binding := NewNonce()
	for round := range 3 {
		code, err := ha.Mint(ctx, &Handoff{Domain: "example.net", Binding: binding, Session: *sess})
		if err != nil {
			t.Fatal(err)
		}
		var won atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			h := ha
			if i%2 == 1 {
				h = hb
			}
			wg.Go(func() {
				if _, err := h.Take(ctx, code, "example.net", []string{binding}); err == nil {
					won.Add(1)
				} else if !errors.Is(err, ErrHandoff) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := won.Load(); n != 1 {
			t.Fatalf("round %d: %d redemptions of one code, want 1", round, n)
		}
	}
	oid, _, err := sb.Adopt(ctx, sess, "example.net", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.End(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sb.WhoIn(ctx, oid, "example.net"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a sign-out on one node left the other domain's session on the other: %v", err)
	}
}
