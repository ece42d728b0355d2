package importauthelia_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/portcullis-auth/portcullis/caddyauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/importauthelia"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Each testdata/*.yml converts to its golden .caddyfile and .leftovers, and the Caddyfile adapts
// and validates with Portcullis's modules.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yml")
	if len(files) < 2 {
		t.Fatalf("testdata holds %d configurations", len(files))
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, f := range files {
		name := strings.TrimSuffix(f, ".yml")
		t.Run(filepath.Base(name), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			opts := importauthelia.Options{}
			if strings.HasSuffix(name, "uptime_kuma") {
				opts.Issuer = "https://auth.example.com" // the seed has no session section
			}
			res, err := importauthelia.Convert(in, opts)
			if err != nil {
				t.Fatal(err)
			}
			var left strings.Builder
			for _, l := range res.Leftovers {
				left.WriteString(l.String() + "\n")
			}
			golden(t, name+".caddyfile", res.Caddyfile)
			golden(t, name+".leftovers", left.String())

			// the users file the config names is on Authelia's machine: validate with one here
			caddyfile := res.Caddyfile
			if i := strings.Index(caddyfile, "users_file "); i >= 0 {
				end := i + strings.IndexByte(caddyfile[i:], '\n')
				users := filepath.Join(t.TempDir(), "users.yml")
				if err := os.WriteFile(users, []byte("users: {}\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				caddyfile = caddyfile[:i] + "users_file " + users + caddyfile[end:]
			}
			// so is the LDAP service account's password, from the environment or a secret file
			t.Setenv("PORTCULLIS_LDAP_PASSWORD", "not-used")
			if i := strings.Index(caddyfile, "password {file."); i >= 0 {
				end := i + strings.IndexByte(caddyfile[i:], '\n')
				secret := filepath.Join(t.TempDir(), "ldap-password")
				if err := os.WriteFile(secret, []byte("not-used\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				caddyfile = caddyfile[:i] + "password {file." + secret + "}" + caddyfile[end:]
			}
			// and the notifier's file is in a directory of Authelia's machine; its SMTP password
			// comes from the environment
			t.Setenv("PORTCULLIS_SMTP_PASSWORD", "not-used")
			if i := strings.Index(caddyfile, "filesystem "); i >= 0 {
				end := i + strings.IndexByte(caddyfile[i:], '\n')
				caddyfile = caddyfile[:i] + "filesystem " + filepath.Join(t.TempDir(), "notification.txt") + caddyfile[end:]
			}
			adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
			if err != nil {
				t.Fatalf("the output does not adapt: %v", err)
			}
			for _, w := range warnings {
				if !strings.Contains(w.Message, "formatted") {
					t.Errorf("adapt warning: %s", w.String())
				}
			}
			var cfg caddy.Config
			if err := json.Unmarshal(adapted, &cfg); err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Fatalf("the output does not validate: %v", err)
			}
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n%s", path, got)
	}
}

// Authelia's forms of subjects, domains, durations and an empty file.
func TestForms(t *testing.T) {
	res, err := importauthelia.Convert([]byte(`
identity_providers:
  oidc:
    lifespans:
      access_token: 3600
      refresh_token: 2 days
    clients:
      - client_id: m
        client_secret: '$plaintext$x'
        grant_types: client_credentials
      - client_id: app
        client_secret: '$plaintext$y'
        redirect_uris: https://app.example.com/cb
        pre_configured_consent_duration: 1 week
      - client_id: app2
        client_secret: '$plaintext$y'
        redirect_uris: https://app2.example.com/cb
        pre_configured_consent_duration: 3600
access_control:
  rules:
    - domain: [A.Example.com., 'b.example.com']
      subject: oauth2:client:m
      policy: one_factor
    - domain: c.example.com
      subject: oauth2:client:gone
      policy: one_factor
`), importauthelia.Options{Issuer: "https://auth.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"access_token 3600s", "refresh_token 48h", "grant_types client_credentials",
		"pre_configured_consent_duration 168h", "pre_configured_consent_duration 3600s", "redirect_uris https://app.example.com/cb",
		"subject oauth2:client:m", "\na.example.com {", "\nb.example.com {", "issuer https://auth.example.com\n"} {
		if !strings.Contains(res.Caddyfile, want) {
			t.Errorf("output lacks %q:\n%s", want, res.Caddyfile)
		}
	}
	if strings.Contains(res.Caddyfile, "oauth2:client:gone") {
		t.Error("a rule whose only subject names no carried-over client must be left out")
	}
	if res.Complete() {
		t.Error("the dropped rule must be reported")
	}
	if _, err := importauthelia.Convert([]byte("- not a map"), importauthelia.Options{}); err == nil {
		t.Error("a YAML list at the top must be an error")
	}
	empty, err := importauthelia.Convert(nil, importauthelia.Options{})
	if err != nil || !strings.Contains(empty.Caddyfile, "issuer https://auth.example.com") || empty.Complete() {
		t.Errorf("an empty file: %v %+v", err, empty)
	}
}

// Authelia's storage forms: the legacy host and port, a socket directory, a password from the
// environment or a secret file, inline PEM, and the stores Portcullis does not share through.
func TestStorage(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want, not  []string
		leftovers  []string // paths of leftovers (not "not needed")
	}{{
		name: "legacy host and port, password from the environment",
		yaml: "storage:\n  postgres:\n    host: db.lan\n    port: 5433\n    database: auth\n    username: auth\n    timeout: 10\n",
		want: []string{"storage postgres {\n", "address tcp://db.lan:5433\n", "database auth\n", "username auth\n",
			"password {env.PORTCULLIS_DB_PASSWORD}\n", "timeout 10s\n"},
		not:       []string{"schema"},
		leftovers: []string{"storage", "storage.postgres.password"},
	}, {
		name:      "socket directory, password from a secret file",
		yaml:      "storage:\n  postgres:\n    host: /run/postgresql\n    database: auth\n    password: '{{ secret \"/run/secrets/db\" }}'\n",
		want:      []string{"address unix:///run/postgresql\n", "password {file./run/secrets/db}\n"},
		leftovers: []string{"storage"},
	}, {
		name:      "address without a scheme, inline password and client key",
		yaml:      "storage:\n  postgres:\n    address: '[::1]:5432'\n    database: auth\n    password: hunter2\n    tls:\n      skip_verify: true\n      minimum_version: TLS1.0\n      private_key: \"-----BEGIN PRIVATE KEY-----\\nAA==\\n-----END PRIVATE KEY-----\\n\"\n",
		want:      []string{"address tcp://[::1]:5432\n", "password {env.PORTCULLIS_DB_PASSWORD}\n", "tls {\n", "skip_verify\n"},
		not:       []string{"hunter2", "BEGIN PRIVATE KEY", "minimum_version", "private_key"},
		leftovers: []string{"storage", "storage.postgres.password", "storage.postgres.tls.minimum_version", "storage.postgres.tls.private_key"},
	}, {
		name:      "mysql",
		yaml:      "storage:\n  mysql:\n    address: tcp://db:3306\n    password: hunter2\n",
		not:       []string{"storage", "hunter2"},
		leftovers: []string{"storage", "storage.mysql"},
	}, {
		name:      "local",
		yaml:      "storage:\n  encryption_key: k\n  local:\n    path: /config/db.sqlite3\n",
		not:       []string{"storage", "sqlite"},
		leftovers: []string{"storage"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := importauthelia.Convert([]byte(tc.yaml), importauthelia.Options{Issuer: "https://auth.example.com"})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.Caddyfile, w) {
					t.Errorf("output lacks %q:\n%s", w, res.Caddyfile)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(res.Caddyfile, n) {
					t.Errorf("output has %q:\n%s", n, res.Caddyfile)
				}
			}
			var got []string
			for _, l := range res.Leftovers {
				if !l.NotNeeded {
					got = append(got, l.Path)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.leftovers, " ") {
				t.Errorf("leftovers %q, want %q", got, tc.leftovers)
			}
		})
	}
}

// TestBackslashesSurvive: a value with backslashes (a domain_regex's \w) reaches the adapted
// config as written; in a double-quoted token Caddy would keep the escaping backslashes too.
func TestBackslashesSurvive(t *testing.T) {
	in := "access_control:\n  default_policy: deny\n  rules:\n    - domain_regex: '^(?P<Group>\\w+)\\.team\\.example\\.com$'\n      policy: one_factor\n"
	res, err := importauthelia.Convert([]byte(in), importauthelia.Options{Issuer: "https://auth.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(res.Caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Apps struct {
			OIDC struct {
				AccessControl struct {
					Rules []struct {
						DomainRegex []string `json:"domain_regex"`
					} `json:"rules"`
				} `json:"access_control"`
			} `json:"oidc"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &v); err != nil {
		t.Fatal(err)
	}
	if r := v.Apps.OIDC.AccessControl.Rules; len(r) != 1 || len(r[0].DomainRegex) != 1 || r[0].DomainRegex[0] != `^(?P<Group>\w+)\.team\.example\.com$` {
		t.Fatalf("domain_regex adapted to %+v from\n%s", r, res.Caddyfile)
	}
}
