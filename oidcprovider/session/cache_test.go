package session

import "testing"

// A session read from the store before it was dropped (ended here, or by another node through
// the change feed) is not cached after it.
func TestCacheRefusesASessionReadBeforeADrop(t *testing.T) {
	c := NewCache(1000)
	h := [32]byte{1}
	sess := &Session{User: "john"}
	gen := c.gen(&h)
	c.drop(&h) // the sign-out lands while the session is being read
	c.put(&h, sess, gen)
	if c.get(&h) != nil {
		t.Fatal("a session read before its end was cached after it")
	}
	c.put(&h, sess, c.gen(&h))
	if c.get(&h) != sess {
		t.Fatal("a session read after the drop was not cached")
	}
	gen = c.gen(&[32]byte{2})
	c.dropAll()
	c.put(&[32]byte{2}, sess, gen)
	if c.get(&h) != nil || c.get(&[32]byte{2}) != nil {
		t.Fatal("dropAll left a session, or let one read before it in")
	}
}
