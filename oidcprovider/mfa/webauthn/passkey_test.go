package webauthn

import (
	"encoding/json"
	"errors"
	"testing"
)

// registerPasskey registers a as a passkey ("Add a passkey") for user.
func registerPasskey(t *testing.T, d *Devices, a *authenticator, user, name string) (*Credential, error) {
	t.Helper()
	options, err := d.BeginPasskeyRegistration(t.Context(), user, "", "reg-"+user)
	if err != nil {
		t.Fatal(err)
	}
	return d.FinishRegistration(t.Context(), user, "", "reg-"+user, name, a.register(t, options))
}

// passkeyLogin runs a passkey sign-in with a under ceremony key k and returns the user it signs
// in, and the answer it sent.
func passkeyLogin(t *testing.T, d *Devices, a *authenticator, k string) (string, []byte, error) {
	t.Helper()
	options, err := d.BeginPasskeyLogin(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	answer := a.login(t, options)
	user, err := d.FinishPasskeyLogin(t.Context(), k, answer)
	return user, answer, err
}

func TestPasskeyRegistrationAndLogin(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, clk := newDevices(t, db) // user_verification preferred: passkeys require it all the same

	options, err := d.BeginPasskeyRegistration(ctx, "john", "John", "reg")
	if err != nil {
		t.Fatal(err)
	}
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	if o.AuthenticatorSelection.ResidentKey != "required" || o.AuthenticatorSelection.UserVerification != "required" {
		t.Fatalf("passkey registration options %s: want residentKey and userVerification required", options)
	}
	a := newAuthenticator(t)
	a.noCredProps = true // the ceremony required a resident key: it is one without a report
	cred, err := d.FinishRegistration(ctx, "john", "John", "reg", "Phone", a.register(t, options))
	if err != nil {
		t.Fatal(err)
	}
	if !cred.Passkey || !cred.Discoverable || cred.Name != "Phone" {
		t.Fatalf("registered %+v, want a passkey named Phone", cred)
	}

	// a plain security key: credProps rk false, so not a passkey
	key := newAuthenticator(t)
	if c := register(t, d, key, "john", "Yubikey"); c.Passkey || c.Discoverable {
		t.Fatalf("security key registered as %+v, want no passkey", c)
	}

	// sign-in options: no allowed credentials, user verification required
	lo, err := d.BeginPasskeyLogin(ctx, "browser")
	if err != nil {
		t.Fatal(err)
	}
	var ro requestOptions
	if err := json.Unmarshal(lo, &ro); err != nil {
		t.Fatal(err)
	}
	if len(ro.AllowCredentials) != 0 || ro.UserVerification != "required" || ro.RPID != rpID {
		t.Fatalf("passkey sign-in options %s", lo)
	}
	clk.t = clk.t.Add(1)
	user, err := d.FinishPasskeyLogin(ctx, "browser", a.login(t, lo))
	if err != nil || user != "john" {
		t.Fatalf("passkey sign-in: %q, %v", user, err)
	}
	list, _ := d.List(ctx, "john")
	for _, c := range list {
		if c.ID == cred.ID && !c.LastUsed.Equal(clk.t) {
			t.Fatalf("last use not recorded: %+v", c)
		}
	}
	// the credential still works as a second factor
	if err := login(t, d, a, "john"); err != nil {
		t.Fatal(err)
	}
}

func TestPasskeyRegistrationNeedsUserVerification(t *testing.T) {
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, _ := newDevices(t, db)
	a := newAuthenticator(t)
	a.noUV = true
	if _, err := registerPasskey(t, d, a, "john", ""); !errors.Is(err, ErrVerification) {
		t.Fatalf("passkey registered without user verification: %v", err)
	}
	if l, _ := d.List(t.Context(), "john"); len(l) != 0 {
		t.Fatalf("stored %+v", l)
	}
}

func TestPasskeyLoginRefusals(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, _ := newDevices(t, db)
	john, jane := newAuthenticator(t), newAuthenticator(t)
	john.passkey, jane.passkey = true, true
	if _, err := registerPasskey(t, d, john, "john", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := registerPasskey(t, d, jane, "jane", ""); err != nil {
		t.Fatal(err)
	}

	t.Run("each passkey signs in its owner", func(t *testing.T) {
		for a, want := range map[*authenticator]string{john: "john", jane: "jane"} {
			if got, _, err := passkeyLogin(t, d, a, "k"); err != nil || got != want {
				t.Fatalf("signed in %q (%v), want %q", got, err, want)
			}
		}
	})

	t.Run("replayed answer", func(t *testing.T) {
		user, answer, err := passkeyLogin(t, d, john, "k")
		if err != nil || user != "john" {
			t.Fatal(user, err)
		}
		if _, err := d.FinishPasskeyLogin(ctx, "k", answer); !errors.Is(err, ErrNoCeremony) {
			t.Fatalf("replay on the consumed ceremony: %v", err)
		}
		// on a new ceremony: the challenge is not its own
		if _, err := d.BeginPasskeyLogin(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.FinishPasskeyLogin(ctx, "k", answer); !errors.Is(err, ErrVerification) {
			t.Fatalf("replay on a new ceremony: %v", err)
		}
	})

	t.Run("another browser's ceremony", func(t *testing.T) {
		options, err := d.BeginPasskeyLogin(ctx, "browser-a")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.FinishPasskeyLogin(ctx, "browser-b", john.login(t, options)); !errors.Is(err, ErrNoCeremony) {
			t.Fatalf("finished under another key: %v", err)
		}
	})

	t.Run("no user verification", func(t *testing.T) {
		john.noUV = true
		defer func() { john.noUV = false }()
		if _, _, err := passkeyLogin(t, d, john, "k"); !errors.Is(err, ErrVerification) {
			t.Fatalf("signed in without user verification: %v", err)
		}
	})

	t.Run("sign count that did not increase", func(t *testing.T) {
		saved := john.count
		john.count = 0 // the next answer carries 1, below what the store has seen
		if _, _, err := passkeyLogin(t, d, john, "k"); !errors.Is(err, ErrVerification) {
			t.Fatalf("signed in with an old sign count: %v", err)
		}
		john.count = saved + 1
	})

	t.Run("user handle of another user", func(t *testing.T) {
		// jane's credential presenting john's user handle: never john, never jane
		saved := jane.userHandle
		jane.userHandle = john.userHandle
		defer func() { jane.userHandle = saved }()
		if user, _, err := passkeyLogin(t, d, jane, "k"); !errors.Is(err, ErrVerification) || user != "" {
			t.Fatalf("signed in %q: %v", user, err)
		}
	})

	t.Run("unknown credential", func(t *testing.T) {
		stranger := newAuthenticator(t)
		stranger.userHandle = john.userHandle
		options, err := d.BeginPasskeyLogin(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		answer := stranger.login(t, options)
		if owner, err := d.PasskeyOwner(ctx, answer); owner != "" || err != nil {
			t.Fatalf("owner of an unknown credential: %q, %v", owner, err)
		}
		if _, err := d.FinishPasskeyLogin(ctx, "k", answer); !errors.Is(err, ErrNoDevice) {
			t.Fatalf("unknown credential: %v", err)
		}
		if owner, _ := d.PasskeyOwner(ctx, []byte("not json")); owner != "" {
			t.Fatal(owner)
		}
	})

	t.Run("removed credential", func(t *testing.T) {
		options, err := d.BeginPasskeyLogin(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		answer := jane.login(t, options) // answered before the removal, sent after
		if err := d.Remove(ctx, "jane", b64(jane.id)); err != nil {
			t.Fatal(err)
		}
		if _, err := d.FinishPasskeyLogin(ctx, "k", answer); !errors.Is(err, ErrNoDevice) {
			t.Fatalf("removed credential: %v", err)
		}
	})
}

func TestRename(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, _ := newDevices(t, db)
	a := newAuthenticator(t)
	c := register(t, d, a, "john", "Key")
	if err := d.Rename(ctx, "john", c.ID, "  Office\u0000 key "); err != nil {
		t.Fatal(err)
	}
	if l, _ := d.List(ctx, "john"); len(l) != 1 || l[0].Name != "Office key" {
		t.Fatalf("after renaming: %+v", l)
	}
	if err := d.Rename(ctx, "jane", c.ID, "Mine"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("renamed another user's key: %v", err)
	}
	if err := d.Rename(ctx, "john", "nope", "x"); !errors.Is(err, ErrNoDevice) {
		t.Fatal(err)
	}
	// the key still signs in after a rename
	if err := login(t, d, a, "john"); err != nil {
		t.Fatal(err)
	}
}
