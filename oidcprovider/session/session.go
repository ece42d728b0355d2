// Package session keeps people's sign-in sessions in the store, so they survive a restart and a
// reload (Authelia loses them on restart unless it has Redis). A session id is 32 random bytes;
// the store holds only its SHA-256, so a copy of the store gives no live cookie. Sessions end at
// their expiration, after inactivity, at sign-out, or when every session of a user is ended.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Config is Authelia's session block (its timing part).
type Config struct {
	// Expiration is a session's longest life without remember-me. Authelia's default: 1h.
	Expiration time.Duration
	// Inactivity ends a session unused for this long (not for remember-me sessions). Authelia's
	// default: 5m.
	Inactivity time.Duration
	// RememberMe is a remember-me session's life; negative disables remember-me. Authelia's
	// default: 1 month (30 days here).
	RememberMe time.Duration
}

// WithDefaults fills Authelia's defaults.
func (c Config) WithDefaults() Config {
	if c.Expiration == 0 {
		c.Expiration = time.Hour
	}
	if c.Inactivity == 0 {
		c.Inactivity = 5 * time.Minute
	}
	if c.RememberMe == 0 {
		c.RememberMe = 30 * 24 * time.Hour
	}
	return c
}

// Level is how a session was authenticated.
type Level uint8

// The factor levels.
const (
	OneFactor Level = 1
	TwoFactor Level = 2
)

// Session is one signed-in browser.
type Session struct {
	// User is the username.
	User string `json:"user"`
	// Level is the factor level reached.
	Level Level `json:"level"`
	// Created is when the session began (the first factor).
	Created time.Time `json:"created"`
	// AuthTime is when the last factor was given.
	AuthTime time.Time `json:"auth_time"`
	// LastActive is the last request seen, recorded at most once a minute.
	LastActive time.Time `json:"last_active"`
	// Expires is when the session ends regardless of activity.
	Expires time.Time `json:"expires"`
	// RememberMe sessions are not ended by inactivity.
	RememberMe bool `json:"remember_me"`
	// PasswordAt is when the password was last given (sign-in or a confirmation).
	PasswordAt time.Time `json:"password_at"`
	// SecondFactorAt is when a second factor was last given; zero if never.
	SecondFactorAt time.Time `json:"second_factor_at,omitzero"`
	// SecondFactor is the kind of the last second factor given: "totp", "webauthn", or
	// "passkey" for a sign-in by a passkey alone (CreateByPasskey: no PasswordAt).
	SecondFactor string `json:"second_factor,omitempty"`
	// FirstFactor is FactorPasskey for a session begun by a passkey alone (kept when a later
	// step-up records another second factor), "" for one begun by a password.
	FirstFactor string `json:"first_factor,omitempty"`
	// Family is a random reference given at sign-in and kept when the id changes (step-up,
	// password confirmation): what tokens issued through the session record.
	Family string `json:"family,omitempty"`
	// ElevatedAt is when the person last proved who they are with a one-time code sent to them
	// (an elevated session, before a sensitive change); zero if never.
	ElevatedAt time.Time `json:"elevated_at,omitzero"`
	// Domain is the cookie domain of a session the gate of a second cookie domain began from a
	// hand-off (Handoffs); "" for the portal's own sessions, the only ones the portal and the
	// gate on the issuer's domain accept. A session answers only on its own domain.
	Domain string `json:"domain,omitempty"`
	// Enrolment marks a session begun with an enrolment link (CreateEnrolment): it is at no
	// factor level and grants nothing at the gate or to applications; the portal lets it only
	// set a password and add second factors, on its settings pages. JSON: "enrolment";
	// default false.
	Enrolment bool `json:"enrolment,omitempty"`
	// Upstream names the identity provider the person signed in through (package federation);
	// "" for a sign-in at the portal. Such a session gave no password (PasswordAt is zero).
	Upstream string `json:"upstream,omitempty"`
}

// Ref is the session's stable reference (its Family), which does not reveal its id.
func (s *Session) Ref() string { return s.Family }

// ErrNoSession is an unknown, ended or expired session id.
var ErrNoSession = errors.New("session: no such session")

// activityGranularity is how stale LastActive may get before a request writes it again: one
// write a minute per session instead of one per request (a quarter of the inactivity timeout
// when that is shorter, so it is still enforced to within a quarter).
func (s *Store) activityGranularity() time.Duration {
	return min(time.Minute, s.cfg.Inactivity/4)
}

