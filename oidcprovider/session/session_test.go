package session

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, dir string, cfg Config) (*Store, *store.Badger, *clock) {
	t.Helper()
	kv, err := store.Open(dir, store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg, kv)
	c := &clock{t: time.Now()}
	s.now = c.now
	return s, kv, c
}

func TestLifecycle(t *testing.T) {
	ctx := t.Context()
	s, kv, c := open(t, t.TempDir(), Config{Expiration: time.Hour, Inactivity: 5 * time.Minute})
	defer kv.Destruct()
	id, sess, err := s.Create(ctx, "john", OneFactor, false)
	if err != nil || sess.Level != OneFactor || len(id) != 43 {
		t.Fatalf("create: %q %+v %v", id, sess, err)
	}
	// the store holds the id's hash, never the id
	keys, _ := kv.Keys(ctx, []byte("sess"))
	for _, k := range keys {
		v, _ := kv.Get(ctx, k)
		if bytes.Contains(k, []byte(id)) || bytes.Contains(v, []byte(id)) {
			t.Fatal("the store holds a session id")
		}
	}
	for i := 0; i < 10; i++ { // active every 4 minutes: inactivity never reached
		c.add(4 * time.Minute)
		if _, err := s.Get(ctx, id); err != nil {
			t.Fatalf("an active session ended at %d: %v", i, err)
		}
	}
	c.add(6 * time.Minute)
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Fatalf("an inactive session: %v", err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Fatal("an inactive session came back")
	}
	// expiration ends even an active session
	id, _, _ = s.Create(ctx, "john", OneFactor, false)
	for i := 0; i < 15; i++ {
		c.add(4 * time.Minute)
		s.Get(ctx, id)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a session past its expiration: %v", err)
	}
	for _, bad := range []string{"", "x", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		if _, err := s.Get(ctx, bad); !errors.Is(err, ErrNoSession) {
			t.Errorf("id %q: %v", bad, err)
		}
	}
}

func TestRememberMeIgnoresInactivity(t *testing.T) {
	ctx := t.Context()
	s, kv, c := open(t, t.TempDir(), Config{Expiration: time.Hour, Inactivity: 5 * time.Minute, RememberMe: 48 * time.Hour})
	defer kv.Destruct()
	id, sess, _ := s.Create(ctx, "john", OneFactor, true)
	if !sess.RememberMe {
		t.Fatal("remember-me not set")
	}
	c.add(30 * time.Hour)
	if _, err := s.Get(ctx, id); err != nil {
		t.Fatalf("a remember-me session after 30h idle: %v", err)
	}
	c.add(19 * time.Hour)
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Fatal("a remember-me session outlived remember_me")
	}
	off := New(Config{RememberMe: -1}, kv)
	if _, sess, _ := off.Create(ctx, "jane", OneFactor, true); sess.RememberMe {
		t.Fatal("remember-me disabled, yet granted")
	}
}

func TestCreateByPasskey(t *testing.T) {
	ctx := t.Context()
	s, kv, _ := open(t, t.TempDir(), Config{})
	defer kv.Destruct()
	id, sess, err := s.CreateByPasskey(ctx, "john", false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, id)
	if err != nil || got.Level != TwoFactor || got.SecondFactor != FactorPasskey || got.FirstFactor != FactorPasskey || !got.PasswordAt.IsZero() ||
		got.SecondFactorAt.IsZero() || got.Family == "" || got.Family != sess.Family {
		t.Fatalf("passkey session %+v, %v", got, err)
	}
	if _, _, err := s.CreateByPasskey(ctx, "a/b", false); err == nil {
		t.Fatal("a username with / was accepted")
	}
}

func TestElevateRotatesTheID(t *testing.T) {
	ctx := t.Context()
	s, kv, _ := open(t, t.TempDir(), Config{})
	defer kv.Destruct()
	id, _, _ := s.Create(ctx, "john", OneFactor, false)
	newID, sess, err := s.Elevate(ctx, id, TwoFactor)
	if err != nil || newID == id || sess.Level != TwoFactor {
		t.Fatalf("elevate: %v %+v", err, sess)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Fatal("the id from before the step-up still works")
	}
	if got, err := s.Get(ctx, newID); err != nil || got.Level != TwoFactor {
		t.Fatalf("the new id: %+v %v", got, err)
	}
}

func TestEndAndEndUserAndRestart(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, kv, _ := open(t, dir, Config{})
	a, _, _ := s.Create(ctx, "john", OneFactor, false)
	b, _, _ := s.Create(ctx, "john", TwoFactor, true)
	c, _, _ := s.Create(ctx, "john", OneFactor, false)
	other, _, _ := s.Create(ctx, "jane", OneFactor, false)
	if err := s.End(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, a); !errors.Is(err, ErrNoSession) {
		t.Fatal("an ended session works")
	}
	if err := s.End(ctx, a); err != nil {
		t.Fatal("ending twice must not fail")
	}
	// sessions survive a restart
	kv.Destruct()
	s, kv, _ = open(t, dir, Config{})
	defer kv.Destruct()
	if _, err := s.Get(ctx, b); err != nil {
		t.Fatalf("a session did not survive a restart: %v", err)
	}
	n, err := s.EndUser(ctx, "john")
	if err != nil || n != 2 {
		t.Fatalf("end user: %d %v", n, err)
	}
	for _, id := range []string{b, c} {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrNoSession) {
			t.Fatal("a session of an ended user works")
		}
	}
	if _, err := s.Get(ctx, other); err != nil {
		t.Fatalf("another user's session ended: %v", err)
	}
	if _, _, err := s.Create(ctx, "a/b", OneFactor, false); err == nil {
		t.Fatal("a username with '/' must be refused")
	}
}

