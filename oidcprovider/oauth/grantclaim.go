package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// On a store several nodes share, grantLocks (a process's mutexes) do not keep two nodes from
// exchanging one code, or rotating one refresh token, at the same time: both would read the
// grant unspent and both issue tokens. A claim in the store does: the first exchange to create
// the grant's claim key (store.Claim is atomic across nodes) holds it, the others wait for it to
// be deleted and then find the grant spent, as a replay, which revokes what it issued.
const (
	// grantClaimPrefix is the store prefix of the claims: the SHA-256 of the code or refresh
	// token follows, never the grant itself.
	grantClaimPrefix = "grant-claim/"
	// grantClaimTTL bounds a claim whose node died holding it.
	grantClaimTTL = 30 * time.Second
	// grantClaimWait bounds how long an exchange waits for another's claim.
	grantClaimWait = 10 * time.Second
)

// errGrantBusy answers an exchange that waited too long for another node's exchange of the
// same grant.
var errGrantBusy = fosite.ErrTemporarilyUnavailable.WithHint("Another exchange of this grant is in progress; retry shortly.")

// claimGrant takes the cross-node claim of grant (a code or a refresh token), waiting while
// another exchange holds it, and returns the function that gives it back.
func (s *tokenStorage) claimGrant(ctx context.Context, grant string) (release func(), err error) {
	sum := sha256.Sum256([]byte(grant))
	key := []byte(grantClaimPrefix + hex.EncodeToString(sum[:]))
	deadline := time.Now().Add(grantClaimWait)
	wait := 2 * time.Millisecond
	for {
		_, claimed, err := store.Claim(ctx, s.kv, key, grantClaimTTL)
		if err != nil {
			// a 503 (temporarily_unavailable), never a 500: the store is down or slow
			return nil, fosite.ErrTemporarilyUnavailable.WithHint("The provider's store cannot be reached; retry shortly.").
				WithWrap(fmt.Errorf("claiming a grant: %w", err))
		}
		if claimed {
			return func() { _ = s.kv.Delete(context.WithoutCancel(ctx), key) }, nil
		}
		if time.Now().After(deadline) {
			return nil, errGrantBusy
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}