// Store keeps sessions in a KV.
type Store struct {
	cfg   Config
	kv    store.KV
	cache *Cache
	now   func() time.Time
	// shared: kv is shared by several nodes (store.Changes), so ending a session also deletes
	// its end key (EndKeyPrefix), which every node's Cache watches.
	shared bool
}

// New returns a session store on kv.
func New(cfg Config, kv store.KV) *Store {
	_, shared := kv.(store.Changes)
	return &Store{cfg: cfg.WithDefaults(), kv: kv, now: time.Now, shared: shared}
}

// NewWithCache returns a session store on kv that keeps decoded sessions in cache (shared by
// every Store on the same kv, and by nothing else).
func NewWithCache(cfg Config, kv store.KV, cache *Cache) *Store {
	s := New(cfg, kv)
	s.cache = cache
	return s
}

// WithClock makes the store read the time from now (tests that move time; a deployment keeps
// time.Now) and returns it.
func (s *Store) WithClock(now func() time.Time) *Store {
	s.now = now
	return s
}

// Config is the store's configuration, defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// IDHash is the digest under which the store keeps the session of id (never the id itself).
func IDHash(id string) string { return hashID(id) }

func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

func unhex(h string) *[32]byte {
	var b [32]byte
	_, _ = hex.Decode(b[:], []byte(h))
	return &b
}

func recordKey(hash string) []byte          { return []byte("sess/" + hash) }
func familyPrefix(family string) []byte     { return []byte("sess-family/" + family + "/") }
func familyKey(family, hash string) []byte  { return []byte("sess-family/" + family + "/" + hash) }
func endKey(hash string) []byte             { return []byte(EndKeyPrefix + hash) }
func signInKey(hash string) []byte          { return []byte("sess-signin/" + hash) }
func userIndexKey(user, hash string) []byte { return []byte("sess-user/" + user + "/" + hash) }
func userIndexPrefix(user string) []byte    { return []byte("sess-user/" + user + "/") }

// Create begins a session for user at level and returns its id (for the cookie). With
// rememberMe (ignored when remember-me is disabled) it lasts RememberMe and ignores inactivity.
func (s *Store) Create(ctx context.Context, user string, level Level, rememberMe bool) (string, *Session, error) {
	return s.create(ctx, user, level, rememberMe, nil)
}

// create is Create with a change to the new session before it is stored.
func (s *Store) create(ctx context.Context, user string, level Level, rememberMe bool, change func(*Session)) (string, *Session, error) {
	if user == "" || strings.Contains(user, "/") {
		return "", nil, fmt.Errorf("session: bad username %q", user)
	}
	now := s.now()
	sess := &Session{User: user, Level: level, Created: now, AuthTime: now, LastActive: now, PasswordAt: now, Expires: now.Add(s.cfg.Expiration),
		Family: rand.Text()}
	if rememberMe && s.cfg.RememberMe > 0 {
		sess.RememberMe, sess.Expires = true, now.Add(s.cfg.RememberMe)
	}
	if change != nil {
		change(sess)
	}
	id, err := s.put(ctx, sess)
	return id, sess, err
}

// CreateEnrolment begins an enrolment session for user (Session.Enrolment, no factor level)
// that ends after life at the latest, and returns its id (for the cookie). It is not a sign-in:
// Who refuses it, and the portal accepts it only where a person sets up their account.
func (s *Store) CreateEnrolment(ctx context.Context, user string, life time.Duration) (string, *Session, error) {
	if user == "" || strings.Contains(user, "/") {
		return "", nil, fmt.Errorf("session: bad username %q", user)
	}
	now := s.now()
	sess := &Session{User: user, Enrolment: true, Created: now, AuthTime: now, LastActive: now, Expires: now.Add(min(life, s.cfg.Expiration)),
		Family: rand.Text()}
	id, err := s.put(ctx, sess)
	return id, sess, err
}

// CreateUpstream is Create for a person signed in through the upstream identity provider named
// upstream: the session records it, and no password (PasswordAt stays zero).
func (s *Store) CreateUpstream(ctx context.Context, user string, level Level, rememberMe bool, upstream string) (string, *Session, error) {
	return s.create(ctx, user, level, rememberMe, func(sess *Session) { sess.Upstream, sess.PasswordAt = upstream, time.Time{} })
}

// FactorPasskey is the SecondFactor of a session begun by a passkey alone.
const FactorPasskey = "passkey"