// MarkElevated records the one-time code's proof and moves the session to a new id; Rotate moves
// it without other change; EndUserExcept ends the user's other sessions and keeps the one named.
func TestElevationRotateAndEndOthers(t *testing.T) {
	ctx := t.Context()
	s, kv, c := open(t, t.TempDir(), Config{Expiration: time.Hour, Inactivity: 5 * time.Minute})
	defer kv.Destruct()
	id, before, err := s.Create(ctx, "john", OneFactor, false)
	if err != nil {
		t.Fatal(err)
	}
	c.add(time.Minute)
	elevated, sess, err := s.MarkElevated(ctx, id)
	if err != nil || elevated == id || !sess.ElevatedAt.Equal(c.now()) || sess.Level != OneFactor || sess.Ref() != before.Ref() {
		t.Fatalf("MarkElevated: %q %+v %v", elevated, sess, err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Error("the id from before the elevation still works")
	}
	if got, err := s.Get(ctx, elevated); err != nil || !got.ElevatedAt.Equal(sess.ElevatedAt) {
		t.Fatalf("the elevated session as stored: %+v %v", got, err)
	}
	rotated, sess, err := s.Rotate(ctx, elevated)
	if err != nil || rotated == elevated || sess.ElevatedAt.IsZero() {
		t.Fatalf("Rotate: %q %+v %v", rotated, sess, err)
	}
	if _, err := s.Get(ctx, elevated); !errors.Is(err, ErrNoSession) {
		t.Error("the id from before the rotation still works")
	}
	other, otherSess, _ := s.Create(ctx, "john", OneFactor, false)
	third, thirdSess, _ := s.Create(ctx, "john", OneFactor, false)
	jane, _, _ := s.Create(ctx, "jane", OneFactor, false)
	refs, err := s.EndUserExcept(ctx, "john", rotated)
	if err != nil || len(refs) != 2 {
		t.Fatalf("EndUserExcept: %v %v", refs, err)
	}
	for _, r := range refs {
		if r != otherSess.Ref() && r != thirdSess.Ref() {
			t.Errorf("EndUserExcept returned %q, not an ended session's reference", r)
		}
	}
	for _, gone := range []string{other, third} {
		if _, err := s.Get(ctx, gone); !errors.Is(err, ErrNoSession) {
			t.Error("another session of john survived")
		}
	}
	for _, kept := range []string{rotated, jane} {
		if _, err := s.Get(ctx, kept); err != nil {
			t.Errorf("a session that should stay ended: %v", err)
		}
	}
}

// An enrolment session is at no level, Who (the gate's check) sees no one in it even after a
// rotation, Get (the portal) sees it, it lasts the shorter of its life and the expiration, and
// ending the user's sessions ends it.
func TestEnrolmentSession(t *testing.T) {
	ctx := t.Context()
	s, kv, c := open(t, t.TempDir(), Config{Expiration: time.Hour, Inactivity: 5 * time.Minute})
	defer kv.Destruct()
	id, sess, err := s.CreateEnrolment(ctx, "john", 30*time.Minute)
	if err != nil || !sess.Enrolment || sess.Level != 0 || sess.Expires.Sub(sess.Created) != 30*time.Minute {
		t.Fatalf("CreateEnrolment: %+v %v", sess, err)
	}
	if _, _, err := s.Who(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Who: %v, want ErrNoSession", err)
	}
	if got, err := s.Get(ctx, id); err != nil || !got.Enrolment {
		t.Fatalf("Get: %+v %v", got, err)
	}
	id, sess, err = s.ConfirmPassword(ctx, id)
	if err != nil || !sess.Enrolment {
		t.Fatalf("a rotated enrolment session: %+v %v", sess, err)
	}
	if _, _, err := s.Who(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Who after a rotation: %v, want ErrNoSession", err)
	}
	if _, sess, _ := s.CreateEnrolment(ctx, "john", 3*time.Hour); sess.Expires.Sub(sess.Created) != time.Hour {
		t.Errorf("an enrolment session of 3h lasts %v, want the expiration (1h)", sess.Expires.Sub(sess.Created))
	}
	if n, err := s.EndUser(ctx, "john"); err != nil || n != 2 {
		t.Fatalf("EndUser: %d %v, want 2", n, err)
	}
	c.add(time.Second)
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after EndUser: %v", err)
	}
}
