package oidcprovider_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// idp is an identity_provider block of type oidc with the least configuration, plus more.
func idp(name, more string) string {
	return "identity_provider " + name + " {\n type oidc\n issuer https://idp.example.com\n client_id down\n client_secret s3cret\n" + more + "\n}\n"
}

// Every mistake in an identity_provider block fails caddy validate with the key and the fix.
func TestValidateIdentityProviders(t *testing.T) {
	dir := t.TempDir()
	usersPath := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(usersPath, []byte("users:\n  john:\n    password: \"$argon2id$v=19$m=65536,t=3,p=4$ZfApOXlumEkguxVuCeSuVA$2uw6ebDvdxh0mR3mKzllnyWrWuGLLrT5pCOdOySbvsI\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users := "users_file " + usersPath + "\n"
	ldap := "ldap {\n implementation lldap\n address ldap://127.0.0.1:389\n base_dn dc=example,dc=com\n user cn=admin,dc=example,dc=com\n password secret\n}\n"
	t.Setenv("FED_TEST_SECRET", "from-env")
	for _, tc := range []struct{ name, inner, want string }{
		{"no people", idp("g", ""), "identity_provider: needs people to sign in as"},
		{"bad name", users + idp("Google", ""), `identity_provider "Google": the name must be`},
		{"no name", users + "identity_provider {\n type oidc\n}", "identity_provider needs a name"},
		{"two names", users + "identity_provider a b {\n type oidc\n}", "one name only"},
		{"unknown option", users + idp("g", "secret_file x"), `identity_provider g: unknown option "secret_file"`},
		{"no type", users + "identity_provider g {\n client_id a\n client_secret b\n}", "identity_provider g: type is required: oidc or github"},
		{"bad type", users + strings.Replace(idp("g", ""), "type oidc", "type saml", 1), `type "saml": use oidc or github`},
		{"no issuer", users + "identity_provider g {\n type oidc\n client_id a\n client_secret b\n}", "issuer is required for type oidc"},
		{"http issuer", users + strings.Replace(idp("g", ""), "https://idp.example.com", "http://idp.example.com", 1), "must use https"},
		{"github issuer", users + "identity_provider gh {\n type github\n issuer https://github.com\n client_id a\n client_secret b\n}", "issuer is for type oidc; remove it"},
		{"github two factors", users + "identity_provider gh {\n type github\n client_id a\n client_secret b\n two_factor_satisfied\n}", "two_factor_satisfied: GitHub does not tell"},
		{"no client_id", users + "identity_provider g {\n type oidc\n issuer https://idp.example.com\n client_secret b\n}", "client_id is required"},
		{"no client_secret", users + "identity_provider g {\n type oidc\n issuer https://idp.example.com\n client_id a\n}", "client_secret is required"},
		{"empty secret", users + "identity_provider g {\n type oidc\n issuer https://idp.example.com\n client_id a\n client_secret {env.FED_TEST_UNSET}\n}", "identity_provider g: client_secret: evaluated placeholder {env.FED_TEST_UNSET} is empty"},
		{"bad link", users + idp("g", "link auto"), `link "auto": use by_email_verified, by_username or manual`},
		{"scopes without openid", users + idp("g", "scopes email"), "scopes must include openid"},
		{"bad domain", users + idp("g", "allowed_domains *.example.com"), `allowed_domains: "*.example.com" is not a domain`},
		{"twice", users + idp("g", "") + idp("g", ""), "identity_provider g is defined twice"},
		{"bool", users + idp("g", "create_users yes"), `create_users takes true or false, not "yes"`},
		{"create_users with ldap", ldap + idp("g", "create_users"), "create_users writes to the users file, but people come from LDAP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(t, provider(tc.inner))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	for _, ok := range []string{
		users + idp("google", "display_name Google\nclient_secret {env.FED_TEST_SECRET}\nlink by_username\nallowed_domains example.com\ntwo_factor_satisfied\ncreate_users"),
		users + "identity_provider github {\n type github\n client_id a\n client_secret b\n link manual\n}\n" + strings.Replace(idp("local", ""), "https://idp.example.com", "http://127.0.0.1:9999", 1),
		ldap + idp("corp", "link by_username"),
	} {
		if err := validate(t, provider(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
