package oauth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Revocations is what the gate knows, in memory, of the JWT access tokens (RFC 9068) that ended
// before they expired, so it accepts a JWT access token without reading the store:
//
//   - revoked tokens, by jti: a revocation at the revocation endpoint (of the token, or of its
//     refresh token, which ends every access token of the grant), a refresh token's rotation or
//     replay, a sign-out that ends the tokens of its session, `caddy oidc tokens revoke`;
//   - ended portal sessions, by sid, with the moment they ended: a token of the session issued
//     before then is refused (belt and braces beside the tokens a sign-out ends one by one: it
//     also holds for a token whose record the sign-out's listing did not see);
//
// beside the clients' and users' cut-offs (ClientCutoffs), which the gate reads as it does for
// opaque tokens. Each entry is kept in the store (a small key whose name holds all it says, with
// the time-to-live of what it revokes), read back when the store opens, and dropped from memory
// when what it revokes has expired. One belongs to each open store, as ClientCutoffs does. On a
// store several nodes share, Follow keeps it in step with what any node writes; while the node
// does not receive the changes, Trusted is false and the gate reads the token's record instead.
//
// The gate reads it on every request with a JWT access token: a read lock and one or two map
// lookups. Writers take the lock briefly; 200,000 entries cost a few megabytes (the revoked
// tokens are kept as 16-byte keys).
type Revocations struct {
	mu     sync.RWMutex
	tokens map[uuid.UUID]int64   // jti → expiry (Unix seconds)
	ended  map[string]sessionEnd // sid → when it ended, until when it matters
	// sweepAt is when the next write drops expired entries (Unix seconds).
	sweepAt int64
	// feed, when set (Follow), says whether this node receives the shared store's changes.
	feed atomic.Pointer[revocationFeed]
}

// sessionEnd is an ended portal session: its tokens issued at or before at (Unix nanoseconds)
// are refused until exp (Unix seconds).
type sessionEnd struct{ at, exp int64 }

// revocationFeed is what a Revocations that follows a shared store needs: whether the node
// receives the changes, and how many full reloads are still under way.
type revocationFeed struct {
	trusted func() bool
	pending atomic.Int64
}

// RevocationKeyPrefix is the store prefix of the revocation entries, whose writes a Revocations
// follows on a shared store. A revoked token is RevocationKeyPrefix+"t/<jti>/<exp>", an ended
// session RevocationKeyPrefix+"s/<sid>/<ended, Unix ns>/<exp>" (exp in Unix seconds).
const RevocationKeyPrefix = "at-revoked/"

// sweepEvery is how often a write drops the entries whose tokens have expired.
const sweepEvery = time.Minute

// LoadRevocations reads the revocation entries kept in kv.
func LoadRevocations(ctx context.Context, kv store.KV) (*Revocations, error) {
	r := &Revocations{tokens: map[uuid.UUID]int64{}, ended: map[string]sessionEnd{}}
	if err := r.reload(ctx, kv); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads every entry kept in kv into memory (merging: nothing is forgotten).
func (r *Revocations) reload(ctx context.Context, kv store.KV) error {
	keys, err := kv.Keys(ctx, []byte(RevocationKeyPrefix))
	if err != nil {
		return fmt.Errorf("reading the revoked JWT access tokens: %w", err)
	}
	now := time.Now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		r.installLocked(k, now)
	}
	return nil
}

// installLocked adds the entry a store key names (malformed or expired: ignored). r.mu is held.
func (r *Revocations) installLocked(key []byte, now int64) {
	rest, ok := strings.CutPrefix(string(key), RevocationKeyPrefix)
	if !ok {
		return
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 3 && parts[0] == "t":
		jti, err := uuid.Parse(parts[1])
		exp, err2 := strconv.ParseInt(parts[2], 10, 64)
		if err != nil || err2 != nil || exp <= now {
			return
		}
		r.tokens[jti] = max(exp, r.tokens[jti])
	case len(parts) == 4 && parts[0] == "s" && parts[1] != "":
		at, err := strconv.ParseInt(parts[2], 10, 64)
		exp, err2 := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || err2 != nil || exp <= now {
			return
		}
		old := r.ended[parts[1]]
		r.ended[parts[1]] = sessionEnd{at: max(at, old.at), exp: max(exp, old.exp)}
	}
}

// sweepLocked drops the entries whose tokens have all expired, at most once a sweepEvery.
// r.mu is held.
func (r *Revocations) sweepLocked(now int64) {
	if now < r.sweepAt {
		return
	}
	r.sweepAt = now + int64(sweepEvery/time.Second)
	for k, exp := range r.tokens {
		if exp <= now {
			delete(r.tokens, k)
		}
	}
	for k, e := range r.ended {
		if e.exp <= now {
			delete(r.ended, k)
		}
	}
}