// CreateByPasskey begins a session for user signed in by a passkey alone (a discoverable
// credential with user verification: two factors): at TwoFactor, SecondFactor FactorPasskey,
// and no PasswordAt, since no password was given. rememberMe is as for Create.
func (s *Store) CreateByPasskey(ctx context.Context, user string, rememberMe bool) (string, *Session, error) {
	return s.create(ctx, user, TwoFactor, rememberMe, func(sess *Session) {
		sess.PasswordAt, sess.SecondFactorAt, sess.SecondFactor, sess.FirstFactor = time.Time{}, sess.Created, FactorPasskey, FactorPasskey
	})
}

// put stores sess under a new id.
func (s *Store) put(ctx context.Context, sess *Session) (string, error) {
	raw := make([]byte, 32) // 43 characters in base64url, the length get checks
	_, _ = rand.Read(raw)   // crypto/rand.Read never fails (it crashes the program instead)
	id := base64.RawURLEncoding.EncodeToString(raw)
	data, err := json.Marshal(sess)
	if err != nil {
		return "", err
	}
	ttl := sess.Expires.Sub(s.now())
	if ttl <= 0 {
		return "", ErrNoSession
	}
	h := hashID(id)
	entries := []store.Entry{
		{Key: recordKey(h), Value: data, TTL: ttl},
		{Key: userIndexKey(sess.User, h), Value: []byte{1}, TTL: ttl},
	}
	if sess.Family != "" {
		// the family index: ending one session of a family ends them all (End), so signing
		// out at the portal ends the sessions handed off to the other cookie domains
		entries = append(entries, store.Entry{Key: familyKey(sess.Family, h), Value: []byte("d:" + sess.Domain), TTL: ttl})
	}
	if err := s.kv.Put(ctx, entries...); err != nil {
		return "", fmt.Errorf("session: keeping the session: %w", err)
	}
	return id, nil
}

// Get returns the live session of id and records the activity (at most once a minute). An
// unknown, expired or inactive session is ErrNoSession (and an inactive one is ended).
func (s *Store) Get(ctx context.Context, id string) (*Session, error) {
	sess, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	cp := *sess
	return &cp, nil
}

// Who returns the user and level of the live session of id, as Get does but without a copy of
// the session: the gateway's check on every request. An enrolment session speaks for no one
// here (ErrNoSession): it grants nothing.
func (s *Store) Who(ctx context.Context, id string) (string, Level, error) {
	sess, err := s.get(ctx, id)
	if err != nil {
		return "", 0, err
	}
	if sess.Enrolment || sess.Level < OneFactor {
		return "", 0, ErrNoSession
	}
	return sess.User, sess.Level, nil
}

// WhoIn is Who for the sessions of one cookie domain (Session.Domain; "" for the portal's own):
// a session of another domain is ErrNoSession, as an unknown one is, and so is an enrolment
// session.
func (s *Store) WhoIn(ctx context.Context, id, domain string) (string, Level, error) {
	sess, err := s.get(ctx, id)
	if err != nil {
		return "", 0, err
	}
	if sess.Domain != domain || sess.Enrolment || sess.Level < OneFactor {
		return "", 0, ErrNoSession // an enrolment session grants nothing
	}
	return sess.User, sess.Level, nil
}

// Adopt begins a session of this store's lifetimes from what a hand-off carried (from, a session
// of the portal's): its user, factors (and the identity provider they came through), times of
// authentication and Family, on domain. It is remember-me when from was and remember-me is
// enabled here. origin is the store's digest of the portal session's id (IDHash), or "": the
// sign-in is remembered under it for as long as this session may live (keepSignIn), so that
// signing out with the portal's cookie ends this session even once the portal's own has lapsed.
func (s *Store) Adopt(ctx context.Context, from *Session, domain, origin string) (string, *Session, error) {
	if from.User == "" || strings.Contains(from.User, "/") || from.Family == "" || domain == "" || from.Enrolment || from.Level < OneFactor {
		return "", nil, fmt.Errorf("session: a hand-off without a user, a factor, a family or a domain")
	}
	now := s.now()
	sess := &Session{User: from.User, Level: from.Level, Created: now, AuthTime: from.AuthTime, LastActive: now, PasswordAt: from.PasswordAt,
		SecondFactorAt: from.SecondFactorAt, SecondFactor: from.SecondFactor, FirstFactor: from.FirstFactor, Family: from.Family, Domain: domain, Expires: now.Add(s.cfg.Expiration),
		Upstream: from.Upstream}
	if from.RememberMe && s.cfg.RememberMe > 0 {
		sess.RememberMe, sess.Expires = true, now.Add(s.cfg.RememberMe)
	}
	id, err := s.put(ctx, sess)
	if err != nil {
		return "", nil, err
	}
	if origin != "" {
		if err := s.keepSignIn(ctx, origin, &signIn{User: sess.User, Family: sess.Family, Until: sess.Expires}); err != nil {
			_ = s.end(ctx, sess.User, hashID(id), sess.Family)
			return "", nil, err
		}
	}
	return id, sess, nil
}

