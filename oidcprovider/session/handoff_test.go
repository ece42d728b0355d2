package session

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// A hand-off code is good once, for its domain, from the browser holding its nonce, within its
// lifetime; every wrong use spends it too; the store holds only its digest.
func TestHandoffCodes(t *testing.T) {
	ctx := t.Context()
	s, kv, c := open(t, t.TempDir(), Config{})
	defer kv.Destruct()
	h := NewHandoffs(kv, time.Minute).WithClock(c.now)
	_, sess, err := s.Create(ctx, "john", TwoFactor, false)
	if err != nil {
		t.Fatal(err)
	}
	nonce, binding := NewNonce()
	if NonceDigest(nonce) != binding || len(binding) != 43 {
		t.Fatalf("binding %q", binding)
	}
	mint := func() string {
		t.Helper()
		code, err := h.Mint(ctx, &Handoff{Domain: "example.net", Binding: binding, Session: *sess})
		if err != nil {
			t.Fatal(err)
		}
		return code
	}

	code := mint()
	keys, _ := kv.Keys(ctx, []byte("handoff"))
	for _, k := range keys {
		v, _ := kv.Get(ctx, k)
		if bytes.Contains(k, []byte(code)) || bytes.Contains(v, []byte(code)) || bytes.Contains(v, []byte(nonce)) {
			t.Fatal("the store holds a hand-off code or a nonce")
		}
	}
	g, err := h.Take(ctx, code, "example.net", []string{"x", binding})
	if err != nil || g.Session.User != "john" || g.Session.Family != sess.Family || g.Session.Level != TwoFactor {
		t.Fatalf("take: %+v %v", g, err)
	}
	if _, err := h.Take(ctx, code, "example.net", []string{binding}); !errors.Is(err, ErrHandoff) {
		t.Fatalf("a code used twice: %v", err)
	}

	for name, try := range map[string]func(code string) error{
		"wrong domain": func(code string) error { _, err := h.Take(ctx, code, "example.test", []string{binding}); return err },
		"other browser": func(code string) error {
			_, other := NewNonce()
			_, err := h.Take(ctx, code, "example.net", []string{other})
			return err
		},
		"no nonce": func(code string) error { _, err := h.Take(ctx, code, "example.net", nil); return err },
		"expired": func(code string) error {
			c.add(61 * time.Second)
			_, err := h.Take(ctx, code, "example.net", []string{binding})
			return err
		},
	} {
		code := mint()
		if err := try(code); !errors.Is(err, ErrHandoff) {
			t.Errorf("%s: %v, want ErrHandoff", name, err)
		}
		// spent (or never valid): the right use afterwards is refused too
		if _, err := h.Take(ctx, code, "example.net", []string{binding}); !errors.Is(err, ErrHandoff) {
			t.Errorf("%s: the code still works afterwards: %v", name, err)
		}
	}
	for _, bad := range []string{"", code[:51], code + "A", code[:51] + "!"} {
		if _, err := h.Take(ctx, bad, "example.net", []string{binding}); !errors.Is(err, ErrHandoff) {
			t.Errorf("a made-up code %q: %v", bad, err)
		}
	}
	if _, err := h.Mint(ctx, &Handoff{Domain: "example.net", Binding: "short", Session: *sess}); err == nil {
		t.Error("a hand-off without a proper binding was minted")
	}
	_, enrol, err := s.CreateEnrolment(ctx, "john", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Mint(ctx, &Handoff{Domain: "example.net", Binding: binding, Session: *enrol}); err == nil {
		t.Error("an enrolment session (no factor) was handed off")
	}
	if _, _, err := New(Config{}, kv).Adopt(ctx, enrol, "example.net", ""); err == nil {
		t.Error("an enrolment session (no factor) was adopted")
	}
}

// A session adopted on another domain answers only there, shares the sign-in's family, and
// ends when the portal's session ends (sign-out), not when it rotates.
func TestHandoffSessionFamily(t *testing.T) {
	ctx := t.Context()
	s, kv, c := open(t, t.TempDir(), Config{})
	defer kv.Destruct()
	other := New(Config{Expiration: 2 * time.Hour, Inactivity: time.Minute}, kv).WithClock(c.now)
	id, sess, err := s.Create(ctx, "john", OneFactor, false)
	if err != nil {
		t.Fatal(err)
	}
	oid, osess, err := other.Adopt(ctx, sess, "example.net", "")
	if err != nil || osess.Family != sess.Family || osess.Domain != "example.net" || !osess.Expires.After(sess.Expires) {
		t.Fatalf("adopt: %+v %v", osess, err)
	}
	if _, _, err := other.WhoIn(ctx, oid, ""); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a handed-off session answers on the issuer's domain: %v", err)
	}
	if _, _, err := s.WhoIn(ctx, id, "example.net"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("the portal's session answers on another domain: %v", err)
	}
	if u, _, err := other.WhoIn(ctx, oid, "example.net"); err != nil || u != "john" {
		t.Fatalf("who: %q %v", u, err)
	}
	// its own inactivity
	c.add(2 * time.Minute)
	if _, _, err := other.WhoIn(ctx, oid, "example.net"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("inactivity of the domain did not apply: %v", err)
	}
	if live, _ := s.FamilyLive(ctx, sess.Family, ""); !live {
		t.Fatal("the family is not live while the portal's session is")
	}
	oid, _, _ = other.Adopt(ctx, sess, "example.net", "")
	// a rotation (step-up) keeps the family
	id, _, err = s.Elevate(ctx, id, TwoFactor)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.WhoIn(ctx, oid, "example.net"); err != nil {
		t.Fatalf("a step-up at the portal ended the other domain's session: %v", err)
	}
	// dropping one session of the family leaves the others
	dropped, _, _ := other.Adopt(ctx, sess, "example.net", "")
	if err := other.Drop(ctx, dropped); err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.WhoIn(ctx, dropped, "example.net"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a dropped session: %v", err)
	}
	if _, _, err := other.WhoIn(ctx, oid, "example.net"); err != nil {
		t.Fatalf("dropping one session ended another of its family: %v", err)
	}
	if _, err := s.Get(ctx, id); err != nil {
		t.Fatalf("dropping one session ended the portal's: %v", err)
	}
	// sign-out at the portal ends both
	if err := s.End(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.WhoIn(ctx, oid, "example.net"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("sign-out at the portal left the other domain's session: %v", err)
	}
	if live, _ := s.FamilyLive(ctx, sess.Family, ""); live {
		t.Fatal("the family is live after sign-out")
	}
}

// A start is good only as the gate signed it, and only until it expires.
func TestHandoffBeginSignature(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	now := time.Now()
	exp := now.Add(time.Minute).Unix()
	sig := SignBegin(key, "https://app.example.net/", "b", "1", exp)
	if !CheckBegin(key, "https://app.example.net/", "b", "1", exp, sig, now) {
		t.Fatal("a good start refused")
	}
	for name, ok := range map[string]bool{
		"other rd":    CheckBegin(key, "https://evil.example.net/", "b", "1", exp, sig, now),
		"other nonce": CheckBegin(key, "https://app.example.net/", "c", "1", exp, sig, now),
		"other level": CheckBegin(key, "https://app.example.net/", "b", "2", exp, sig, now),
		"later exp":   CheckBegin(key, "https://app.example.net/", "b", "1", exp+60, sig, now),
		"expired":     CheckBegin(key, "https://app.example.net/", "b", "1", exp, sig, now.Add(2*time.Minute)),
		"other key":   CheckBegin(bytes.Repeat([]byte{8}, 32), "https://app.example.net/", "b", "1", exp, sig, now),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSignOutAfterThePortalSessionLapsed: the portal's session ends by inactivity (or
// expiration) while a session handed off from it lives on at another domain; signing out with
// the lapsed portal cookie still ends that session, also after a step-up rotated the portal's id.
func TestSignOutAfterThePortalSessionLapsed(t *testing.T) {
	ctx := t.Context()
	s, kv, c := open(t, t.TempDir(), Config{Inactivity: 5 * time.Minute})
	defer kv.Destruct()
	other := New(Config{Expiration: 2 * time.Hour, Inactivity: time.Hour, RememberMe: -1}, kv).WithClock(c.now)
	id, sess, err := s.Create(ctx, "john", OneFactor, false)
	if err != nil {
		t.Fatal(err)
	}
	oid, _, err := other.Adopt(ctx, sess, "example.net", IDHash(id))
	if err != nil {
		t.Fatal(err)
	}
	// a step-up at the portal moves its id; the sign-in is reached through the new one
	id, _, err = s.Elevate(ctx, id, TwoFactor)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ { // the person works on example.net; the portal's session lapses
		c.add(2 * time.Minute)
		if _, _, err := other.WhoIn(ctx, oid, "example.net"); err != nil {
			t.Fatalf("the other domain's session ended early: %v", err)
		}
	}
	c.add(5 * time.Minute)
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Fatalf("the portal's session did not lapse: %v", err)
	}
	if _, _, err := other.WhoIn(ctx, oid, "example.net"); err != nil {
		t.Fatalf("the other domain's session: %v", err)
	}
	user, family, err := s.EndSignIn(ctx, id)
	if err != nil || user != "john" || family != sess.Family {
		t.Fatalf("sign-out with the lapsed cookie: %q %q %v", user, family, err)
	}
	if _, _, err := other.WhoIn(ctx, oid, "example.net"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("signing out with the lapsed portal cookie left the other domain's session: %v", err)
	}
	// once used, the record is gone; an unknown id leads nowhere
	if user, family, err := s.EndSignIn(ctx, id); err != nil || user != "" || family != "" {
		t.Fatalf("a second sign-out: %q %q %v", user, family, err)
	}
	if _, err := kv.Get(ctx, signInKey(IDHash(id))); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the sign-in record outlived the sign-out: %v", err)
	}
}
