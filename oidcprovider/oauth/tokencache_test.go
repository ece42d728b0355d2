package oauth

import (
	"fmt"
	"testing"
	"time"
)

// A record read from the store before its token was forgotten (revoked here, or by another node
// through the change feed) is not cached after it; a forget of a token in another stripe, or
// before the read began, does not hold the caching back.
func TestTokenCacheRefusesARecordReadBeforeAForget(t *testing.T) {
	c := NewTokenCache(100)
	e := &cachedToken{identity: BearerIdentity{ExpiresAt: time.Now().Add(time.Hour)}}
	gen := c.gen("sig-a")
	c.Forget("sig-a") // the revocation lands while the record is being read
	c.put("sig-a", e, gen)
	if c.get("sig-a") != nil {
		t.Fatal("a record read before its revocation was cached after it")
	}
	other := ""
	for i := 0; other == ""; i++ {
		if s := fmt.Sprint("sig-", i); c.stripe(s) != c.stripe("sig-a") {
			other = s
		}
	}
	gen = c.gen("sig-a")
	c.Forget(other)
	c.put("sig-a", e, gen)
	if c.get("sig-a") != e {
		t.Fatal("a forget of another token's stripe kept this one out")
	}
	gen = c.gen("sig-b")
	c.ForgetAll()
	c.put("sig-b", e, gen)
	if c.get("sig-b") != nil || c.get("sig-a") != nil {
		t.Fatal("ForgetAll left a token, or let a record read before it in")
	}
}