// signIn is what a portal session's id (hashed) leads to once sessions of other cookie domains
// were handed off from it: the sign-in (user and family) and until when one of them may live.
// It outlives the portal session, which may lapse first (inactivity, a shorter expiration).
type signIn struct {
	User   string    `json:"user"`
	Family string    `json:"family"`
	Until  time.Time `json:"until"`
}

// readSignIn is the sign-in remembered under the portal session digest h, or nil.
func (s *Store) readSignIn(ctx context.Context, h string) (*signIn, error) {
	data, err := s.kv.Get(ctx, signInKey(h))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var in signIn
	if json.Unmarshal(data, &in) != nil || in.Family == "" {
		return nil, nil
	}
	return &in, nil
}

// keepSignIn remembers in under the portal session digest h until in.Until, or leaves a record
// that lasts longer.
func (s *Store) keepSignIn(ctx context.Context, h string, in *signIn) error {
	old, err := s.readSignIn(ctx, h)
	if err != nil {
		return err
	}
	if old != nil && old.Family == in.Family && !old.Until.Before(in.Until) {
		return nil
	}
	ttl := in.Until.Sub(s.now())
	if ttl <= 0 {
		return nil
	}
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := s.kv.Put(ctx, store.Entry{Key: signInKey(h), Value: data, TTL: ttl}); err != nil {
		return fmt.Errorf("session: remembering the sign-in: %w", err)
	}
	return nil
}

// get returns the live session of id, shared with the cache: callers must not change it.
func (s *Store) get(ctx context.Context, id string) (*Session, error) {
	if len(id) != 43 {
		return nil, ErrNoSession
	}
	// hash the id's bytes in place: []byte(id) would copy it to the heap on every request
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(id), len(id)))
	now := s.now()
	if c := s.cache.get(&sum); c != nil && now.Before(c.Expires) && (c.RememberMe || now.Sub(c.LastActive) < s.activityGranularity()) {
		// seen within the minute (or a remember-me session, which inactivity does not end):
		// nothing to check against the store or to write
		return c, nil
	}
	h := hex.EncodeToString(sum[:])
	gen := s.cache.gen(&sum) // before the read: an end during it keeps the session out
	data, err := s.kv.Get(ctx, recordKey(h))
	if errors.Is(err, store.ErrNotFound) {
		s.cache.drop(&sum)
		return nil, ErrNoSession
	} else if err != nil {
		return nil, err
	}
	var sess Session
	if err := json.Unmarshal(data, &sess); err != nil {
		return nil, ErrNoSession
	}
	if !now.Before(sess.Expires) {
		s.cache.drop(&sum)
		return nil, ErrNoSession
	}
	if !sess.RememberMe && now.Sub(sess.LastActive) >= s.cfg.Inactivity {
		_ = s.end(ctx, sess.User, h, sess.Family)
		return nil, ErrNoSession
	}
	if !sess.RememberMe && now.Sub(sess.LastActive) >= s.activityGranularity() {
		sess.LastActive = now
		if data, err := json.Marshal(&sess); err == nil {
			_ = s.kv.Put(ctx, store.Entry{Key: recordKey(h), Value: data, TTL: sess.Expires.Sub(now)})
		}
	}
	s.cache.put(&sum, &sess, gen)
	return &sess, nil
}

// Elevate records a factor at level for the session of id and moves it to a new id (returned),
// ending the old one, so an id seen before the step-up is worth nothing after it.
func (s *Store) Elevate(ctx context.Context, id string, level Level) (string, *Session, error) {
	return s.ElevateWith(ctx, id, level, "")
}

