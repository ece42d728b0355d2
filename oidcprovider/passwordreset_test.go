package oidcprovider_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// The password_reset block adapts to its JSON keys and provisions; its mistakes are refused
// with errors that name the key and the fix.
func TestPasswordResetConfig(t *testing.T) {
	dir := t.TempDir()
	usersPath := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(usersPath, []byte("users:\n  john:\n    password: \""+seedDigest+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users := "users_file " + usersPath + "\n"
	mail := users + "notifier {\n filesystem " + filepath.Join(dir, "notification.txt") + "\n}\n"

	adapter := caddyconfig.GetAdapter("caddyfile")
	js, _, err := adapter.Adapt([]byte(provider(users+"password_reset {\n disable false\n custom_url https://accounts.example.com/forgot\n}")), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			OIDC struct {
				PasswordReset map[string]any `json:"password_reset"`
			} `json:"oidc"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Apps.OIDC.PasswordReset; len(got) != 1 || got["custom_url"] != "https://accounts.example.com/forgot" {
		t.Errorf("JSON password_reset %v", got)
	}

	for _, ok := range []string{
		"password_reset {\n disable\n}",
		"password_reset {\n disable true\n}",
		"password_reset {\n custom_url https://accounts.example.com/forgot\n}",
		"password_reset {\n custom_url http://localhost:8080/forgot\n}",
		"password_reset {\n}",
		"identity_validation {\n reset_password {\n jwt_lifespan 10m\n }\n}",
	} {
		if err := validate(t, provider(mail+ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, c := range []struct{ in, want string }{
		{users + "password_reset {\n custom_url http://accounts.example.com/forgot\n}", `password_reset: custom_url "http://accounts.example.com/forgot" must use https`},
		{users + "password_reset {\n custom_url /forgot\n}", `password_reset: custom_url "/forgot" must be an absolute https URL`},
		{users + "password_reset {\n custom_url javascript:alert(1)\n}", `must be an absolute https URL`},
		{users + "password_reset {\n disable\n custom_url https://a.example.com/\n}", "password_reset: both disable and custom_url are set"},
		{users + "password_reset {\n enable\n}", `password_reset: unknown option "enable" (disable, custom_url)`},
		{users + "password_reset {\n disable maybe\n}", `disable takes true or false, not "maybe"`},
		{users + "password_reset {\n}\npassword_reset {\n}", "password_reset is given twice"},
		{"password_reset {\n disable false\n}", "password_reset: needs the people who sign in"},
		{users + "identity_validation {\n reset_password {\n jwt_lifespan 2h\n }\n}", "identity_validation: reset_password: jwt_lifespan 2h0m0s: use a duration from 1m to 1h (or leave it out for 5m)"},
		{users + "identity_validation {\n reset_password {\n jwt_secret abc\n }\n}", "jwt_secret has no use here"},
		{users + "identity_validation {\n reset_password {\n lifespan 5m\n }\n}", `reset_password: unknown option "lifespan" (jwt_lifespan)`},
		{users + "identity_validation {\n reset_password {\n }\n reset_password {\n }\n}", "reset_password is given twice"},
		{users + "password_reset {\n}", "password_reset: the built-in reset mails a link, and there is no notifier; add a notifier block"},
	} {
		err := validate(t, provider(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.in, err, c.want)
		}
	}
}