// write keeps key in kv until exp and installs it in memory.
func (r *Revocations) write(ctx context.Context, kv store.KV, key string, exp time.Time) error {
	ttl := time.Until(exp)
	if ttl <= 0 {
		return nil // what it revokes has expired already
	}
	if err := kv.Put(ctx, store.Entry{Key: []byte(key), Value: []byte{1}, TTL: ttl + time.Second}); err != nil {
		return err
	}
	now := time.Now().Unix()
	r.mu.Lock()
	r.installLocked([]byte(key), now)
	r.sweepLocked(now)
	r.mu.Unlock()
	return nil
}

// RevokeToken makes the JWT access token jti count as revoked until exp, its expiry, here and
// (through the store) on every node and after a restart.
func (r *Revocations) RevokeToken(ctx context.Context, kv store.KV, jti uuid.UUID, exp time.Time) error {
	exp = exp.Add(time.Second - 1).Truncate(time.Second) // whole seconds, never earlier
	key := RevocationKeyPrefix + "t/" + jti.String() + "/" + strconv.FormatInt(exp.Unix(), 10)
	if err := r.write(ctx, kv, key, exp); err != nil {
		return fmt.Errorf("keeping the revocation of a JWT access token: %w", err)
	}
	return nil
}

// EndSession makes the JWT access tokens of the portal session sid issued at or before at count
// as revoked, until exp (the longest an access token issued at at can live).
func (r *Revocations) EndSession(ctx context.Context, kv store.KV, sid string, at, exp time.Time) error {
	if sid == "" || strings.Contains(sid, "/") {
		return errors.New("oauth: ending a session's JWT access tokens: no usable sid")
	}
	exp = exp.Add(time.Second - 1).Truncate(time.Second)
	key := RevocationKeyPrefix + "s/" + sid + "/" + strconv.FormatInt(at.UnixNano(), 10) + "/" + strconv.FormatInt(exp.Unix(), 10)
	if err := r.write(ctx, kv, key, exp); err != nil {
		return fmt.Errorf("keeping the end of a session's JWT access tokens: %w", err)
	}
	return nil
}

// Revoked reports whether the JWT access token jti, of the portal session sid ("" for none),
// issued at issuedAt, was revoked. It answers from memory: check Trusted first.
func (r *Revocations) Revoked(jti uuid.UUID, sid string, issuedAt time.Time) bool {
	r.mu.RLock()
	_, revoked := r.tokens[jti]
	if !revoked && sid != "" {
		if e, ok := r.ended[sid]; ok && issuedAt.UnixNano() <= e.at {
			revoked = true
		}
	}
	r.mu.RUnlock()
	return revoked
}

// Trusted reports whether Revoked may be believed: always on a store only this process opens;
// on a shared store, while the node receives its changes and has read back what it may have
// missed. When it is false, the gate reads a token's record from the store instead.
func (r *Revocations) Trusted() bool {
	f := r.feed.Load()
	return f == nil || (f.trusted() && f.pending.Load() == 0)
}

// Len is the number of entries held (revoked tokens and ended sessions, expired ones not yet
// swept included).
func (r *Revocations) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.tokens) + len(r.ended)
}

// Follow keeps the entries in step with kv, a store several nodes share, through ch, its change
// feed: an entry written by any node is installed from its key (which holds all it says, so no
// read is needed); a nil key (the feed is back after a gap) reads every entry back, and until
// that is done, or while ch is not Trusted, Trusted is false. It returns the function that stops
// following, after which Trusted is always false.
func (r *Revocations) Follow(kv store.KV, ch store.Changes) (stop func()) {
	f := &revocationFeed{trusted: ch.Trusted}
	ctx, cancel := context.WithCancel(context.Background())
	f.pending.Add(1) // what was loaded before may have changed unseen
	go r.reloadUntilDone(ctx, kv, f)
	r.feed.Store(f)
	unwatch := ch.Watch([]byte(RevocationKeyPrefix), func(key []byte) {
		if key == nil {
			f.pending.Add(1)
			go r.reloadUntilDone(ctx, kv, f)
			return
		}
		now := time.Now().Unix()
		r.mu.Lock()
		r.installLocked(key, now)
		r.sweepLocked(now)
		r.mu.Unlock()
	})
	return func() {
		unwatch()
		cancel()
		r.feed.Store(&revocationFeed{trusted: func() bool { return false }})
	}
}

// reloadUntilDone reads every entry back, trying again until it succeeds or ctx ends, and then
// takes back the pending reload it answers for.
func (r *Revocations) reloadUntilDone(ctx context.Context, kv store.KV, f *revocationFeed) {
	wait := 50 * time.Millisecond
	for {
		err := r.reload(ctx, kv)
		if err == nil {
			f.pending.Add(-1)
			return
		}
		if errors.Is(err, store.ErrClosed) {
			return // the store is gone, and the backend with it
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