// ElevateWith is Elevate recording the kind of second factor given ("totp", "webauthn"), which
// ID tokens report in amr.
func (s *Store) ElevateWith(ctx context.Context, id string, level Level, factor string) (string, *Session, error) {
	return s.rotate(ctx, id, func(sess *Session, now time.Time) {
		sess.Level, sess.AuthTime = max(sess.Level, level), now
		if level >= TwoFactor {
			sess.SecondFactorAt, sess.SecondFactor = now, factor
		}
	})
}

// ConfirmPassword records that the password was given again (before a sensitive change) and
// moves the session to a new id, as Elevate does.
func (s *Store) ConfirmPassword(ctx context.Context, id string) (string, *Session, error) {
	return s.rotate(ctx, id, func(sess *Session, now time.Time) { sess.PasswordAt, sess.AuthTime = now, now })
}

// MarkElevated records that the person proved who they are with a one-time code sent to them
// (Session.ElevatedAt) and moves the session to a new id, as Elevate does: the privilege
// changed, so an id seen before it is worth nothing after it.
func (s *Store) MarkElevated(ctx context.Context, id string) (string, *Session, error) {
	return s.rotate(ctx, id, func(sess *Session, now time.Time) { sess.ElevatedAt = now })
}

// Rotate moves the live session of id to a new id, changing nothing else but its activity (a
// password change keeps the browser that made it signed in, under an id never seen before).
func (s *Store) Rotate(ctx context.Context, id string) (string, *Session, error) {
	return s.rotate(ctx, id, func(*Session, time.Time) {})
}

// rotate applies change to the live session of id and moves it to a new id.
func (s *Store) rotate(ctx context.Context, id string, change func(*Session, time.Time)) (string, *Session, error) {
	sess, err := s.Get(ctx, id)
	if err != nil {
		return "", nil, err
	}
	now := s.now()
	change(sess, now)
	sess.LastActive = now
	newID, err := s.put(ctx, sess)
	if err != nil {
		return "", nil, err
	}
	old := hashID(id)
	// the sign-in the old id led to (sessions handed off from it), now reached through the new id
	if in, err := s.readSignIn(ctx, old); err != nil {
		return "", nil, err
	} else if in != nil {
		if err := s.keepSignIn(ctx, hashID(newID), in); err != nil {
			return "", nil, err
		}
		_ = s.kv.Delete(ctx, signInKey(old))
	}
	if err := s.end(ctx, sess.User, old, sess.Family); err != nil {
		return "", nil, err
	}
	return newID, sess, nil
}

// End ends the session of id (sign-out), with every other session of its family: those the
// gates of the other cookie domains began from it through a hand-off, so that signing out once
// ends the person's session on every domain. Ending an unknown session is not an error. When
// the session of id has already lapsed (inactivity, expiration) but sessions were handed off from
// it, those are ended all the same, so a sign-out with a lapsed portal cookie still ends the
// sign-in on every domain; End returns the user and family ended ("" when none), which the
// caller tells whoever ends what the sign-in authorized.
func (s *Store) End(ctx context.Context, id string) error {
	_, _, err := s.EndSignIn(ctx, id)
	return err
}

// EndSignIn is End, returning the user and the family (Session.Ref) of the sign-in it ended,
// or "" for both when id led to none.
func (s *Store) EndSignIn(ctx context.Context, id string) (user, family string, err error) {
	sess, err := s.drop(ctx, id)
	if err != nil {
		return "", "", err
	}
	h := hashID(id)
	in, err := s.readSignIn(ctx, h)
	if err != nil {
		return "", "", err
	}
	switch {
	case sess != nil:
		user, family = sess.User, sess.Family
	case in != nil:
		user, family = in.User, in.Family
	default:
		return "", "", nil
	}
	if err := s.endFamily(ctx, user, family); err != nil {
		return "", "", err
	}
	if in != nil {
		_ = s.kv.Delete(ctx, signInKey(h))
	}
	return user, family, nil
}

// Drop ends the session of id alone, not its family: a session of a further cookie domain
// that a newer one of the same sign-in replaces in the browser (a hand-off after a step-up).
func (s *Store) Drop(ctx context.Context, id string) error {
	_, err := s.drop(ctx, id)
	return err
}

// drop ends the session of id alone and returns it; nil, nil when there was none.
func (s *Store) drop(ctx context.Context, id string) (*Session, error) {
	h := hashID(id)
	data, err := s.kv.Get(ctx, recordKey(h))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var sess Session
	_ = json.Unmarshal(data, &sess)
	return &sess, s.end(ctx, sess.User, h, sess.Family)
}

