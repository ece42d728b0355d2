package oidcprovider

import (
	"slices"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"
)

// TestAMROfSessions checks the amr an ID token gets from each kind of sign-in.
func TestAMROfSessions(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name string
		sess session.Session
		want []string
	}{
		{"password", session.Session{Level: session.OneFactor, PasswordAt: now}, []string{"pwd"}},
		{"password and totp", session.Session{Level: session.TwoFactor, PasswordAt: now, SecondFactor: "totp"}, []string{"pwd", "otp", "mfa"}},
		{"password and security key", session.Session{Level: session.TwoFactor, PasswordAt: now, SecondFactor: "webauthn"}, []string{"pwd", "hwk", "user", "mfa"}},
		{"passkey alone", session.Session{Level: session.TwoFactor, SecondFactor: session.FactorPasskey, FirstFactor: session.FactorPasskey}, []string{"hwk", "user", "pin", "mfa"}},
		{"passkey, then a security key at a step-up", session.Session{Level: session.TwoFactor, SecondFactor: "webauthn", FirstFactor: session.FactorPasskey}, []string{"hwk", "user", "pin", "mfa"}},
		{"passkey, then totp at a step-up", session.Session{Level: session.TwoFactor, SecondFactor: "totp", FirstFactor: session.FactorPasskey}, []string{"otp", "hwk", "user", "pin", "mfa"}},
		{"passkey, then the password confirmed", session.Session{Level: session.TwoFactor, PasswordAt: now, SecondFactor: session.FactorPasskey, FirstFactor: session.FactorPasskey}, []string{"pwd", "hwk", "user", "pin", "mfa"}},
		{"no password and no passkey (another kind of session)", session.Session{Level: session.OneFactor}, nil},
	} {
		if got := amrOf(&c.sess); !slices.Equal(got, c.want) {
			t.Errorf("%s: amr %q, want %q", c.name, got, c.want)
		}
	}
}
