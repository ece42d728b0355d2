package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
)

// storeMetricsCaddyfile is a provider and a gated site on a PostgreSQL store; {MORE} adds
// lines to the oidc block (a reload changes it).
const storeMetricsCaddyfile = `{
	admin localhost:{ADMIN}
	http_port {HTTP}
	oidc {
		issuer http://auth.localhost:{HTTP}
		storage postgres {
			dsn "{DSN}"
		}
		client monitor {
			secret "$plaintext$monitor-secret"
			scopes authelia.bearer.authz
			audience http://secure.localhost:{HTTP}/
			grant_types client_credentials
			requested_audience_mode implicit
		}
		access_control {
			default_policy deny
			rule {
				domain secure.localhost
				subject oauth2:client:monitor
				policy one_factor
			}
		}
{MORE}	}
}
http://auth.localhost:{HTTP} {
	oidc_provider
}
http://secure.localhost:{HTTP} {
	oidc_auth
	respond "ok"
}
`

// A Caddy on a PostgreSQL store serves the store's metrics on the admin endpoint's /metrics
// (statement latency by operation, changes sent and received, the listener), and after a
// reload, which keeps the store open, they are there again and count on: no duplicate
// registration, no reset.
func TestStoreMetricsOnTheAdminEndpoint(t *testing.T) {
	pg := pgtest.Start(t)
	adminPort, httpPort := freePort(t), freePort(t)
	config := func(more string) string {
		return strings.NewReplacer("{ADMIN}", fmt.Sprint(adminPort), "{HTTP}", fmt.Sprint(httpPort), "{DSN}", pg.Database(t), "{MORE}", more).Replace(storeMetricsCaddyfile)
	}
	dsnConfig := config("")
	s := newServer(t, dsnConfig, adminPort, httpPort)
	s.readyURL = fmt.Sprintf("http://auth.localhost:%d/.well-known/openid-configuration", httpPort)
	s.start()
	hc := client()
	token := func() string {
		t.Helper()
		status, out := form(t, hc, fmt.Sprintf("http://auth.localhost:%d/api/oidc/token", httpPort), "monitor", "monitor-secret",
			url.Values{"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}})
		tok, _ := out["access_token"].(string)
		if status != http.StatusOK || tok == "" {
			t.Fatalf("token: %d %v", status, out)
		}
		return tok
	}
	gated := func(tok string) {
		t.Helper()
		if r := get(t, hc, "GET", fmt.Sprintf("http://secure.localhost:%d/", httpPort), map[string]string{"Authorization": "Bearer " + tok}); r.status != http.StatusOK {
			t.Fatalf("the gate: %d", r.status)
		}
	}
	tok := token()
	gated(tok)

	const puts = `portcullis_store_statement_duration_seconds_count{operation="put"}`
	m := scrape(t, hc, adminPort)
	for _, series := range []string{puts, `portcullis_store_changes_sent_total`, `portcullis_store_changes_received_total`, `portcullis_store_listener_up`} {
		if _, ok := m[series]; !ok {
			t.Errorf("%s is not on /metrics", series)
		}
	}
	if m[puts] < 1 || m["portcullis_store_listener_up"] != 1 {
		t.Errorf("after a token: %v puts, listener_up %v", m[puts], m["portcullis_store_listener_up"])
	}
	before := m[puts]

	// a reload with a changed config: the new config reads the same open store
	more := "\t\tclient other {\n\t\t\tsecret \"$plaintext$other-secret\"\n\t\t\tgrant_types client_credentials\n\t\t}\n"
	cf := strings.Replace(dsnConfig, "\t}\n}\nhttp://auth", more+"\t}\n}\nhttp://auth", 1)
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://localhost:%d/load", adminPort), strings.NewReader(cf))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %d\n%s", resp.StatusCode, s.log.String())
	}
	// the old config's server closes its keep-alive connections: a POST on one of them would fail
	// with EOF (a POST is not retried), so the requests after the reload use new connections
	hc.CloseIdleConnections()
	hc = client()
	deadline := time.Now().Add(10 * time.Second * slow)
	for {
		status, _ := form(t, hc, fmt.Sprintf("http://auth.localhost:%d/api/oidc/token", httpPort), "other", "other-secret", url.Values{"grant_type": {"client_credentials"}})
		if status == http.StatusOK {
			break // the new config serves
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reloaded config does not serve the new client: %d\n%s", status, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	gated(tok) // the token minted before the reload
	m = scrape(t, hc, adminPort)
	if m[puts] <= before || m["portcullis_store_listener_up"] != 1 {
		t.Errorf("after the reload: %v puts (before it %v), listener_up %v", m[puts], before, m["portcullis_store_listener_up"])
	}
	if log := s.log.String(); strings.Contains(log, "duplicate metrics collector") || strings.Contains(log, "already registered") {
		t.Errorf("a metrics registration failed:\n%s", log)
	}
}
