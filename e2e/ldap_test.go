package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/internal/ldaptest"
)

const ldapServicePassword = "e2e-service-password-Kq3"

// ldapPeople is the e2e directory: John (spelt so) in admins and dev, ann in dev, and a disabled
// account the users_filter excludes.
var ldapPeople = ldaptest.Skeleton(ldapServicePassword) + `dn: uid=John,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: John
cn: John Doe
sn: Doe
displayName: John Doe
mail: john@example.test
userPassword: john-ldap-pw

dn: uid=ann,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: ann
cn: Ann
sn: Example
mail: ann@example.test
userPassword: ann-ldap-pw

dn: uid=dis,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: dis
cn: Dis
sn: Abled
employeeType: disabled
userPassword: dis-ldap-pw

dn: cn=admins,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: admins
member: uid=John,ou=people,dc=example,dc=com

dn: cn=dev,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: dev
member: uid=John,ou=people,dc=example,dc=com
member: uid=ann,ou=people,dc=example,dc=com
`

// ldapCacheTTL is the test's cache_ttl: the bound within which a change in the directory is seen.
const ldapCacheTTL = time.Second

// startLDAPSite runs a directory and a Caddy whose people come from it: the portal, a site any
// signed-in person reaches, and one for the dev group.
func startLDAPSite(t *testing.T) (*portalSite, *ldaptest.Server) { return startLDAPSiteWith(t, "") }

