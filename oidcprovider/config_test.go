package oidcprovider_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/portcullis-auth/portcullis/caddyauth"
)

// TestAdapt checks the Caddyfile → JSON contract of every option against golden files.
func TestAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt fixtures: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.SplitN(string(data), "----------", 2)
		if !caddytest.CompareAdapt(t, f, parts[0], "caddyfile", strings.TrimSpace(parts[1])) {
			t.Errorf("%s: adapted JSON differs", f)
		}
	}
}

func writeKey(t *testing.T, dir, name string, key any) string {
	t.Helper()
	var block *pem.Block
	switch k := key.(type) {
	case *rsa.PrivateKey:
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// validate adapts a Caddyfile and provisions it as `caddy validate` does.
func validate(t *testing.T, caddyfile string) error {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	js, _, err := adapter.Adapt([]byte(caddyfile), nil)
	if err != nil {
		return err
	}
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		return err
	}
	return caddy.Validate(&cfg)
}

const seedDigest = "$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng"

func provider(inner string) string {
	return "{\n\tadmin off\n\toidc {\n\t\tissuer https://auth.example.com\n\t\tstorage " + os.TempDir() + "/portcullis-validate\n" + inner + "\n\t}\n}\nauth.example.com {\n\toidc_provider\n}\n"
}

const kuma = `client kuma {
	secret "` + seedDigest + `"
	scopes authelia.bearer.authz
	audience https://secure.example.com/
	grant_types client_credentials
}`

func TestValidateAcceptsDesignConfigs(t *testing.T) {
	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	keyFile := writeKey(t, dir, "rs256.pem", rsaKey)
	t.Setenv("PORTCULLIS_HMAC_SECRET", strings.Repeat("s", 40))
	for _, f := range []string{"design_provider", "design_grafana"} {
		data, err := os.ReadFile("testdata/adapt/" + f + ".caddyfiletest")
		if err != nil {
			t.Fatal(err)
		}
		cf := strings.SplitN(string(data), "----------", 2)[0]
		cf = strings.Replace(cf, "/etc/caddy/oidc/rs256.pem", keyFile, 1)
		cf = strings.Replace(cf, "/var/lib/caddy/portcullis", filepath.Join(dir, "store"), 1)
		cf = strings.Replace(cf, "/etc/caddy/users.yml", "../users.example.yml", 1)
		cf = strings.Replace(cf, "{\n", "{\n\tadmin off\n", 1)
		if f == "design_grafana" {
			// group subjects need no registration; the global block only needs an issuer
			cf = strings.Replace(cf, "issuer https://auth.example.com", "issuer https://auth.example.com\n\t\tstorage "+filepath.Join(dir, "store"), 1)
		}
		if err := validate(t, cf); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); err == nil {
		t.Error("validate must not open the store")
	}
}

func TestValidateErrors(t *testing.T) {
	dir := t.TempDir()
	usersPath := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(usersPath, []byte("users:\n  john:\n    password: \"$argon2id$v=19$m=65536,t=3,p=4$ZfApOXlumEkguxVuCeSuVA$2uw6ebDvdxh0mR3mKzllnyWrWuGLLrT5pCOdOySbvsI\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users := "users_file " + usersPath + "\n"
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallFile := writeKey(t, dir, "small.pem", small)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecFile := writeKey(t, dir, "ec.pem", ec)
	cases := []struct {
		name, caddyfile, want string
	}{
		{"no issuer", "{\n\tadmin off\n\toidc {\n\t\tstorage /tmp/x\n\t}\n}\n", "issuer is required"},
		{"http issuer", strings.Replace(provider(""), "https://auth.example.com", "http://auth.example.com", 1), "must use https"},
		{"issuer with query", strings.Replace(provider(""), "https://auth.example.com", "https://auth.example.com/?x=1", 1), "may not carry a query"},
		{"unknown option", provider("bogus 1"), `unknown option "bogus"`},
		{"pending option", provider("cors {\n}"), `"cors" is not available yet`},
		{"session without users", provider("session {\n expiration 1h\n}"), "session: needs users_file"},
		{"totp without users", provider("totp {\n digits 8\n}"), "totp: needs users_file"},
		{"session option", provider(users + "session {\n domain_name x\n}"), `session: unknown option "domain_name"`},
		{"cookie domain elsewhere", provider(users + "session {\n cookie_domain example.org\n}"), `cookie_domain "example.org" does not cover the issuer's host "auth.example.com"`},
		{"cookie domain one label", provider(users + "session {\n cookie_domain com\n}"), `must be a domain such as example.com`},
		{"cookie domain wildcard", provider(users + "session {\n cookie_domain *.example.com\n}"), `must be a domain such as example.com`},
		{"same_site none", provider(users + "session {\n same_site none\n}"), `same_site "none": use lax or strict`},
		{"remember_me word", provider(users + "session {\n remember_me forever\n}"), `remember_me: "forever" is not a positive duration`},
		{"bad inactivity", provider(users + "session {\n inactivity soon\n}"), `inactivity: "soon" is not a duration`},
		{"bad redirection url", provider(users + "session {\n default_redirection_url /home\n}"), "default_redirection_url"},
		{"cookie name", provider(users + "session {\n name \"a b\"\n}"), `name "a b"`},
		{"totp digits", provider(users + "totp {\n digits 7\n}"), "totp digits 7: use 6 or 8"},
		{"totp algorithm", provider(users + "totp {\n algorithm MD5\n}"), `totp algorithm "MD5"`},
		{"totp option", provider(users + "totp {\n window 2\n}"), `totp: unknown option "window"`},
		{"webauthn verification", provider(users + "webauthn {\n user_verification always\n}"), `user_verification "always": use discouraged, preferred or required`},
		{"webauthn option", provider(users + "webauthn {\n attestation direct\n}"), `webauthn: unknown option "attestation"`},
		{"session twice", provider(users + "session {\n}\nsession {\n}"), "session is given twice"},
		{"missing users file", provider("users_file /nonexistent/users.yml"), `users_file: reading users file /nonexistent/users.yml`},
		{"regulation option", provider("regulation {\n max_tries 3\n}"), `regulation: unknown option "max_tries"`},
		{"regulation count", provider("regulation {\n max_retries many\n}"), `max_retries: "many" is not a number`},
		{"regulation negative", provider("regulation {\n max_retries -1\n}"), `max_retries must be 0 (off) or more`},
		{"short hmac secret", provider("hmac_secret short"), "hmac_secret must be at least 32 bytes"},
		{"missing key file", provider("signing_key {\n algorithm RS256\n key_file " + dir + "/none.pem\n}"), "key_file"},
		{"small RSA key", provider("signing_key {\n key_file " + smallFile + "\n}"), "use at least 2048"},
		{"EC key with RSA alg", provider("signing_key {\n algorithm RS256\n key_file " + ecFile + "\n}"), "does not fit this EC key"},
		{"no RS256 key", provider("signing_key {\n key_file " + ecFile + "\n}"), "at least one RS256 key is required"},
		{"signing_key without key_file", provider("signing_key {\n algorithm RS256\n}"), "key_file is required"},
		{"bad duration", provider("lifespans {\n access_token soon\n}"), "not a duration"},
		{"bad enforce_pkce", provider("enforce_pkce sometimes"), "enforce_pkce"},
		{"unknown custom lifespan", provider(strings.Replace(kuma, "grant_types", "lifespan fast\n\tgrant_types", 1)), `no custom lifespan named "fast"`},
		{"bad client id", provider(strings.Replace(kuma, "client kuma", "client \"ku ma\"", 1)), "client_id must be"},
		{"duplicate client", provider(kuma + "\n" + kuma), "registered twice"},
		{"pending client option", provider(strings.Replace(kuma, "grant_types", "redirect_uris https://x/cb\n\tgrant_types", 1)), `option "redirect_uris" is not available yet`},
		{"unknown client option", provider(strings.Replace(kuma, "grant_types", "colour blue\n\tgrant_types", 1)), `unknown option "colour"`},
		{"default grant not served", provider(strings.Replace(kuma, "grant_types client_credentials", "", 1)), "authorization_code (the default)"},
		{"public client_credentials", provider("client pub {\n public\n scopes x\n grant_types client_credentials\n}"), "needs a confidential client"},
		{"public with secret", provider("client pub {\n public\n secret abc\n grant_types client_credentials\n}"), "a public client has no secret"},
		{"no secret", provider(strings.Replace(kuma, `secret "`+seedDigest+`"`, "", 1)), "needs a secret"},
		{"bad digest", provider(strings.Replace(kuma, seedDigest, "$pbkdf2-sha512$x$y", 1)), "not a digest"},
		{"openid on client_credentials", provider(strings.Replace(kuma, "scopes authelia.bearer.authz", "scopes openid", 1)), `"openid" is not allowed`},
		{"bearer scope with others", provider(strings.Replace(kuma, "scopes authelia.bearer.authz", "scopes authelia.bearer.authz profile", 1)), `may only add offline`},
		{"bearer scope without audience", provider(strings.Replace(kuma, "audience https://secure.example.com/", "", 1)), "needs at least one audience"},
		{"bearer audience not a URL", provider(strings.Replace(kuma, "https://secure.example.com/", "secure.example.com", 1)), "absolute http(s) URL"},
		{"bearer with client_secret_post", provider(strings.Replace(kuma, "grant_types", "token_endpoint_auth_method client_secret_post\n\tgrant_types", 1)), "must use client_secret_basic"},
		{"jwt auth method", provider(strings.Replace(kuma, "grant_types", "token_endpoint_auth_method private_key_jwt\n\tgrant_types", 1)), "not available yet"},
		{"bad audience mode", provider(strings.Replace(kuma, "grant_types", "requested_audience_mode sometimes\n\tgrant_types", 1)), "requested_audience_mode"},
		{"unregistered client subject", provider(kuma + "\naccess_control {\n rule {\n domain secure.example.com\n subject oauth2:client:ghost\n policy one_factor\n }\n}"), "oauth2:client:ghost names no registered client"},
		{"bypass with subject", provider(kuma + "\naccess_control {\n rule {\n domain secure.example.com\n subject oauth2:client:kuma\n policy bypass\n }\n}"), "rule #1 (domain secure.example.com): a bypass rule may not carry subjects"},
		{"unknown network name", provider("access_control {\n rule {\n domain a.example.com\n networks office\n policy one_factor\n }\n}"), `rule #1 (domain a.example.com): networks: "office"`},
		{"bad regex", provider("access_control {\n rule {\n domain a.example.com\n resources \"([\"\n policy one_factor\n }\n}"), "rule #1 (domain a.example.com): resources"},
		{"rule without policy", provider("access_control {\n rule {\n domain a.example.com\n }\n}"), "policy is required"},
		{"global rule without domain", provider("access_control {\n rule {\n policy deny\n }\n}"), "domain or domain_regex is required"},
		{"bad query operator", provider("access_control {\n rule {\n domain a\n query k like v\n policy deny\n }\n}"), "unknown operator"},
		{"bad default policy", provider("access_control {\n default_policy allow\n}"), "default_policy"},
		{"site rule with unknown client", provider(kuma) + "secure.example.com {\n\toidc_auth {\n\t\trule {\n\t\t\tsubject oauth2:client:ghost\n\t\t\tpolicy one_factor\n\t\t}\n\t}\n}\n", "oidc_auth: rule #1: subject: oauth2:client:ghost"},
		{"site unknown strategy", provider("") + "secure.example.com {\n\toidc_auth {\n\t\tstrategies header\n\t}\n}\n", `unknown strategy "header"`},
		{"oidc_auth without oidc app", "{\n\tadmin off\n}\nsecure.example.com {\n\toidc_auth\n}\n", "the global 'oidc' option is missing"},
		{"oidc_provider without oidc app", "{\n\tadmin off\n}\nauth.example.com {\n\toidc_provider\n}\n", "the global 'oidc' option is missing"},
		{"oidc_provider with options", provider("") + "x.example.com {\n\toidc_provider {\n\t\tfoo\n\t}\n}\n", "takes no options"},
		{"oidc twice", strings.Replace(provider(""), "\toidc {", "\toidc {\n\t\tissuer https://a.example.com\n\t}\n\toidc {", 1), "the oidc option is given twice"},
		{"access_control twice", provider("access_control {\n}\naccess_control {\n}"), "access_control is given twice"},
		{"rule domain with a port", provider("access_control {\n rule {\n domain secure.example.com:8443\n policy deny\n }\n}"), `rule #1 (domain secure.example.com:8443): domain: "secure.example.com:8443" has a port`},
		{"rule domain with a trailing dot", provider("access_control {\n rule {\n domain secure.example.com.\n policy deny\n }\n}"), `rule #1 (domain secure.example.com.): domain: "secure.example.com." ends with a dot`},
		{"wildcard domain with a port", provider("access_control {\n rule {\n domain *.example.com:443\n policy deny\n }\n}"), "without a port or a trailing dot"},
		{"bad duration names its option", provider("lifespans {\n id_token soon\n}"), `id_token: "soon" is not a duration`},
		{"negative duration names its option", provider("lifespans {\n refresh_token -1h\n}"), `refresh_token: "-1h" must be positive`},
		{"storage size", provider("storage /tmp/x {\n memtable_size lots\n}"), `memtable_size: "lots" is not a size`},
		{"storage too small", provider("storage /tmp/x {\n block_cache_size 100KB\n}"), "block_cache_size must be at least 1 MiB"},
		{"storage unknown option", provider("storage /tmp/x {\n cache 1MiB\n}"), `storage: unknown option "cache"`},
		{"storage two dirs", provider("storage /tmp/x /tmp/y"), "storage takes one directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := validate(t, c.caddyfile)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
		})
	}
}

func TestValidateSecretFormats(t *testing.T) {
	for _, secret := range []string{
		seedDigest,
		"$plaintext$insecure_secret",
		"insecure_secret",
		"$argon2id$v=19$m=65536,t=3,p=4$BpLnfgDsc2WD8F2q$o/vzA4myCqZZ36bUGsDY//8mKUYNZZaR0t4MFFSs+iM",
		"$2b$12$yNw4V5XQm5a8LVyV5J.o9eq9zLPH3VTyS0QmLv0dAqf2vdjfLK5bu",
	} {
		cf := provider(strings.Replace(kuma, seedDigest, secret, 1))
		if err := validate(t, cf); err != nil {
			t.Errorf("secret %.20q…: %v", secret, err)
		}
	}
}

// FuzzCaddyfile feeds arbitrary text into the oidc option and oidc_auth: adapting and
// provisioning may fail but never panic.
func FuzzCaddyfile(f *testing.F) {
	f.Add("issuer https://auth.example.com\n" + kuma)
	f.Add("access_control {\n rule {\n domain a\n query {\n k pattern ^a\n }\n policy deny\n }\n}")
	f.Add("lifespans {\n custom x {\n access_token 1h\n }\n}")
	f.Add("signing_key a {\n algorithm\n}")
	f.Fuzz(func(t *testing.T, inner string) {
		cf := "{\n\tadmin off\n\toidc {\n" + inner + "\n\t}\n}\nsecure.example.com {\n\toidc_auth {\n" + inner + "\n\t}\n}\n"
		adapter := caddyconfig.GetAdapter("caddyfile")
		js, _, err := adapter.Adapt([]byte(cf), nil)
		if err != nil {
			return
		}
		var cfg caddy.Config
		if err := json.Unmarshal(js, &cfg); err != nil {
			t.Fatalf("adapter produced invalid JSON: %v", err)
		}
		if cfg.AppsRaw != nil {
			if raw, ok := cfg.AppsRaw["oidc"]; ok {
				var app map[string]any
				if err := json.Unmarshal(raw, &app); err != nil {
					t.Fatalf("oidc app JSON: %v", err)
				}
			}
		}
		_ = caddy.Validate(&cfg)
	})
}

// TestExamples checks that the shipped Caddyfiles are formatted as `caddy fmt` wants and pass
// `caddy validate`.
func TestExamples(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Chdir("..") // Caddyfile.example names users.example.yml relative to the repository
	for _, f := range []string{"Caddyfile.example", "examples/uptime-kuma/Caddyfile", "examples/sso/Caddyfile"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if formatted := caddyfile.Format(data); string(formatted) != string(data) {
			t.Errorf("%s is not formatted; run: caddy fmt --overwrite %s", f, f)
		}
		cfg := strings.Replace(string(data), "{\n", "{\n\tadmin off\n", 1)
		cfg = strings.ReplaceAll(cfg, "/etc/caddy/users.yml", "users.example.yml")
		if err := validate(t, cfg); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestAuthenticationProviderJSON loads http.authentication.providers.oidc inside Caddy's stock
// authentication handler, and checks that its rules are validated like oidc_auth's.
func TestAuthenticationProviderJSON(t *testing.T) {
	cfg := func(rules string) string {
		return `{"admin":{"disabled":true},"apps":{
			"oidc":{"issuer":"https://auth.example.com","storage":"` + t.TempDir() + `"},
			"http":{"servers":{"s":{"listen":[":0"],"routes":[{"handle":[
				{"handler":"authentication","providers":{"oidc":{"strategies":["authorization"],"rules":` + rules + `}}}
			]}]}}}}}`
	}
	load := func(js string) error {
		var c caddy.Config
		if err := json.Unmarshal([]byte(js), &c); err != nil {
			return err
		}
		return caddy.Validate(&c)
	}
	if err := load(cfg(`[{"resources":["^/api/"],"policy":"one_factor"}]`)); err != nil {
		t.Fatalf("valid provider config: %v", err)
	}
	if err := load(cfg(`[{"networks":["office"],"policy":"one_factor"}]`)); err == nil || !strings.Contains(err.Error(), `networks: "office"`) {
		t.Fatalf("bad rule: %v", err)
	}
	if err := load(cfg(`[{"policy":"one_factor","colour":"blue"}]`)); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown JSON field: %v", err)
	}
}
