package claims

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Key layout of subject identifiers in the store. Both the sector identifier and the username
// are base64url-encoded (no padding, so never a '/'), so no pair of them can spell another
// pair's key: ("a/b", "c") and ("a", "b/c") are different keys.
//
//	sub/id/<b64url(sector)>/<b64url(username)> → the subject (a UUIDv4, as text)
//	sub/of/<subject>                           → subjectRecord (JSON), the reverse lookup
//
// Neither expires: a user's sub must never change.
const (
	subjectPrefix = "sub/id/"
	reversePrefix = "sub/of/"
)

// subjectRecord is the value of a reverse key.
type subjectRecord struct {
	Username string `json:"username"`
	Sector   string `json:"sector"`
}

// Subjects keeps each user's subject identifiers: a random UUIDv4 per (sector, username),
// created on first use and kept forever, as Authelia's opaque user identifiers are. It is safe
// for concurrent use.
type Subjects struct {
	kv store.KV
	// durable maps the key of a subject this Subjects has written to disk (fsync'd, with its
	// reverse key) to the subject. A subject read from the store that is not yet in it is written
	// and synced again before it is returned, since the write that created it (perhaps by
	// another goroutine, or before a crash of the process) may not have reached the disk yet.
	durable sync.Map
}

// NewSubjects keeps subject identifiers in kv.
func NewSubjects(kv store.KV) *Subjects { return &Subjects{kv: kv} }

// subjectKey is the store key of the subject of username in sectorID.
func subjectKey(username, sectorID string) []byte {
	return []byte(subjectPrefix + base64.RawURLEncoding.EncodeToString([]byte(sectorID)) + "/" +
		base64.RawURLEncoding.EncodeToString([]byte(username)))
}

func reverseKey(sub string) []byte { return []byte(reversePrefix + sub) }

// Subject returns the sub of username for sectorID: the sector identifier of a pairwise client,
// or "" for the public subject every other client sees. The first call for a (sector, username)
// creates a random UUIDv4; later calls, concurrent ones included, return the same one. It is
// on disk (fsync'd, together with its reverse lookup) before Subject returns it, so neither a
// crash nor a power cut changes a sub that a client has seen.
//
// Concurrent first calls agree because the store's GetOrCreate is atomic (the Badger store
// serialises it across every user of the database).
func (s *Subjects) Subject(ctx context.Context, username, sectorID string) (string, error) {
	if username == "" {
		return "", errors.New("claims: subject of an empty username")
	}
	key := subjectKey(username, sectorID)
	if sub, ok := s.durable.Load(string(key)); ok {
		return sub.(string), nil
	}
	v, err := s.kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		v, err = s.kv.GetOrCreate(ctx, key, func() ([]byte, error) { return []byte(uuid.NewString()), nil })
	}
	if err != nil {
		return "", fmt.Errorf("claims: reading the subject of user %q (sector %q): %w", username, sectorID, err)
	}
	sub := string(v)
	if !validUUID(sub) {
		return "", fmt.Errorf("claims: the stored subject of user %q (sector %q) is not a UUID: %q", username, sectorID, sub)
	}
	rec, err := json.Marshal(subjectRecord{Username: username, Sector: sectorID})
	if err != nil {
		return "", fmt.Errorf("claims: encoding the subject record of user %q: %w", username, err)
	}
	// Rewriting the same values is harmless; it makes the pair durable in one synced write.
	err = s.kv.PutSync(ctx,
		store.Entry{Key: key, Value: []byte(sub)},
		store.Entry{Key: reverseKey(sub), Value: rec},
	)
	if err != nil {
		return "", fmt.Errorf("claims: saving the subject of user %q (sector %q): %w", username, sectorID, err)
	}
	s.durable.Store(string(key), sub)
	return sub, nil
}

// Username returns the username whose public subject (sector "") is sub, and whether there is
// one: logout's id_token_hint and the gateway name the user by it. A pairwise subject, or a
// string that is not a subject, gives false.
func (s *Subjects) Username(ctx context.Context, sub string) (string, bool, error) {
	username, sector, ok, err := s.Lookup(ctx, sub)
	if err != nil || !ok || sector != "" {
		return "", false, err
	}
	return username, true, nil
}

// Lookup returns the username and sector identifier of any subject Subject made, public or
// pairwise, and whether sub is one.
func (s *Subjects) Lookup(ctx context.Context, sub string) (username, sectorID string, ok bool, err error) {
	if !validUUID(sub) {
		return "", "", false, nil
	}
	v, err := s.kv.Get(ctx, reverseKey(sub))
	if errors.Is(err, store.ErrNotFound) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("claims: looking up subject %s: %w", sub, err)
	}
	var rec subjectRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return "", "", false, fmt.Errorf("claims: decoding the record of subject %s: %w", sub, err)
	}
	return rec.Username, rec.Sector, true, nil
}

// validUUID reports whether s is a UUID in canonical lower-case form, as uuid.NewString writes
// them.
func validUUID(s string) bool {
	return len(s) == 36 && strings.ToLower(s) == s && uuid.Validate(s) == nil
}