// endFamily ends every session of family (all of user's: a family is one sign-in).
func (s *Store) endFamily(ctx context.Context, user, family string) error {
	if family == "" {
		return nil
	}
	keys, err := s.kv.Keys(ctx, familyPrefix(family))
	if err != nil {
		return err
	}
	prefix := len(familyPrefix(family))
	for _, k := range keys {
		if err := s.end(ctx, user, string(k[prefix:]), family); err != nil {
			return err
		}
	}
	return nil
}

// FamilyLive reports whether family has a live session of the portal's own (Domain ""), or
// the session whose id hashes to origin (IDHash) is live (a session begun before families were
// indexed): a hand-off is honoured only while the sign-in it came from lasts.
func (s *Store) FamilyLive(ctx context.Context, family, origin string) (bool, error) {
	if origin != "" {
		if _, err := s.kv.Get(ctx, recordKey(origin)); err == nil {
			return true, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
	}
	if family == "" {
		return false, nil
	}
	keys, err := s.kv.Keys(ctx, familyPrefix(family))
	if err != nil {
		return false, err
	}
	for _, k := range keys {
		v, err := s.kv.Get(ctx, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return false, err
		}
		if string(v) == "d:" {
			return true, nil
		}
	}
	return false, nil
}

func (s *Store) end(ctx context.Context, user, h, family string) error {
	s.cache.drop(unhex(h))
	keys := [][]byte{recordKey(h)}
	if user != "" {
		keys = append(keys, userIndexKey(user, h))
	}
	if family != "" {
		keys = append(keys, familyKey(family, h))
	}
	if s.shared {
		keys = append(keys, endKey(h))
	}
	return s.kv.Delete(ctx, keys...)
}

// EndUser ends every session of user (signing out everywhere, or an operator cutting off a
// stolen session) and returns how many it ended.
func (s *Store) EndUser(ctx context.Context, user string) (int, error) {
	refs, err := s.EndUserRefs(ctx, user)
	return len(refs), err
}

// EndUserExcept ends every session of user but the one of keep (a password change ends the
// person's other browsers, not the one that made it) and returns the references (Session.Ref)
// of those that were live, so what they authorized can end with them.
func (s *Store) EndUserExcept(ctx context.Context, user, keep string) ([]string, error) {
	return s.endUser(ctx, user, hashID(keep))
}

// EndUserRefs ends every session of user, as EndUser does, and returns the references
// (Session.Ref) of those that were live, so what they authorized can end with them.
func (s *Store) EndUserRefs(ctx context.Context, user string) ([]string, error) {
	return s.endUser(ctx, user, "")
}

// EndEnrolments ends every enrolment session of user (Session.Enrolment), and no other, and
// returns how many it ended: an enrolment link revoked or replaced takes the set-up it began
// with it.
func (s *Store) EndEnrolments(ctx context.Context, user string) (int, error) {
	keys, err := s.kv.Keys(ctx, userIndexPrefix(user))
	if err != nil {
		return 0, fmt.Errorf("session: listing the sessions of %s: %w", user, err)
	}
	ended := 0
	prefix := len(userIndexPrefix(user))
	for _, k := range keys {
		h := string(k[prefix:])
		var sess Session
		data, err := s.kv.Get(ctx, recordKey(h))
		if err != nil || json.Unmarshal(data, &sess) != nil || !sess.Enrolment {
			continue
		}
		if err := s.end(ctx, user, h, sess.Family); err != nil {
			return ended, fmt.Errorf("session: ending an enrolment session: %w", err)
		}
		ended++
	}
	return ended, nil
}

// endUser ends every session of user but the one whose id hashes to keep ("" for none).
func (s *Store) endUser(ctx context.Context, user, keep string) ([]string, error) {
	keys, err := s.kv.Keys(ctx, userIndexPrefix(user))
	if err != nil {
		return nil, err
	}
	var refs []string
	prefix := len(userIndexPrefix(user))
	for _, k := range keys {
		h := string(k[prefix:])
		if h == keep {
			continue
		}
		var sess Session
		if data, err := s.kv.Get(ctx, recordKey(h)); err == nil {
			_ = json.Unmarshal(data, &sess)
			refs = append(refs, sess.Ref())
		}
		if err := s.end(ctx, user, h, sess.Family); err != nil {
			return refs, err
		}
	}
	return refs, nil
}
