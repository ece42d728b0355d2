package oidcprovider_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// The identity_validation block: the Caddyfile adapts to Authelia's JSON keys, a good block
// validates, and every bad value fails validate with the key and the fix.
func TestIdentityValidationConfig(t *testing.T) {
	dir := t.TempDir()
	usersPath := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(usersPath, []byte("users:\n  john:\n    password: \""+seedDigest+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users := "users_file " + usersPath + "\n"
	block := func(inner string) string {
		return provider(users + "identity_validation {\n elevated_session {\n" + inner + "\n }\n}")
	}
	full := block("code_lifespan 3m\n elevation_lifespan 15m\n characters 10\n require_second_factor false\n skip_second_factor\n require_notifier false")
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(full), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			OIDC struct {
				IdentityValidation json.RawMessage `json:"identity_validation"`
			} `json:"oidc"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	want := `{"elevated_session":{"code_lifespan":180000000000,"elevation_lifespan":900000000000,"characters":10,"require_second_factor":false,"skip_second_factor":true,"require_notifier":false}}`
	if got := string(cfg.Apps.OIDC.IdentityValidation); got != want {
		t.Errorf("adapted to %s\nwant %s", got, want)
	}
	for _, good := range []string{full, block(""), block("characters 6\n code_lifespan 1m\n elevation_lifespan 1h")} {
		if err := validate(t, good); err != nil {
			t.Errorf("validate: %v", err)
		}
	}
	for _, c := range []struct{ name, caddyfile, want string }{
		{"few characters", block("characters 5"), "identity_validation: elevated_session: characters 5: use a length from 6 to 20"},
		{"many characters", block("characters 21"), "characters 21: use a length from 6 to 20"},
		{"zero characters", block("characters 0"), `characters: "0" is not a number (a length from 6 to 20)`},
		{"characters word", block("characters eight"), `characters: "eight" is not a number`},
		{"short code", block("code_lifespan 10s"), "identity_validation: elevated_session: code_lifespan 10s: use a duration from 1m to 1h"},
		{"long code", block("code_lifespan 2h"), "code_lifespan 2h0m0s: use a duration from 1m to 1h"},
		{"long elevation", block("elevation_lifespan 30d"), "elevation_lifespan 720h0m0s: use a duration from 1m to 1h"},
		{"negative", block("elevation_lifespan -5m"), `elevation_lifespan: "-5m" must be positive`},
		{"bad flag", block("require_notifier maybe"), `require_notifier takes true or false, not "maybe"`},
		{"unknown", block("jwt_lifespan 5m"), `identity_validation: elevated_session: unknown option "jwt_lifespan" (code_lifespan, elevation_lifespan, characters`},
		{"unknown block", provider(users + "identity_validation {\n one_time_code {\n }\n}"), `identity_validation: unknown option "one_time_code" (elevated_session, reset_password)`},
		{"twice", provider(users + "identity_validation {\n}\nidentity_validation {\n}"), "identity_validation is given twice"},
		{"without users", provider("identity_validation {\n elevated_session {\n characters 8\n }\n}"), "identity_validation: needs people who sign in"},
	} {
		err := validate(t, c.caddyfile)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// JSON straight to validate: the same checks
	var raw map[string]any
	_ = json.Unmarshal(js, &raw)
	raw["apps"].(map[string]any)["oidc"].(map[string]any)["identity_validation"] = map[string]any{"elevated_session": map[string]any{"characters": 40}}
	bad, _ := json.Marshal(raw)
	if err := validateJSON(t, bad); err == nil || !strings.Contains(err.Error(), "characters 40: use a length from 6 to 20") {
		t.Errorf("JSON characters 40: %v", err)
	}
}

// validateJSON provisions a JSON config as `caddy validate` does.
func validateJSON(t *testing.T, js []byte) error {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		return err
	}
	return caddy.Validate(&cfg)
}
