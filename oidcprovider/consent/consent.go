// Package consent keeps remembered (pre-configured) consent: a user's answer to a client's
// consent page, kept for a while so that the same request does not ask again. As in Authelia,
// a remembered consent matches only the same user and client asking for exactly the same
// scopes and audience, until it expires or the user withdraws it.
package consent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Key layout in the store. The username is base64url-encoded (no padding, so never a '/'),
// so one user's prefix never covers another's keys: user "a" does not list user "a/b"'s grants.
//
//	consent/grant/<b64url(username)>/<id>     → record (JSON)
//	consent/match/<b64url(username)>/<digest> → the id of the grant for that request
//
// digest is the base64url SHA-256 of the client id, the sorted scopes and the sorted audience,
// each length-prefixed. Both keys carry the grant's lifetime as their time-to-live.
const (
	grantPrefix = "consent/grant/"
	matchPrefix = "consent/match/"
)

// idBytes is the size of a grant id's randomness (the id is its base64url form, 22 characters).
const idBytes = 16

// lockStripes is the number of mutexes that serialise changes to one user's grants.
const lockStripes = 64

// Grant is one remembered consent.
type Grant struct {
	// ID names the grant for Withdraw; random and opaque.
	ID string
	// Username is the user who consented.
	Username string
	// ClientID is the client the user consented to.
	ClientID string
	// Scopes are the scopes consented to, sorted, without duplicates.
	Scopes []string
	// Audience is the audience consented to, sorted, without duplicates.
	Audience []string
	// GrantedAt is when the user consented.
	GrantedAt time.Time
	// ExpiresAt is when the grant stops matching.
	ExpiresAt time.Time
}

