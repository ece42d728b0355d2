package oidcprovider

import (
	"net/url"
	"testing"

	"go.uber.org/zap"
)

// TestPasskeyLoginResolved checks the resolved setting: on by default whenever WebAuthn is on,
// off when the block says false, and never without WebAuthn.
func TestPasskeyLoginResolved(t *testing.T) {
	off, on := false, true
	for _, c := range []struct {
		name string
		w    *WebAuthnConfig
		want bool
	}{
		{"no block", nil, true},
		{"block without the key", &WebAuthnConfig{UserVerification: "required"}, true},
		{"true", &WebAuthnConfig{EnablePasskeyLogin: &on}, true},
		{"false", &WebAuthnConfig{EnablePasskeyLogin: &off}, false},
		{"webauthn disabled", &WebAuthnConfig{Disable: true, EnablePasskeyLogin: &on}, false},
	} {
		a := &App{Issuer: "https://auth.example.com", UsersFile: "../users.example.yml", WebAuthn: c.w, logger: zap.NewNop()}
		a.issuerURL, _ = url.Parse(a.Issuer)
		if err := a.provisionPortal(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := a.portal.passkeyLogin && a.portal.webauthn != nil; got != c.want {
			t.Errorf("%s: passkey login %v, want %v", c.name, got, c.want)
		}
	}
}
