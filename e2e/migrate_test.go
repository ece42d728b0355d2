package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
)

// storageLine is the Badger storage line of the portal site's Caddyfile.
var storageLine = regexp.MustCompile(`(?m)^\t\tstorage (\S+)\n`)

// A provider on Badger moves to PostgreSQL with caddy oidc migrate and nobody notices: after the
// restart on PostgreSQL, the access token minted on Badger still reads userinfo with the same
// sub, its refresh token still refreshes, the person's session still lets them through the gate
// and into an application without signing in, and a pairwise subject is unchanged. migrate
// refuses the store while Caddy holds it, may run twice, and refuses the database once a node
// has written its own records there.
func TestMigrateBadgerToPostgres(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.Database(t)
	dbName := dsn[strings.LastIndexByte(dsn, '/')+1 : strings.IndexByte(dsn, '?')]
	t.Setenv("PORTCULLIS_E2E_DB_PASSWORD", pgtest.Password)

	s := startOIDCHTTPSite(t, rpClient("app", "scopes openid profile email groups offline_access", "grant_types authorization_code refresh_token")+
		rpClient("sector-a1", "sector_identifier_uri https://sector-a.example.test/"))
	v := newVisitor(t, s.portalSite, "")
	si := s.codeFlow(v, "app", url.Values{"scope": {"openid profile offline_access"}})
	sub, _ := si.claims["sub"].(string)
	at := si.accessToken()
	rt, _ := si.tokens["refresh_token"].(string)
	sector := s.codeFlow(v, "sector-a1", nil).claims["sub"]
	if sub == "" || at == "" || rt == "" || sector == nil || sector == sub {
		t.Fatalf("on Badger: sub %q, sector sub %v, tokens %v", sub, sector, si.tokens)
	}
	if resp, _ := v.do(http.MethodGet, s.url("secure", "/"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the session on Badger: %d", resp.StatusCode)
	}

	data, err := os.ReadFile(s.s.config)
	if err != nil {
		t.Fatal(err)
	}
	m := storageLine.FindSubmatch(data)
	if m == nil {
		t.Fatalf("no storage line in:\n%s", data)
	}
	badgerDir := string(m[1])
	onPostgres := storageLine.ReplaceAllString(string(data), fmt.Sprintf(
		"\t\tstorage postgres {\n\t\t\taddress tcp://%s:%d\n\t\t\tdatabase %s\n\t\t\tusername %s\n\t\t\tpassword {env.PORTCULLIS_E2E_DB_PASSWORD}\n\t\t}\n",
		pg.Host, pg.Port, dbName, pgtest.User))
	target := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(target, []byte(onPostgres), 0o600); err != nil {
		t.Fatal(err)
	}

	if _, _, code := command(t, "", "migrate", "--from", badgerDir); code != 2 {
		t.Errorf("migrate without --to-config: exit %d, want 2", code)
	}
	if _, _, code := command(t, "", "migrate", "--from", badgerDir, "--to-config", s.s.config); code != 1 {
		t.Errorf("migrate to a config on Badger: exit %d, want 1", code)
	}
	if out, errOut, code := command(t, "", "migrate", "--from", badgerDir, "--to-config", target); code != 1 || !strings.Contains(errOut, "in use by a running Caddy") {
		t.Errorf("migrate while Caddy runs: exit %d, %s%s", code, out, errOut)
	}
	s.s.stop()
	out, errOut, code := command(t, "", "migrate", "--from", badgerDir, "--to-config", target)
	if code != 0 || !strings.Contains(out, "Copied ") || !strings.Contains(out, " tok ") {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("caddy oidc migrate:\n%s", out)
	again, errOut, code := command(t, "", "migrate", "--from", badgerDir, "--to-config", target, "--json")
	var res struct {
		Copied map[string]int `json:"copied"`
	}
	total := 0
	if err := json.Unmarshal([]byte(again), &res); err == nil {
		for _, n := range res.Copied {
			total += n
		}
	}
	if code != 0 || !strings.HasPrefix(out, fmt.Sprintf("Copied %d record(s) ", total)) || res.Copied["meta"] != 2 {
		t.Errorf("a second migrate (--json): exit %d\n%s%s", code, again, errOut)
	}

	// the same site, now on PostgreSQL; without its Badger store, so that nothing can come from there
	if err := os.Rename(badgerDir, badgerDir+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.s.config, []byte(onPostgres), 0o600); err != nil {
		t.Fatal(err)
	}
	s.s.env = append(s.s.env, "PORTCULLIS_E2E_DB_PASSWORD="+pgtest.Password)
	s.start()
	if got := s.userinfoClaims(at)["sub"]; got != sub {
		t.Errorf("userinfo with the token minted on Badger: sub %v, want %s", got, sub)
	}
	status, refreshed := form(t, s.hc, s.issuer+"/api/oidc/token", "app", "app-secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if status != http.StatusOK || refreshed["access_token"] == nil {
		t.Errorf("refreshing the refresh token minted on Badger: %d %v", status, refreshed)
	}
	if resp, _ := v.do(http.MethodGet, s.url("secure", "/"), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("the session made on Badger, at the gate on PostgreSQL: %d", resp.StatusCode)
	}
	a := s.authURL("app", nil)
	st := v.authorize(a.url)
	if st.signIn {
		t.Fatalf("the application sent the person to sign in again after the move: %s", st)
	}
	if got := s.finish("app", a, st).claims["sub"]; got != sub {
		t.Errorf("sub after the move %v, before %s", got, sub)
	}
	if got := s.codeFlow(v, "sector-a1", nil).claims["sub"]; got != sector {
		t.Errorf("pairwise sub after the move %v, before %v", got, sector)
	}

	// the nodes have written their own records since: a stale copy is refused
	if out, errOut, code := command(t, "", "migrate", "--from", badgerDir+".moved", "--to-config", target); code != 1 || !strings.Contains(errOut, "--force") {
		t.Errorf("migrate into a database in use: exit %d\n%s%s", code, out, errOut)
	}
}