// record is a Grant as stored.
type record struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes"`
	Audience  []string  `json:"audience"`
	GrantedAt time.Time `json:"granted_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// grant converts a record; the two types have the same fields, so a field added to one must be
// added to the other.
func (r record) grant() Grant { return Grant(r) }

// Store keeps remembered consent in a store.KV. It is safe for concurrent use; changes to one
// user's grants are serialised within the Store.
type Store struct {
	kv    store.KV
	seed  maphash.Seed
	locks [lockStripes]sync.Mutex
}

// NewStore keeps remembered consent in kv.
func NewStore(kv store.KV) *Store { return &Store{kv: kv, seed: maphash.MakeSeed()} }

func (s *Store) lock(username string) *sync.Mutex {
	return &s.locks[maphash.String(s.seed, username)%lockStripes]
}

func encUser(username string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(username))
}

func grantUserPrefix(username string) []byte { return []byte(grantPrefix + encUser(username) + "/") }
func matchUserPrefix(username string) []byte { return []byte(matchPrefix + encUser(username) + "/") }

func grantKey(username, id string) []byte {
	return append(grantUserPrefix(username), id...)
}

func matchKey(username, clientID string, scopes, audience []string) []byte {
	return append(matchUserPrefix(username), digest(clientID, scopes, audience)...)
}

// digest names a request (client, scope set, audience set) unambiguously: every string is
// length-prefixed, and the sets are sorted and deduplicated by the caller.
func digest(clientID string, scopes, audience []string) string {
	h := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put(clientID)
	for _, list := range [][]string{scopes, audience} {
		binary.BigEndian.PutUint64(n[:], uint64(len(list)))
		h.Write(n[:])
		for _, v := range list {
			put(v)
		}
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// set returns the values sorted and without duplicates, as a new slice (never nil).
func set(values []string) []string {
	out := slices.Clone(values)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// newID returns a new grant id, in the form validID checks (grants stored by earlier versions
// have it too).
func newID() string {
	var b [idBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validID reports whether id has the form newID gives, so a malformed one from a form never
// reaches a store key.
func validID(id string) bool {
	if len(id) != base64.RawURLEncoding.EncodedLen(idBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

func checkRequest(username, clientID string) error {
	if username == "" {
		return errors.New("consent: empty username")
	}
	if clientID == "" {
		return errors.New("consent: empty client id")
	}
	return nil
}

// Remember stores the user's consent to clientID for exactly scopes and audience (their order
// and duplicates do not matter) for lifetime from now, and returns it. It replaces an earlier
// grant for the same user, client, scopes and audience, keeping that grant's id. The grant is
// on disk (fsync'd) when Remember returns. The store's time-to-live removes it once expired.
func (s *Store) Remember(ctx context.Context, username, clientID string, scopes, audience []string, lifetime time.Duration, now time.Time) (Grant, error) {
	if err := checkRequest(username, clientID); err != nil {
		return Grant{}, err
	}
	if lifetime <= 0 {
		return Grant{}, fmt.Errorf("consent: remembering consent of %q to client %q: lifetime %s is not positive", username, clientID, lifetime)
	}
	scopes, audience = set(scopes), set(audience)
	mu := s.lock(username)
	mu.Lock()
	defer mu.Unlock()

	mk := matchKey(username, clientID, scopes, audience)
	id, err := s.matchedID(ctx, mk)
	if err != nil {
		return Grant{}, fmt.Errorf("consent: remembering consent of %q to client %q: %w", username, clientID, err)
	}
	if id == "" {
		id = newID()
	}
	rec := record{
		ID: id, Username: username, ClientID: clientID, Scopes: scopes, Audience: audience,
		GrantedAt: now, ExpiresAt: now.Add(lifetime),
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return Grant{}, fmt.Errorf("consent: encoding the grant of %q to client %q: %w", username, clientID, err)
	}
	// Badger's expiry has one-second resolution and rounds down; a second more keeps the keys
	// until ExpiresAt, which Find checks itself.
	ttl := lifetime + time.Second
	err = s.kv.PutSync(ctx,
		store.Entry{Key: grantKey(username, id), Value: value, TTL: ttl},
		store.Entry{Key: mk, Value: []byte(id), TTL: ttl},
	)
	if err != nil {
		return Grant{}, fmt.Errorf("consent: saving the grant of %q to client %q: %w", username, clientID, err)
	}
	return rec.grant(), nil
}

// matchedID returns the id the match key names, or "" when there is none.
func (s *Store) matchedID(ctx context.Context, mk []byte) (string, error) {
	v, err := s.kv.Get(ctx, mk)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if !validID(string(v)) {
		return "", nil // not ours; overwrite it
	}
	return string(v), nil
}

// get reads the grant username holds under id; ok is false when there is none.
func (s *Store) get(ctx context.Context, username, id string) (rec record, ok bool, err error) {
	v, err := s.kv.Get(ctx, grantKey(username, id))
	if errors.Is(err, store.ErrNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return record{}, false, fmt.Errorf("decoding grant %s of %q: %w", id, username, err)
	}
	// The key names the user; a record that says otherwise is not trusted.
	if rec.Username != username || rec.ID != id {
		return record{}, false, nil
	}
	return rec, true, nil
}

// Find returns the user's unexpired remembered consent to clientID for exactly the scopes and
// audience asked for (order and duplicates aside), and whether there is one. A grant for a
// subset or a superset of the scopes or audience, another client or another user does not
// match.
func (s *Store) Find(ctx context.Context, username, clientID string, scopes, audience []string, now time.Time) (Grant, bool, error) {
	if username == "" || clientID == "" {
		return Grant{}, false, nil
	}
	scopes, audience = set(scopes), set(audience)
	id, err := s.matchedID(ctx, matchKey(username, clientID, scopes, audience))
	if err != nil {
		return Grant{}, false, fmt.Errorf("consent: finding consent of %q to client %q: %w", username, clientID, err)
	}
	if id == "" {
		return Grant{}, false, nil
	}
	rec, ok, err := s.get(ctx, username, id)
	if err != nil {
		return Grant{}, false, fmt.Errorf("consent: finding consent of %q to client %q: %w", username, clientID, err)
	}
	// The digest named the grant; the record must say the same (a stale match key from an
	// interrupted change, or a grant since replaced, does not count).
	if !ok || rec.ClientID != clientID || !slices.Equal(rec.Scopes, scopes) ||
		!slices.Equal(rec.Audience, audience) || !now.Before(rec.ExpiresAt) {
		return Grant{}, false, nil
	}
	return rec.grant(), true, nil
}

// List returns the user's unexpired grants, newest first, for the page where a user reviews
// and withdraws them.
func (s *Store) List(ctx context.Context, username string, now time.Time) ([]Grant, error) {
	if username == "" {
		return nil, nil
	}
	prefix := grantUserPrefix(username)
	keys, err := s.kv.Keys(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("consent: listing grants of %q: %w", username, err)
	}
	grants := make([]Grant, 0, len(keys))
	for _, k := range keys {
		rec, ok, err := s.get(ctx, username, string(k[len(prefix):]))
		if err != nil {
			return nil, fmt.Errorf("consent: listing grants of %q: %w", username, err)
		}
		if ok && now.Before(rec.ExpiresAt) {
			grants = append(grants, rec.grant())
		}
	}
	sort.Slice(grants, func(i, j int) bool {
		if !grants[i].GrantedAt.Equal(grants[j].GrantedAt) {
			return grants[i].GrantedAt.After(grants[j].GrantedAt)
		}
		return grants[i].ID < grants[j].ID
	})
	return grants, nil
}

// Withdraw deletes the user's grant id and reports whether there was one. An id that is not
// one of the user's (another user's, an unknown or malformed one) gives false and deletes
// nothing.
func (s *Store) Withdraw(ctx context.Context, username, id string) (bool, error) {
	if username == "" || !validID(id) {
		return false, nil
	}
	mu := s.lock(username)
	mu.Lock()
	defer mu.Unlock()
	rec, ok, err := s.get(ctx, username, id)
	if err != nil {
		return false, fmt.Errorf("consent: withdrawing grant %s of %q: %w", id, username, err)
	}
	if !ok {
		return false, nil
	}
	keys := [][]byte{grantKey(username, id)}
	mk := matchKey(username, rec.ClientID, rec.Scopes, rec.Audience)
	if matched, err := s.matchedID(ctx, mk); err != nil {
		return false, fmt.Errorf("consent: withdrawing grant %s of %q: %w", id, username, err)
	} else if matched == id {
		keys = append(keys, mk)
	}
	if err := s.kv.Delete(ctx, keys...); err != nil {
		return false, fmt.Errorf("consent: withdrawing grant %s of %q: %w", id, username, err)
	}
	return true, nil
}

// WithdrawAll deletes every grant of the user and returns how many there were.
func (s *Store) WithdrawAll(ctx context.Context, username string) (int, error) {
	if username == "" {
		return 0, nil
	}
	mu := s.lock(username)
	mu.Lock()
	defer mu.Unlock()
	grants, err := s.kv.Keys(ctx, grantUserPrefix(username))
	if err != nil {
		return 0, fmt.Errorf("consent: withdrawing the grants of %q: %w", username, err)
	}
	matches, err := s.kv.Keys(ctx, matchUserPrefix(username))
	if err != nil {
		return 0, fmt.Errorf("consent: withdrawing the grants of %q: %w", username, err)
	}
	if len(grants)+len(matches) == 0 {
		return 0, nil
	}
	if err := s.kv.Delete(ctx, append(grants, matches...)...); err != nil {
		return 0, fmt.Errorf("consent: withdrawing the grants of %q: %w", username, err)
	}
	return len(grants), nil
}
