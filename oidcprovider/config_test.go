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
	"github.com/portcullis-auth/portcullis/oidcprovider"
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

// app is a client that signs people in, with the least configuration.
const app = `client app {
	secret "` + seedDigest + `"
	redirect_uris https://app.example.com/cb
}`

// TestValidateClientOptions provisions the adapt fixture with every client and provider option
// of the authorization code flow, with real keys.
func TestValidateClientOptions(t *testing.T) {
	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	data, err := os.ReadFile("testdata/adapt/client_options.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	cf := strings.SplitN(string(data), "----------", 2)[0]
	cf = strings.Replace(cf, "/etc/caddy/oidc/rs256.pem", writeKey(t, dir, "rs256.pem", rsaKey), 1)
	cf = strings.Replace(cf, "/etc/caddy/oidc/es256.pem", writeKey(t, dir, "es256.pem", ec), 1)
	cf = strings.Replace(cf, "/tmp/portcullis", filepath.Join(dir, "store"), 1)
	cf = strings.Replace(cf, "{\n", "{\n\tadmin off\n", 1)
	if err := validate(t, cf); err != nil {
		t.Fatal(err)
	}
}

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
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaFile := writeKey(t, dir, "rsa.pem", rsaKey)
	rsaKey2, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaFile2 := writeKey(t, dir, "rsa2.pem", rsaKey2)
	cases := []struct {
		name, caddyfile, want string
	}{
		{"no issuer", "{\n\tadmin off\n\toidc {\n\t\tstorage /tmp/x\n\t}\n}\n", "issuer is required"},
		{"http issuer", strings.Replace(provider(""), "https://auth.example.com", "http://auth.example.com", 1), "must use https"},
		{"issuer with query", strings.Replace(provider(""), "https://auth.example.com", "https://auth.example.com/?x=1", 1), "may not carry a query"},
		{"unknown option", provider("bogus 1"), `unknown option "bogus"`},
		{"session without users", provider("session {\n expiration 1h\n}"), "session: needs people who sign in"},
		{"totp without users", provider("totp {\n digits 8\n}"), "totp: needs people who sign in"},
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
		{"users file and ldap", provider(users + "ldap {\n address ldap://127.0.0.1:1\n base_dn dc=example,dc=com\n user cn=admin,dc=example,dc=com\n password secret\n}"), "users_file and ldap are both given"},
		{"ldap without address", provider("ldap {\n base_dn dc=example,dc=com\n user cn=admin,dc=example,dc=com\n password secret\n}"), "ldap: address"},
		{"ldap twice", provider("ldap {\n}\nldap {\n}"), "ldap is given twice"},
		{"notifier without people", provider("notifier {\n filesystem " + dir + "/n.txt\n}"), "notifier: needs people who sign in"},
		{"notifier twice", provider(users + "notifier {\n filesystem " + dir + "/n.txt\n}\nnotifier {\n filesystem " + dir + "/m.txt\n}"), "notifier is given twice"},
		{"notifier in a missing directory", provider(users + "notifier {\n filesystem " + dir + "/none/n.txt\n}"), "does not exist"},
		{"plain smtp", provider(users + "notifier {\n smtp {\n address smtp://mail.example.com:25\n sender auth@example.com\n }\n}"), "disable_require_tls"},
		{"ldap password placeholder unset", provider("ldap {\n address ldap://127.0.0.1:1\n base_dn dc=example,dc=com\n user cn=admin,dc=example,dc=com\n password {env.PORTCULLIS_TEST_UNSET_LDAP_PASSWORD}\n}"), "ldap: password"},
		{"missing users file", provider("users_file /nonexistent/users.yml"), `users_file: reading users file /nonexistent/users.yml`},
		{"regulation option", provider("regulation {\n max_tries 3\n}"), `regulation: unknown option "max_tries"`},
		{"regulation count", provider("regulation {\n max_retries many\n}"), `max_retries: "many" is not a number`},
		{"regulation negative", provider("regulation {\n max_retries -1\n}"), `max_retries must be 0 (off) or more`},
		{"short hmac secret", provider("hmac_secret short"), "hmac_secret must be at least 32 bytes"},
		{"missing key file", provider("signing_key {\n algorithm RS256\n key_file " + dir + "/none.pem\n}"), "key_file"},
		{"small RSA key", provider("signing_key {\n key_file " + smallFile + "\n}"), "use at least 2048"},
		{"EC key with RSA alg", provider("signing_key {\n algorithm RS256\n key_file " + ecFile + "\n}"), "does not fit this EC key"},
		{"no RS256 key", provider("signing_key {\n key_file " + ecFile + "\n}"), "at least one RS256 key that is not retired is required"},
		{"signing_key without key_file", provider("signing_key {\n algorithm RS256\n}"), "key_file is required"},
		{"only RS256 key retired", provider("signing_key old {\n key_file " + rsaFile + "\n retired\n}\nsigning_key ec {\n key_file " + ecFile + "\n}"), "at least one RS256 key that is not retired is required"},
		{"retired with an argument", provider("signing_key old {\n key_file " + rsaFile + "\n retired yes\n}"), "retired takes no argument"},
		{"client naming a retired key", provider("signing_key new {\n key_file " + ecFile + "\n algorithm ES256\n}\nsigning_key main {\n key_file " + rsaFile + "\n retired\n}\nsigning_key rs {\n key_file " + rsaFile2 + "\n}\n" + strings.Replace(app, "}", "id_token_signed_response_key_id main\n}", 1)), `client app: id_token_signed_response_key_id: no signing_key has key_id "main"`},
		{"bad duration", provider("lifespans {\n access_token soon\n}"), "not a duration"},
		{"bad enforce_pkce", provider("enforce_pkce sometimes"), "enforce_pkce"},
		{"unknown custom lifespan", provider(strings.Replace(kuma, "grant_types", "lifespan fast\n\tgrant_types", 1)), `no custom lifespan named "fast"`},
		{"bad client id", provider(strings.Replace(kuma, "client kuma", "client \"ku ma\"", 1)), "client_id must be"},
		{"duplicate client", provider(kuma + "\n" + kuma), "registered twice"},
		{"pending client option", provider(strings.Replace(kuma, "grant_types", "request_uris https://x/req\n\tgrant_types", 1)), `option "request_uris" is not available yet`},
		{"public_key without a key", provider(strings.Replace(app, "}", "public_key k1 {\n algorithm ES256\n}\n}", 1)), `client app: public_key k1: give exactly one of key_file`},
		{"pending provider option", provider("scopes {\n}"), `option "scopes" is not available yet`},
		{"redirect URIs on a client_credentials client", provider(strings.Replace(kuma, "grant_types", "redirect_uris https://x/cb\n\tgrant_types", 1)), "client kuma: redirect_uris: only a client that signs people in"},
		{"code flow client", provider(app), ""},
		{"redirect URI with a fragment", provider(strings.Replace(app, "/cb", "/cb#top", 1)), `client app: redirect_uris: "https://app.example.com/cb#top" may not carry a fragment`},
		{"redirect URI without a scheme", provider(strings.Replace(app, "https://app.example.com/cb", "app.example.com/cb", 1)), `redirect_uris: "app.example.com/cb" is not an absolute URI`},
		{"response type needs implicit", provider(strings.Replace(app, "}", "grant_types authorization_code\nresponse_types \"code id_token\"\n}", 1)), `client app: response_types: "code id_token" is a hybrid type and needs both the authorization_code and implicit grants`},
		{"query with tokens", provider(strings.Replace(app, "}", "response_types id_token\nresponse_modes query\n}", 1)), "client app: response_modes: query cannot carry the tokens"},
		{"offline_access without refresh", provider(strings.Replace(app, "}", "scopes openid offline_access\n}", 1)), "client app: scopes: offline_access asks for refresh tokens, which need the refresh_token grant"},
		{"device code", provider(strings.Replace(app, "}", "grant_types urn:ietf:params:oauth:grant-type:device_code\n}", 1)), "client app: redirect_uris: only a client that signs people in"},
		{"unknown client policy", provider(strings.Replace(app, "}", "authorization_policy admins\n}", 1)), `client app: authorization_policy: no authorization policy named "admins"; use one_factor, two_factor, or define it in the oidc block`},
		{"unknown claims policy", provider(strings.Replace(app, "}", "claims_policy rich\n}", 1)), `client app: claims_policy: no claims policy named "rich"`},
		{"bad consent mode", provider(strings.Replace(app, "}", "consent_mode always\n}", 1)), `client app: consent_mode: "always" must be auto, explicit, implicit or pre-configured`},
		{"bad consent duration", provider(strings.Replace(app, "}", "pre_configured_consent_duration soon\n}", 1)), `client app: pre_configured_consent_duration: "soon" is not a positive duration`},
		{"duration with explicit consent", provider(strings.Replace(app, "}", "consent_mode explicit\npre_configured_consent_duration 1w\n}", 1)), "client app: pre_configured_consent_duration: only applies to consent_mode pre-configured"},
		{"bad client bool", provider(strings.Replace(app, "}", "require_pkce sometimes\n}", 1)), `require_pkce takes true or false, not "sometimes"`},
		{"plain pkce", provider(strings.Replace(app, "}", "pkce_challenge_method plain\n}", 1)), "client app: pkce_challenge_method: plain sends the verifier in the clear and needs the provider option enable_pkce_plain_challenge"},
		{"plain pkce enabled", provider("enable_pkce_plain_challenge\n" + strings.Replace(app, "}", "pkce_challenge_method plain\n}", 1)), ""},
		{"ID token algorithm without a key", provider(strings.Replace(app, "}", "id_token_signed_response_alg ES256\n}", 1)), "client app: id_token_signed_response_alg: no signing key serves ES256 (keys serve: RS256)"},
		{"ID token key of the generated key", provider(strings.Replace(app, "}", "id_token_signed_response_key_id main\n}", 1)), `client app: id_token_signed_response_key_id: no signing_key has key_id "main"`},
		{"userinfo key of another algorithm", provider("signing_key main {\n key_file " + rsaFile + "\n}\nsigning_key ec {\n key_file " + ecFile + "\n}\n" + strings.Replace(app, "}", "userinfo_signed_response_alg ES256\nuserinfo_signed_response_key_id main\n}", 1)), `client app: userinfo_signed_response_alg: ES256 does not match the RS256 key "main"`},
		{"userinfo key", provider("signing_key main {\n key_file " + rsaFile + "\n}\nsigning_key ec {\n key_file " + ecFile + "\n}\n" + strings.Replace(app, "}", "userinfo_signed_response_key_id ec\nid_token_signed_response_alg ES256\n}", 1)), ""},
		{"resource server for an unknown client", provider(strings.Replace(kuma, "grant_types", "resource_server_for ghost\n\tgrant_types", 1)), `client kuma: resource_server_for: no client "ghost" is registered`},
		{"resource server for a client", provider(app + "\n" + strings.Replace(kuma, "grant_types", "resource_server_for app\n\tgrant_types", 1)), ""},
		{"sector over http", provider(strings.Replace(app, "}", "sector_identifier_uri http://app.example.com/s.json\n}", 1)), "client app: sector_identifier_uri: \"http://app.example.com/s.json\" must be an absolute https URL"},
		{"policies block", provider("authorization_policies {\n}"), "authorization_policies: write one 'authorization_policy <name> { … }' block per policy"},
		{"claims policies block", provider("claims_policies {\n}"), "claims_policies: write one 'claims_policy <name> { … }' block per policy"},
		{"policy without a name", provider("authorization_policy {\n}"), "authorization_policy needs a name"},
		{"policy twice", provider("authorization_policy a {\n rule {\n networks 10.0.0.0/8\n }\n}\nauthorization_policy a {\n}"), "authorization_policy a is defined twice"},
		{"policy option", provider("authorization_policy a {\n default deny\n}"), `authorization_policy a: unknown option "default" (default_policy, rule)`},
		{"policy criterion", provider("authorization_policy a {\n rule {\n domain a.example.com\n }\n}"), `authorization_policy a: rule: unknown criterion "domain" (subject, networks, policy)`},
		{"policy rule without criteria", provider("authorization_policy a {\n rule {\n policy deny\n }\n}"), "authorization_policy a: rule #1: a rule needs a subject or networks"},
		{"policy without rules", provider("authorization_policy a {\n default_policy deny\n}"), "authorization_policy a: no rules"},
		{"policy default bypass", provider("authorization_policy a {\n default_policy bypass\n rule {\n subject user:x\n }\n}"), `authorization_policy a: default_policy: "bypass" must be one_factor, two_factor or deny`},
		{"reserved policy name", provider("authorization_policy two_factor {\n rule {\n subject user:x\n }\n}"), "authorization_policy two_factor: two_factor is a built-in policy name"},
		{"policy with an unknown network", provider("authorization_policy a {\n rule {\n networks office\n }\n}"), `authorization_policy a: rule #1: networks: "office" is not an IP address, a CIDR or a defined network name`},
		{"policy with a named network", provider("authorization_policy a {\n rule {\n networks office\n policy one_factor\n }\n}\naccess_control {\n network office 10.0.0.0/8\n}\n" + strings.Replace(app, "}", "authorization_policy a\n}", 1)), ""},
		{"policy with a client subject", provider("authorization_policy a {\n rule {\n subject oauth2:client:app\n }\n}"), "an authorization policy decides about people signing in"},
		{"claims policy with a protocol claim", provider("claims_policy p {\n id_token sub email\n}"), "claims_policy p: id_token: sub is always in the ID token"},
		{"claims policy with an unknown claim", provider("claims_policy p {\n id_token colour\n}"), `claims_policy p: id_token: unknown claim "colour"`},
		{"claims policy argument", provider("claims_policy p email"), `claims_policy p: unexpected argument "email"`},
		{"claims policy option", provider("claims_policy p {\n userinfo email\n}"), `claims_policy p: unknown option "userinfo" (id_token)`},
		{"entropy word", provider("minimum_parameter_entropy high"), `minimum_parameter_entropy: "high" is not a number`},
		{"entropy below -1", provider("minimum_parameter_entropy -2"), "minimum_parameter_entropy -2: use a length of at least 8, or -1"},
		{"provider bool", provider("require_pushed_authorization_requests maybe"), `require_pushed_authorization_requests takes true or false, not "maybe"`},
		{"unknown client option", provider(strings.Replace(kuma, "grant_types", "colour blue\n\tgrant_types", 1)), `unknown option "colour"`},
		{"default grant needs a redirect URI", provider(strings.Replace(kuma, "grant_types client_credentials", "", 1)), "client kuma: redirect_uris: a client with the authorization_code grant (grant_types' default) needs at least one redirect URI"},
		{"public client_credentials", provider("client pub {\n public\n scopes x\n grant_types client_credentials\n}"), "needs a confidential client"},
		{"public with secret", provider("client pub {\n public\n secret abc\n grant_types client_credentials\n}"), "a public client has no secret"},
		{"no secret", provider(strings.Replace(kuma, `secret "`+seedDigest+`"`, "", 1)), "needs a secret"},
		{"bad digest", provider(strings.Replace(kuma, seedDigest, "$pbkdf2-sha512$x$y", 1)), "not a digest"},
		{"openid on client_credentials", provider(strings.Replace(kuma, "scopes authelia.bearer.authz", "scopes openid", 1)), `"openid" is not allowed`},
		{"bearer scope with others", provider(strings.Replace(kuma, "scopes authelia.bearer.authz", "scopes authelia.bearer.authz profile", 1)), `may only add offline`},
		{"bearer scope without audience", provider(strings.Replace(kuma, "audience https://secure.example.com/", "", 1)), "needs at least one audience"},
		{"bearer audience not a URL", provider(strings.Replace(kuma, "https://secure.example.com/", "secure.example.com", 1)), "absolute http(s) URL"},
		{"bearer with client_secret_post", provider(strings.Replace(kuma, "grant_types", "token_endpoint_auth_method client_secret_post\n\tgrant_types", 1)), "must use client_secret_basic"},
		{"jwt auth method without keys", provider(strings.Replace(kuma, "grant_types", "token_endpoint_auth_method private_key_jwt\n\tgrant_types", 1)), "client kuma: token_endpoint_auth_method: private_key_jwt needs the client's public keys"},
		{"bad audience mode", provider(strings.Replace(kuma, "grant_types", "requested_audience_mode sometimes\n\tgrant_types", 1)), "requested_audience_mode"},
		{"unregistered client subject", provider(kuma + "\naccess_control {\n rule {\n domain secure.example.com\n subject oauth2:client:ghost\n policy one_factor\n }\n}"), "oauth2:client:ghost names no registered client"},
		{"client subject without client_credentials", provider(app + "\naccess_control {\n rule {\n domain secure.example.com\n subject oauth2:client:app\n policy one_factor\n }\n}"), "access_control: rule #1 (domain secure.example.com): subject: oauth2:client:app matches only client_credentials tokens, and client app has no client_credentials grant"},
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
		{"negative device code lifespan", provider("lifespans {\n device_code -1m\n}"), `device_code: "-1m" must be positive`},
		{"device client with a custom device code lifespan", provider(users + "lifespans {\n device_code 5m\n custom tv {\n device_code 30s\n }\n}\nclient tv {\n public true\n grant_types urn:ietf:params:oauth:grant-type:device_code refresh_token\n scopes openid offline_access\n lifespan tv\n}"), ""},
		{"storage size", provider("storage /tmp/x {\n memtable_size lots\n}"), `memtable_size: "lots" is not a size`},
		{"storage too small", provider("storage /tmp/x {\n block_cache_size 100KB\n}"), "block_cache_size must be at least 1 MiB"},
		{"storage unknown option", provider("storage /tmp/x {\n cache 1MiB\n}"), `storage: unknown option "cache"`},
		{"storage two dirs", provider("storage /tmp/x /tmp/y"), "storage takes one directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := validate(t, c.caddyfile)
			if c.want == "" {
				if err != nil {
					t.Fatalf("a valid config is refused: %v", err)
				}
				return
			}
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
	f.Add("authorization_policy p {\n default_policy deny\n rule {\n subject group:a user:b\n networks 10.0.0.0/8\n policy one_factor\n }\n}\nclaims_policy c {\n id_token email\n}")
	f.Add("client a {\n secret s\n redirect_uris https://a/cb\n response_types \"code id_token\"\n pre_configured_consent_duration 1w\n authorization_policy p\n require_pkce\n}")
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
	for _, f := range []string{"Caddyfile.example", "examples/uptime-kuma/Caddyfile", "examples/sso/Caddyfile", "examples/oidc-app/Caddyfile", "examples/grafana/Caddyfile"} {
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

// withStorage is provider() with the given storage option instead of a Badger directory.
func withStorage(storage, inner string) string {
	return "{\n\tadmin off\n\toidc {\n\t\tissuer https://auth.example.com\n\t\t" + storage + "\n" + inner + "\n\t}\n}\nauth.example.com {\n\toidc_provider\n}\n"
}

// adaptStorage adapts a Caddyfile and returns the oidc app's "storage" JSON.
func adaptStorage(t *testing.T, caddyfile string) string {
	t.Helper()
	return adaptOption(t, caddyfile, "storage")
}

// adaptOption adapts a Caddyfile and returns the JSON of the oidc app's option key.
func adaptOption(t *testing.T, caddyfile, key string) string {
	t.Helper()
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	var cfg struct {
		Apps struct {
			OIDC map[string]json.RawMessage `json:"oidc"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	return string(cfg.Apps.OIDC[key])
}

// TestStorageForms checks the Caddyfile forms of the storage option: a Badger directory with or
// without the word badger, a directory that is literally named postgres, and PostgreSQL by keys
// or by DSN; and that a PostgreSQL config passes `caddy validate` with no database to reach.
func TestStorageForms(t *testing.T) {
	for _, c := range []struct{ storage, want string }{
		{"storage /var/lib/p", `"/var/lib/p"`},
		{"storage badger /var/lib/p", `"/var/lib/p"`},
		{"storage ./postgres", `"./postgres"`},
		{"storage badger postgres", `"postgres"`},
		{"storage badger {\n memtable_size 1MiB\n}", `{"memtable_size":1048576}`},
		{"storage postgres {\n dsn \"postgres://p@db.example.com/portcullis?sslmode=verify-full\"\n}", `{"postgres":{"dsn":"postgres://p@db.example.com/portcullis?sslmode=verify-full"}}`},
		{"storage postgres {\n address unix:///run/postgresql\n database portcullis\n}", `{"postgres":{"address":"unix:///run/postgresql","database":"portcullis"}}`},
	} {
		if got := adaptStorage(t, withStorage(c.storage, "")); got != c.want {
			t.Errorf("%q adapts to %s, want %s", c.storage, got, c.want)
		}
	}

	// nothing listens on port 1: validate must not try
	t.Setenv("PORTCULLIS_TEST_DB_PASSWORD", "not-used")
	for _, storage := range []string{
		"storage postgres {\n address tcp://127.0.0.1:1\n database portcullis\n username portcullis\n password {env.PORTCULLIS_TEST_DB_PASSWORD}\n timeout 2s\n max_connections 4\n tls {\n server_name db.example.com\n minimum_version TLS1.3\n }\n}",
		"storage postgres {\n dsn postgres://portcullis@127.0.0.1:1/portcullis\n}",
	} {
		if err := validate(t, withStorage(storage, "")); err != nil {
			t.Errorf("%q: validate: %v", storage, err)
		}
	}
}

// TestStorageErrors checks that every mistake in the storage option fails adapt or validate
// with a message naming the key and the fix.
func TestStorageErrors(t *testing.T) {
	for _, c := range []struct{ name, storage, want string }{
		{"unknown postgres option", "storage postgres {\n host db.example.com\n}", `storage postgres: unknown option "host" (dsn, address, database`},
		{"unknown tls option", "storage postgres {\n address tcp://db:5432\n database p\n tls {\n verify off\n }\n}", `storage postgres: tls: unknown option "verify" (server_name, skip_verify`},
		{"max_connections zero", "storage postgres {\n max_connections 0\n}", `storage postgres: max_connections: "0" must be a whole number of at least 1`},
		{"max_connections word", "storage postgres {\n max_connections many\n}", `max_connections: "many" must be a whole number`},
		{"timeout", "storage postgres {\n timeout soon\n}", `timeout: "soon" is not a duration`},
		{"badger setting under postgres", "storage postgres {\n memtable_size 1MiB\n}", "storage postgres: memtable_size is a setting of the embedded Badger store"},
		{"postgres key under a directory", "storage /var/lib/p {\n address tcp://db:5432\n}", "storage: address is a PostgreSQL option; write 'storage postgres { address"},
		{"argument after postgres", "storage postgres /var/lib/p", "storage postgres takes no argument, got \"/var/lib/p\"; its settings go in its block"},
		{"skip_verify value", "storage postgres {\n tls {\n skip_verify maybe\n }\n}", `skip_verify takes true or false, not "maybe"`},
		{"directory and postgres", "storage /var/lib/p\n storage postgres {\n dsn postgres://db/p\n }", `storage: "postgres" and "dir" cannot be given together`},
		{"unknown placeholder", "storage postgres {\n address tcp://db:5432\n database p\n password {vault.db}\n}", "storage postgres: password:"},
		{"no database", "storage postgres {\n address tcp://db.example.com:5432\n}", "storage postgres: database is required"},
		{"no address", "storage postgres {\n database portcullis\n}", "storage postgres: address is required"},
		{"bad address", "storage postgres {\n address db.example.com:5432\n database p\n}", "storage postgres: address \"db.example.com:5432\" must be tcp://host[:port] or unix:///dir"},
		{"dsn and keys", "storage postgres {\n dsn postgres://db/p\n username p\n}", "storage postgres: dsn and username are exclusive"},
		{"bad tls version", "storage postgres {\n address tcp://db:5432\n database p\n tls {\n minimum_version TLS1.0\n }\n}", "storage postgres: tls minimum_version \"TLS1.0\" must be TLS1.2 or TLS1.3"},
		{"unset address variable", "storage postgres {\n address {env.PORTCULLIS_TEST_UNSET_ADDRESS}\n database p\n}", "storage postgres: address:"},
		{"unquoted dsn with a password", "storage postgres {\n dsn host=db password=S3cret-dsn-pw\n}", `dsn takes one value, got more (not shown: it may be secret); quote a value with spaces: dsn "…"`},
		{"password in two words", "storage postgres {\n address tcp://db:5432\n database p\n password S3cret two\n}", "password takes one value, got more (not shown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := validate(t, withStorage(c.storage, ""))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "S3cret") {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

// TestStorageJSON checks the JSON forms of StorageConfig, and that "postgres" beside a Badger
// key is refused naming both.
func TestStorageJSON(t *testing.T) {
	load := func(storage string) error {
		var c caddy.Config
		js := `{"admin":{"disabled":true},"apps":{"oidc":{"issuer":"https://auth.example.com","storage":` + storage + `}}}`
		if err := json.Unmarshal([]byte(js), &c); err != nil {
			return err
		}
		return caddy.Validate(&c)
	}
	dir := t.TempDir()
	for _, ok := range []string{
		`"` + dir + `"`,
		`{"dir":"` + dir + `","memtable_size":1048576}`,
		`{"postgres":{"address":"tcp://127.0.0.1:1","database":"portcullis","timeout":"5s"}}`,
	} {
		if err := load(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, c := range []struct{ storage, want string }{
		{`{"dir":"` + dir + `","postgres":{"dsn":"postgres://db/p"}}`, `storage: "postgres" and "dir" cannot be given together`},
		{`{"gc_interval":"1m","postgres":{"dsn":"postgres://db/p"}}`, `"postgres" and "gc_interval" cannot be given together`},
		{`{"postgres":{"adress":"tcp://db:5432"}}`, `unknown field "adress"`},
		{`{"postgres":{"tls":{"verify":true}}}`, `unknown field "verify"`},
	} {
		if err := load(c.storage); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.storage, err, c.want)
		}
	}

	// the forms survive a round trip through MarshalJSON
	for _, js := range []string{`"/var/lib/p"`, `{"dir":"/var/lib/p","num_memtables":3}`, `{"postgres":{"address":"tcp://db:5432","database":"p"}}`} {
		var s oidcprovider.StorageConfig
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		out, err := json.Marshal(s)
		if err != nil || string(out) != js {
			t.Errorf("%s marshals back to %s (%v)", js, out, err)
		}
	}
}
