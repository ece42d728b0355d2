package federation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// Two nodes on one PostgreSQL database: an identity linked from both at once to two users is
// linked to one of them alone, and a flow's callback sent to both nodes at once completes once.
func TestAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	node := func() store.KV {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		return kv
	}
	kvA, kvB := node(), node()
	ctx := context.Background()

	for round := range 10 {
		id := &Identity{Provider: "up", Subject: "race-" + string(rune('a'+round))}
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			kv, user := kvA, fmt.Sprint("alice-", round)
			if i%2 == 1 {
				kv, user = kvB, fmt.Sprint("bob-", round)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = NewLinks(kv).Add(ctx, id, user, time.Now())
			}()
		}
		wg.Wait()
		link, err := NewLinks(kvB).Find(ctx, id.Provider, id.Subject)
		if err != nil {
			t.Fatal(err)
		}
		for i, err := range errs {
			mine := map[bool]string{true: "bob-", false: "alice-"}[i%2 == 1]+fmt.Sprint(round) == link.User
			if mine && err != nil || !mine && !errors.Is(err, ErrLinkedElsewhere) {
				t.Fatalf("round %d, add %d: %v (linked to %s)", round, i, err, link.User)
			}
		}
		if l, _ := NewLinks(kvA).List(ctx, link.User); len(l) != 1 {
			t.Fatalf("round %d: %s's links %+v", round, link.User, l)
		}
	}

	u := newUpstream(t)
	pa, pb := newProvider(t, u, kvA, nil), newProvider(t, u, kvB, nil)
	authURL, binding, err := pa.Begin(ctx, Pending{Intent: IntentSignIn})
	if err != nil {
		t.Fatal(err)
	}
	cb := u.authorize(authURL)
	var wg sync.WaitGroup
	results := make([]error, 8)
	for i := range results {
		p := pa
		if i%2 == 1 {
			p = pb
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, results[i] = p.Finish(ctx, cb, binding)
		}()
	}
	wg.Wait()
	done := 0
	for _, err := range results {
		switch {
		case err == nil:
			done++
		case !errors.Is(err, ErrState):
			t.Errorf("a racing callback: %v", err)
		}
	}
	if done != 1 {
		t.Fatalf("the callback completed %d times, want once", done)
	}
}