// startLDAPSiteWith is startLDAPSite with more options (a notifier, say) in the oidc block.
func startLDAPSiteWith(t *testing.T, more string) (*portalSite, *ldaptest.Server) {
	dir := ldaptest.Start(t, ldapPeople)
	tmp := t.TempDir()
	p := &portalSite{t: t, port: freePort(t), up: newRecorder(t)}
	adminPort, httpPort := freePort(t), freePort(t)
	cf := fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	https_port %[3]d
	local_certs
	skip_install_trust
	oidc {
		issuer https://auth.example.test:%[3]d
		storage %[4]s
		ldap {
			address %[6]s
			timeout 2s
			base_dn dc=example,dc=com
			additional_users_dn ou=people
			users_filter "(&(|({username_attribute}={input})({mail_attribute}={input}))(objectClass=person)(!(employeeType=disabled)))"
			additional_groups_dn ou=groups
			groups_filter "(&(member={dn})(objectClass=groupOfNames))"
			user %[7]s
			password {env.PORTCULLIS_E2E_LDAP_PASSWORD}
			attributes {
				username uid
			}
			pooling {
				timeout 3s
			}
			cache_ttl %[8]s
		}
		regulation {
			max_retries 3
			find_time 2m
			ban_time 5m
		}
		session {
			cookie_domain example.test
			expiration 1h
			inactivity 5m
		}
		access_control {
			default_policy deny
			rule {
				domain secure.example.test
				policy one_factor
			}
			rule {
				domain dev.example.test
				subject group:dev
				policy one_factor
			}
		}
%[9]s
	}
}
auth.example.test:%[3]d {
	oidc_provider
}
secure.example.test:%[3]d {
	oidc_auth
	reverse_proxy %[5]s
}
dev.example.test:%[3]d {
	oidc_auth
	reverse_proxy %[5]s
}
`, adminPort, httpPort, p.port, filepath.Join(tmp, "store"), strings.TrimPrefix(p.up.srv.URL, "http://"),
		dir.URL(), ldaptest.ServiceDN, ldapCacheTTL, more)
	p.admin = adminPort
	p.s = newServer(t, cf, adminPort, p.port, "PORTCULLIS_E2E_LDAP_PASSWORD="+ldapServicePassword)
	p.start()
	return p, dir
}

// from is an HTTP client for the sites whose connections come from ip (127.0.0.x), so the
// failures of one check do not count against another's address.
func (p *portalSite) from(ip string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{
		Timeout: 20 * time.Second * slow,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// gated is one request at a protected site: its status, headers, and what the upstream saw.
type gated struct {
	status int
	header http.Header
	body   string
	seen   map[string]string // the upstream's request headers (first values)
}

func (p *portalSite) gate(hc *http.Client, site string, header map[string]string) gated {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.url(site, "/"), nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	g := gated{status: resp.StatusCode, header: resp.Header, body: string(data), seen: map[string]string{}}
	var rec struct {
		Headers map[string][]string `json:"headers"`
	}
	if resp.StatusCode == 200 && json.Unmarshal(data, &rec) == nil {
		for k, v := range rec.Headers {
			if len(v) > 0 {
				g.seen[k] = v[0]
			}
		}
	}
	return g
}

func sessionHeader(id string) map[string]string {
	return map[string]string{"Cookie": "portcullis_session=" + id, "Accept": "text/html"}
}

// postSignIn posts the portal's sign-in form and returns the status and the page.
func (p *portalSite) postSignIn(hc *http.Client, user, password string) (int, string) {
	p.t.Helper()
	resp, err := hc.Get(p.url("auth", "/"))
	if err != nil {
		p.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(page)
	if m == nil {
		p.t.Fatalf("no CSRF field on the sign-in page (%d): %.300s", resp.StatusCode, page)
	}
	req, _ := http.NewRequest("POST", p.url("auth", "/"), strings.NewReader(url.Values{"csrf": {string(m[1])}, "username": {user}, "password": {password}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", strings.TrimSuffix(p.url("auth", ""), "/"))
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	resp, err = hc.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// People from a real OpenLDAP sign in at the portal and with Basic credentials: the directory's
// spelling is their identity, its groups reach Remote-Groups and the rules, filter injections
// and the disabled account are refused, a group removed in the directory is seen within
// cache_ttl, and a directory that stops gives 503 with Retry-After (the portal a page that says
// so), never a pass, until it comes back.
func TestPeopleFromLDAP(t *testing.T) {
	p, dir := startLDAPSite(t)
	hc := p.client()

	// the portal: any letter case, or the mail address, is John, as the directory spells him
	for _, name := range []string{"john", "JOHN", "john@example.test"} {
		id, status := p.signIn(hc, name, "john-ldap-pw")
		if id == "" {
			t.Fatalf("signing in as %q: %d", name, status)
		}
		g := p.gate(hc, "dev", sessionHeader(id))
		if g.status != 200 || g.seen["Remote-User"] != "John" || g.seen["Remote-Groups"] != "admins,dev" ||
			g.seen["Remote-Email"] != "john@example.test" || g.seen["Remote-Name"] != "John Doe" {
			t.Fatalf("signed in as %q, the dev site answers %d with %v", name, g.status, g.seen)
		}
	}
	if id, status := p.signIn(hc, "john", "wrong"); id != "" || status != http.StatusUnauthorized {
		t.Errorf("a wrong password at the portal: %d (session %v)", status, id != "")
	}

	// Basic at the gate
	g := p.gate(hc, "dev", basic("john", "john-ldap-pw"))
	if g.status != 200 || g.seen["Remote-User"] != "John" || g.seen["Remote-Groups"] != "admins,dev" || g.seen["Authorization"] != "" {
		t.Fatalf("Basic john: %d %v", g.status, g.seen)
	}
	if g := p.gate(hc, "dev", basic("ann", "ann-ldap-pw")); g.status != 200 || g.seen["Remote-Groups"] != "dev" {
		t.Fatalf("Basic ann: %d %v", g.status, g.seen)
	}

	// injections, the disabled account and wrong passwords, each from its own address (the
	// regulation counts per address too): never a pass
	for i, c := range []struct{ user, password string }{
		{"*", "john-ldap-pw"},
		{")(uid=*", "john-ldap-pw"},
		{"john)(|(uid=*", "john-ldap-pw"},
		{"*)(objectClass=*", "ann-ldap-pw"},
		{"jo*", "john-ldap-pw"},
		{"ｊｏｈｎ", "john-ldap-pw"},
		{"dis", "dis-ldap-pw"},
		{"john", "*"},
		{"john", ""},
	} {
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		if g := p.gate(p.from(ip), "dev", basic(c.user, c.password)); g.status != http.StatusUnauthorized {
			t.Errorf("Basic %q/%q: %d, want 401", c.user, c.password, g.status)
		}
		if c.password == "" {
			continue
		}
		if status, _ := p.postSignIn(p.from(ip), c.user, c.password); status != http.StatusUnauthorized {
			t.Errorf("portal %q/%q: %d, want 401", c.user, c.password, status)
		}
	}

	// a group removed in the directory is seen at the gate within cache_ttl
	session, _ := p.signIn(hc, "john", "john-ldap-pw")
	dir.Modify(t, "dn: cn=admins,ou=groups,dc=example,dc=com\nchangetype: modify\nreplace: member\nmember: uid=ann,ou=people,dc=example,dc=com\n")
	changed := time.Now()
	for {
		a, b := p.gate(hc, "dev", basic("john", "john-ldap-pw")), p.gate(hc, "dev", sessionHeader(session))
		if a.status != 200 || b.status != 200 {
			t.Fatalf("after the group change: Basic %d, session %d", a.status, b.status)
		}
		if a.seen["Remote-Groups"] == "dev" && b.seen["Remote-Groups"] == "dev" {
			break
		}
		if time.Since(changed) > ldapCacheTTL+2*time.Second*slow {
			t.Fatalf("%v after the change Remote-Groups is still %q (Basic) and %q (session); cache_ttl is %v",
				time.Since(changed), a.seen["Remote-Groups"], b.seen["Remote-Groups"], ldapCacheTTL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the removed group was gone from Remote-Groups %v after the change (cache_ttl %v)", time.Since(changed).Round(time.Millisecond), ldapCacheTTL)

	// the directory stops: 503 with Retry-After, never a pass; the portal says why
	dir.Stop()
	time.Sleep(ldapCacheTTL + 100*time.Millisecond) // past what the cache may answer
	hits := p.up.hits.Load()
	for name, h := range map[string]map[string]string{"Basic": basic("john", "john-ldap-pw"), "session": sessionHeader(session)} {
		for _, site := range []string{"dev", "secure"} {
			if g := p.gate(hc, site, h); g.status != http.StatusServiceUnavailable || g.header.Get("Retry-After") == "" {
				t.Errorf("%s at %s with the directory down: %d, Retry-After %q; want 503 with Retry-After", name, site, g.status, g.header.Get("Retry-After"))
			}
		}
	}
	if g := p.gate(p.from("127.0.0.30"), "dev", basic("ann", "wrong")); g.status != http.StatusServiceUnavailable {
		t.Errorf("a wrong password with the directory down: %d, want 503", g.status)
	}
	if n := p.up.hits.Load() - hits; n != 0 {
		t.Errorf("%d requests reached the upstream with the directory down", n)
	}
	status, page := p.postSignIn(hc, "ann", "ann-ldap-pw")
	if status != http.StatusServiceUnavailable || !strings.Contains(page, "directory of users cannot be reached") {
		t.Errorf("signing in with the directory down: %d %.300s", status, page)
	}

	// it comes back: everything works again, without a restart of Caddy
	dir.StartAgain()
	back := time.Now()
	for {
		a, b := p.gate(hc, "dev", basic("john", "john-ldap-pw")), p.gate(hc, "dev", sessionHeader(session))
		if a.status == 200 && b.status == 200 {
			break
		}
		if (a.status != 503 && a.status != 200) || (b.status != 503 && b.status != 200) || time.Since(back) > 10*time.Second*slow {
			t.Fatalf("%v after the directory came back: Basic %d, session %d", time.Since(back), a.status, b.status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("Basic and the session passed again %v after the directory came back", time.Since(back).Round(time.Millisecond))
	if id, status := p.signIn(hc, "ann", "ann-ldap-pw"); id == "" {
		t.Errorf("signing in after the directory came back: %d", status)
	}
	for _, secret := range []string{ldapServicePassword, "john-ldap-pw", "ann-ldap-pw"} {
		if strings.Contains(p.s.log.String(), secret) {
			t.Errorf("the log shows a password (%s…)", secret[:4])
		}
	}
}

// `caddy validate` of a Caddyfile with an ldap block reaches no directory (nothing listens where
// it points, and the tls ca_file is not there), and a mistake fails it naming the key and the
// fix, without the password.
func TestValidateLDAPWithoutDirectory(t *testing.T) {
	dir := t.TempDir()
	validate := func(block string) (string, error) {
		cf := filepath.Join(dir, "Caddyfile")
		body := "{\n\tadmin off\n\toidc {\n\t\tissuer https://auth.example.com\n\t\tldap {\n" + block + "\n\t\t}\n\t}\n}\nauth.example.com {\n\toidc_provider\n}\n"
		if err := os.WriteFile(cf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(caddyBin, "validate", "--config", cf, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "PORTCULLIS_TEST_LDAP_PASSWORD=S3cret-ldap-pw")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	good := "\t\t\taddress ldaps://127.0.0.1:1\n\t\t\tbase_dn dc=example,dc=com\n\t\t\tusers_filter (&({username_attribute}={input})(objectClass=person))\n" +
		"\t\t\tgroups_filter (member={dn})\n\t\t\tuser cn=portcullis,dc=example,dc=com\n\t\t\tpassword {env.PORTCULLIS_TEST_LDAP_PASSWORD}\n" +
		"\t\t\tattributes {\n\t\t\t\tusername uid\n\t\t\t}\n\t\t\ttls {\n\t\t\t\tca_file " + filepath.Join(dir, "none.pem") + "\n\t\t\t}"
	start := time.Now()
	if out, err := validate(good); err != nil {
		t.Fatalf("caddy validate with no directory: %v\n%s", err, out)
	}
	if took := time.Since(start); took > 10*time.Second*slow {
		t.Errorf("caddy validate took %v: it must not wait for a directory", took)
	}
	for _, c := range []struct{ change, want string }{
		{strings.Replace(good, "{input}", "john", 1), "ldap: users_filter must contain {input}"},
		{strings.Replace(good, "address", "adress", 1), `ldap: unknown option \"adress\"`},
		{strings.Replace(good, "{env.PORTCULLIS_TEST_LDAP_PASSWORD}", "{env.PORTCULLIS_TEST_LDAP_UNSET}", 1), "ldap: password resolved to an empty value"},
		{strings.Replace(good, "ldaps://127.0.0.1:1", "127.0.0.1:389", 1), "must start with ldap://, ldaps:// or ldapi://"},
	} {
		out, err := validate(c.change)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("want %q, got %v\n%s", c.want, err, out)
		}
		if strings.Contains(out, "S3cret") {
			t.Errorf("caddy validate shows the password:\n%s", out)
		}
	}
}
