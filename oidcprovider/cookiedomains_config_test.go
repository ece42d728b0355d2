package oidcprovider_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testUsers(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users.yml")
	if err := os.WriteFile(p, []byte("users:\n  john:\n    password: \"$argon2id$v=19$m=65536,t=3,p=4$ZfApOXlumEkguxVuCeSuVA$2uw6ebDvdxh0mR3mKzllnyWrWuGLLrT5pCOdOySbvsI\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "users_file " + p + "\n"
}

// The two Caddyfile forms of several cookie domains adapt to cookie_domain (a string, as before)
// and a cookies list, and pass validation; a single domain is unchanged JSON.
func TestCookieDomainsAdapt(t *testing.T) {
	users := testUsers(t)
	for _, c := range []struct{ session, want string }{
		{"cookie_domain example.com", `{"cookie_domain":"example.com"}`},
		{"cookie_domain example.com example.org example.net", `{"cookie_domain":"example.com","cookies":[{"domain":"example.org"},{"domain":"example.net"}]}`},
		{"name s\n cookie_domain example.com\n cookie example.org {\n  name org_session\n  same_site strict\n  expiration 2h\n  inactivity 10m\n  remember_me -1\n  default_redirection_url https://www.example.org/\n }",
			`{"name":"s","cookie_domain":"example.com","cookies":[{"domain":"example.org","name":"org_session","same_site":"strict","expiration":7200000000000,"inactivity":600000000000,"remember_me":-1,"default_redirection_url":"https://www.example.org/"}]}`},
		// Authelia's form: every domain a cookie block, the issuer's among them
		{"cookie example.org {\n  name a\n }\n cookie example.com {\n  name b\n }",
			`{"cookies":[{"domain":"example.org","name":"a"},{"domain":"example.com","name":"b"}]}`},
	} {
		cf := provider(users + "session {\n " + c.session + "\n}")
		if got := adaptOption(t, cf, "session"); got != c.want {
			t.Errorf("%q adapts to\n%s\nwant\n%s", c.session, got, c.want)
		}
		if err := validate(t, cf); err != nil {
			t.Errorf("%q is refused: %v", c.session, err)
		}
	}
}

// Config mistakes name the key and the fix.
func TestCookieDomainsErrors(t *testing.T) {
	users := testUsers(t)
	for _, c := range []struct{ name, session, want string }{
		{"nested", "cookie_domain example.com example.org a.example.org", `the cookie domains example.org and a.example.org are nested`},
		{"nested in the issuer's", "cookie_domain example.com b.example.com", `the cookie domains example.com and b.example.com are nested`},
		{"twice", "cookie_domain example.com example.org\n cookie example.org {\n name x\n }", `the domain example.org is listed twice`},
		{"issuer's twice", "cookie_domain example.com example.com", `listed twice`},
		{"single label", "cookie_domain example.com org", `session: cookie "org": "org" must be a domain such as example.com`},
		{"public suffix", "cookie_domain example.com co.uk", `"co.uk" is a public suffix`},
		{"public suffix, private", "cookie_domain example.com github.io", `"github.io" is a public suffix`},
		{"issuer's public suffix", "cookie_domain com.au", `is a public suffix`},
		{"wildcard", "cookie_domain example.com *.example.org", `must be a domain such as example.com`},
		{"port", "cookie_domain example.com example.org:443", `must be a domain such as example.com`},
		{"no issuer's domain", "cookie example.org {\n name x\n }", `none of the cookie domains covers the issuer's host "auth.example.com"`},
		{"bad name", "cookie_domain example.com\n cookie example.org {\n name a;b\n }", `session: cookie "example.org": name "a;b"`},
		// a browser refuses a __Host- cookie that names a Domain: the hand-off would loop
		{"__Host- name of a further domain", "cookie_domain example.com\n cookie example.org {\n name __Host-org\n }", `session: cookie "example.org": name "__Host-org": a __Host- cookie cannot have a Domain`},
		{"__host- name, any case", "cookie_domain example.com\n cookie example.org {\n name __host-org\n }", `name "__host-org": a __Host- cookie cannot have a Domain`},
		{"__Host- name of the issuer's domain", "name __Host-s\n cookie_domain example.com example.org", `session: name "__Host-s": a __Host- cookie cannot have a Domain`},
		{"bad same_site", "cookie_domain example.com\n cookie example.org {\n same_site none\n }", `same_site "none": use lax or strict`},
		{"default URL elsewhere", "cookie_domain example.com\n cookie example.org {\n default_redirection_url https://evil.example/\n }", `default_redirection_url "https://evil.example/" must be an absolute https URL on a host under example.org`},
		{"unknown cookie option", "cookie_domain example.com\n cookie example.org {\n domain x\n }", `session: cookie example.org: unknown option "domain"`},
		{"cookie without domain", "cookie {\n name x\n }", `cookie needs a domain`},
		{"cookie_domain twice", "cookie_domain example.com\n cookie_domain example.org", `cookie_domain is given twice`},
		{"bad remember_me", "cookie_domain example.com\n cookie example.org {\n remember_me soon\n }", `session: cookie example.org: remember_me: "soon"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := validate(t, provider(users+"session {\n "+c.session+"\n}"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
		})
	}
}
