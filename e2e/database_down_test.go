package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
)

// dbSite is a running Caddy on PostgreSQL with the portal, the client kuma and john (group dev)
// in a users file, and two protected sites in front of one recording upstream: secure behind
// oidc_auth, and stock behind Caddy's stock authentication handler with the oidc provider.
type dbSite struct {
	*portalSite
	db *pgtest.Server
}

func startDBSite(t *testing.T) *dbSite {
	db := pgtest.Start(t)
	u, err := url.Parse(db.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &portalSite{t: t, port: freePort(t), up: newRecorder(t), users: filepath.Join(dir, "users.yml")}
	usersFile(t, p.users, map[string]string{"john": "    groups: [dev]\n"})
	p.admin = freePort(t)
	cf := fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	https_port %[3]d
	local_certs
	skip_install_trust
	oidc {
		issuer https://auth.example.test:%[3]d
		storage postgres {
			address tcp://%[4]s:%[5]d
			database %[6]s
			username %[7]s
			password {env.PORTCULLIS_TEST_DB_PASSWORD}
			timeout 2s
		}
		users_file %[8]s
		client kuma {
			secret "$plaintext$kuma-secret"
			scopes authelia.bearer.authz
			audience https://secure.example.test:%[3]d/ https://stock.example.test:%[3]d/
			grant_types client_credentials
			requested_audience_mode implicit
		}
		access_control {
			default_policy deny
			rule {
				domain secure.example.test stock.example.test
				subject oauth2:client:kuma
				policy one_factor
			}
			rule {
				domain secure.example.test stock.example.test
				subject group:dev
				policy one_factor
			}
		}
	}
}
auth.example.test:%[3]d {
	oidc_provider
}
secure.example.test:%[3]d {
	oidc_auth
	reverse_proxy %[9]s
}
stock.example.test:%[3]d {
	oidc_auth {
		strategies authorization session
	}
	reverse_proxy %[9]s
}
`, p.admin, freePort(t), p.port, db.Host, db.Port, strings.TrimPrefix(u.Path, "/"), pgtest.User, p.users, strings.TrimPrefix(p.up.srv.URL, "http://"))
	p.s = newServer(t, cf, p.admin, p.port, "PORTCULLIS_TEST_DB_PASSWORD="+pgtest.Password)
	p.start()

	// the Caddyfile has no directive for the stock handler: put it, with the oidc provider,
	// where stock's oidc_auth was
	out, err := exec.Command(caddyBin, "adapt", "--config", p.s.config, "--adapter", "caddyfile").Output()
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v", err)
	}
	const marker = `"handler":"oidc_auth","strategies":["authorization","session"]`
	if n := strings.Count(string(out), marker); n != 1 {
		t.Fatalf("the adapted config has %d stock gates, want 1:\n%s", n, out)
	}
	cfg := strings.Replace(string(out), marker, `"handler":"authentication","providers":{"oidc":{"strategies":["authorization","session"]}}`, 1)
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://localhost:%d/load", p.admin), strings.NewReader(cfg))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("loading the stock handler's config: %d\n%s", resp.StatusCode, p.s.log.String())
	}
	// the new config's certificates are issued in the background
	for _, site := range []string{"auth", "secure", "stock"} {
		for deadline := time.Now().Add(20 * time.Second * slow); ; time.Sleep(100 * time.Millisecond) {
			resp, err := p.client().Get(p.url(site, "/"))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not answer after the reload: %v", site, err)
			}
		}
	}
	return &dbSite{portalSite: p, db: db}
}

// answer is what a request got: status, headers, body.
type answer struct {
	status int
	header http.Header
	body   string
}

func (d *dbSite) do(method, target string, header map[string]string, form url.Values) answer {
	d.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := d.client().Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v\n%s", method, target, err, d.s.log.String())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(data)}
}

// token asks the token endpoint for a kuma token.
func (d *dbSite) token() answer {
	d.t.Helper()
	return d.do("POST", d.url("auth", "/api/oidc/token"), map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("kuma:kuma-secret"))},
		url.Values{"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}})
}

func accessToken(t *testing.T, a answer) string {
	t.Helper()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if a.status != 200 || json.Unmarshal([]byte(a.body), &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %s", a.status, a.body)
	}
	return tok.AccessToken
}

// While PostgreSQL is down, no caller the gate cannot check gets through or gets a 500: a Bearer
// caller (its token used before, so cached, and a token never used on this node), a session
// caller and a Basic caller of the users file get 503 with Retry-After from oidc_auth and from
// the stock handler's provider alike, and the upstream sees none of them; the token endpoint
// answers 503 temporarily_unavailable in JSON; introspection, the portal's pages and the
// authorization endpoint answer 503. When the database is back, everything works again without
// restarting Caddy.
func TestDatabaseDown(t *testing.T) {
	d := startDBSite(t)
	warm := accessToken(t, d.token()) // used before the database stops: in the token cache
	cold := accessToken(t, d.token())
	session, status := d.signIn(d.client(), "john", "pw-john")
	if session == "" {
		t.Fatalf("sign-in: %d", status)
	}
	callers := map[string]map[string]string{
		"bearer (cached)":   {"Authorization": "Bearer " + warm},
		"bearer (uncached)": {"Authorization": "Bearer " + cold},
		"session":           {"Cookie": "portcullis_session=" + session, "Accept": "text/html"},
		"basic":             basic("john", "pw-john"),
	}
	sites := []string{"secure", "stock"}
	for _, site := range sites {
		for name, h := range callers {
			if name == "bearer (uncached)" {
				continue // keep it out of this node's caches
			}
			if a := d.do("GET", d.url(site, "/"), h, nil); a.status != 200 {
				t.Fatalf("%s at %s before the database stops: %d %v %q\n%s", name, site, a.status, a.header, a.body, d.s.log.String())
			}
		}
	}
	introspect := func(tok string) answer {
		return d.do("POST", d.url("auth", "/api/oidc/introspection"), map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("kuma:kuma-secret"))}, url.Values{"token": {tok}})
	}

	d.db.Stop()
	stopped := time.Now()
	// the node learns of it from its next statement, or from its listening connection
	for a := d.do("GET", d.url("secure", "/"), callers["bearer (cached)"], nil); a.status != 503; a = d.do("GET", d.url("secure", "/"), callers["bearer (cached)"], nil) {
		if time.Since(stopped) > 10*time.Second*slow {
			t.Fatalf("a cached token 10 s after the database stopped: %d, want 503", a.status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("first 503 for a cached token %v after the database stopped", time.Since(stopped).Round(time.Millisecond))
	hits := d.up.hits.Load()
	for _, site := range sites {
		for name, h := range callers {
			a := d.do("GET", d.url(site, "/"), h, nil)
			if a.status != 503 || a.header.Get("Retry-After") == "" {
				t.Errorf("%s at %s with the database down: %d, Retry-After %q; want 503 with Retry-After", name, site, a.status, a.header.Get("Retry-After"))
			}
		}
	}
	if n := d.up.hits.Load() - hits; n != 0 {
		t.Errorf("%d requests reached the upstream while the database was down", n)
	}
	a := d.token()
	var rfc struct {
		Error string `json:"error"`
	}
	if a.status != 503 || a.header.Get("Retry-After") == "" || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") || json.Unmarshal([]byte(a.body), &rfc) != nil || rfc.Error != "temporarily_unavailable" {
		t.Errorf("token request with the database down: %d %v %s; want 503 temporarily_unavailable with Retry-After", a.status, a.header, a.body)
	}
	if a := introspect(warm); a.status != 503 {
		t.Errorf("introspection with the database down: %d %s", a.status, a.body)
	}
	for _, path := range []string{"/", "/api/oidc/authorization?client_id=x&response_type=code"} {
		if a := d.do("GET", d.url("auth", path), map[string]string{"Cookie": "portcullis_session=" + session, "Accept": "text/html"}, nil); a.status != 503 || a.header.Get("Retry-After") == "" {
			t.Errorf("GET %s with the database down: %d, Retry-After %q", path, a.status, a.header.Get("Retry-After"))
		}
	}
	if a := d.do("GET", d.url("auth", "/.well-known/openid-configuration"), nil, nil); a.status != 200 {
		t.Errorf("discovery needs no database, got %d", a.status)
	}
	if strings.Contains(d.s.log.String(), pgtest.Password) {
		t.Error("the log shows the database password")
	}

	d.db.StartAgain()
	back := time.Now()
	for _, site := range sites {
		for name, h := range callers {
			for a := d.do("GET", d.url(site, "/"), h, nil); a.status != 200; a = d.do("GET", d.url(site, "/"), h, nil) {
				if a.status != 503 {
					t.Fatalf("%s at %s while the database comes back: %d", name, site, a.status)
				}
				if time.Since(back) > 20*time.Second*slow {
					t.Fatalf("%s at %s: no recovery 20 s after the database came back:\n%s", name, site, d.s.log.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	t.Logf("every caller recovered within %v of the database coming back", time.Since(back).Round(time.Millisecond))
	fresh := accessToken(t, d.token())
	if a := introspect(fresh); a.status != 200 || !strings.Contains(a.body, `"active":true`) {
		t.Errorf("introspection after recovery: %d %s", a.status, a.body)
	}
	if a := d.do("GET", d.url("auth", "/"), nil, nil); a.status != 200 {
		t.Errorf("the portal after recovery: %d", a.status)
	}
}

// `caddy validate` of a Caddyfile on PostgreSQL needs no database (nothing listens where it
// points), and a mistake in the storage block fails it naming the key and the fix.
func TestValidatePostgresWithoutDatabase(t *testing.T) {
	dir := t.TempDir()
	validate := func(storage string) (string, error) {
		cf := filepath.Join(dir, "Caddyfile")
		body := "{\n\tadmin off\n\toidc {\n\t\tissuer https://auth.example.com\n\t\t" + storage + "\n\t}\n}\nauth.example.com {\n\toidc_provider\n}\n"
		if err := os.WriteFile(cf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(caddyBin, "validate", "--config", cf, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "PORTCULLIS_TEST_DB_PASSWORD=not-used")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	start := time.Now()
	if out, err := validate("storage postgres {\n\t\t\taddress tcp://127.0.0.1:1\n\t\t\tdatabase portcullis\n\t\t\tusername portcullis\n\t\t\tpassword {env.PORTCULLIS_TEST_DB_PASSWORD}\n\t\t}"); err != nil {
		t.Fatalf("caddy validate with no database: %v\n%s", err, out)
	}
	if took := time.Since(start); took > 10*time.Second*slow {
		t.Errorf("caddy validate took %v: it must not wait for a database", took)
	}
	out, err := validate("storage postgres {\n\t\t\taddress tcp://127.0.0.1:1\n\t\t}")
	if err == nil || !strings.Contains(out, "storage postgres: database is required") {
		t.Errorf("caddy validate without database: %v\n%s", err, out)
	}
}
