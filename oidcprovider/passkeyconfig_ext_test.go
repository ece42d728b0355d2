package oidcprovider_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// adaptWebAuthn adapts a Caddyfile and returns the oidc app's "webauthn" JSON.
func adaptWebAuthn(t *testing.T, caddyfile string) (string, error) {
	t.Helper()
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return "", err
	}
	var cfg struct {
		Apps struct {
			OIDC struct {
				WebAuthn json.RawMessage `json:"webauthn"`
			} `json:"oidc"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	return string(cfg.Apps.OIDC.WebAuthn), nil
}

// TestEnablePasskeyLogin checks the Caddyfile forms of enable_passkey_login, their JSON, and
// that each passes validation.
func TestEnablePasskeyLogin(t *testing.T) {
	users := "users_file ../users.example.yml\n"
	for _, c := range []struct{ block, want string }{
		{"webauthn {\n enable_passkey_login\n}", `{"enable_passkey_login":true}`},
		{"webauthn {\n enable_passkey_login true\n}", `{"enable_passkey_login":true}`},
		{"webauthn {\n enable_passkey_login false\n user_verification required\n}", `{"user_verification":"required","enable_passkey_login":false}`},
		{"webauthn {\n user_verification discouraged\n}", `{"user_verification":"discouraged"}`}, // default: on
	} {
		got, err := adaptWebAuthn(t, provider(users+c.block))
		if err != nil || got != c.want {
			t.Errorf("%q adapts to %s (%v), want %s", c.block, got, err, c.want)
		}
		if err := validate(t, provider(users+c.block)); err != nil {
			t.Errorf("%q: validate: %v", c.block, err)
		}
	}
	for _, c := range []struct{ block, want string }{
		{"webauthn {\n enable_passkey_login maybe\n}", `enable_passkey_login takes true or false, not "maybe"`},
		{"webauthn {\n enable_passkey_login true false\n}", `enable_passkey_login takes one value, got another: "false"`},
		{"webauthn {\n enable_passkey_login\n enable_passkey_login false\n}", `webauthn: enable_passkey_login is given twice; keep one`},
		{"webauthn {\n passkeys on\n}", `webauthn: unknown option "passkeys" (disable, display_name, timeout, user_verification, enable_passkey_login)`},
	} {
		if _, err := adaptWebAuthn(t, provider(users+c.block)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.block, err, c.want)
		}
	}
}
