package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gateSites is a running Caddy with bob (group dev) in a users file, the client kuma, and two
// sites in front of one recording upstream: gate.localhost behind oidc_auth, and stock.localhost
// behind Caddy's stock authentication handler with the oidc provider. Both have a bypass rule on
// /public.
type gateSites struct {
	*hardened
}

func startGateSites(t *testing.T) *gateSites {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yml")
	usersFile(t, users, map[string]string{"bob": "    displayname: Bob Builder\n    email: bob@example.test\n    groups: [dev]\n"})
	h := &hardened{t: t, adminPort: freePort(t), httpPort: freePort(t), up: newRecorder(t)}
	cf := fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	oidc {
		issuer http://auth.localhost:%[2]d
		storage %[3]s
		users_file %[4]s
		regulation {
			max_retries 3
			find_time 2m
			ban_time 5m
		}
		client kuma {
			secret "$plaintext$kuma-secret"
			scopes authelia.bearer.authz
			audience http://gate.localhost:%[2]d/ http://stock.localhost:%[2]d/
			grant_types client_credentials
			requested_audience_mode implicit
		}
		access_control {
			default_policy deny
			rule {
				domain gate.localhost stock.localhost
				resources "^/public"
				policy bypass
			}
			rule {
				domain gate.localhost stock.localhost
				subject oauth2:client:kuma
				policy one_factor
			}
			rule {
				domain gate.localhost stock.localhost
				subject group:dev
				policy one_factor
			}
		}
	}
}
http://auth.localhost:%[2]d {
	oidc_provider
}
http://gate.localhost:%[2]d {
	oidc_auth
	reverse_proxy %[5]s
}
http://stock.localhost:%[2]d {
	oidc_auth {
		strategies authorization proxy_authorization session
	}
	reverse_proxy %[5]s
}
`, h.adminPort, h.httpPort, filepath.Join(dir, "store"), users, strings.TrimPrefix(h.up.srv.URL, "http://"))
	h.s = newServer(t, cf, h.adminPort, h.httpPort)
	h.s.readyURL = h.base("auth") + "/.well-known/openid-configuration"
	h.s.start()

	// the Caddyfile has no directive for the stock handler: adapt the config and put the stock
	// handler with the oidc provider where stock.localhost's oidc_auth was
	out, err := exec.Command(caddyBin, "adapt", "--config", h.s.config, "--adapter", "caddyfile").Output()
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v", err)
	}
	const marker = `"handler":"oidc_auth","strategies":["authorization","proxy_authorization","session"]`
	if n := strings.Count(string(out), marker); n != 1 {
		t.Fatalf("the adapted config has %d stock.localhost gates, want 1:\n%s", n, out)
	}
	cfg := strings.Replace(string(out), marker, `"handler":"authentication","providers":{"oidc":{}}`, 1)
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://localhost:%d/load", h.adminPort), strings.NewReader(cfg))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("loading the stock handler's config: %d\n%s", resp.StatusCode, h.s.log.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, err := client().Get(h.base("auth") + "/.well-known/openid-configuration"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reloaded provider does not answer:\n%s", h.s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &gateSites{h}
}

// upstreamHeader is the values the upstream received for a header.
func upstreamHeader(rec map[string]any, name string) []string {
	hdr, _ := rec["headers"].(map[string]any)
	vals, _ := hdr[name].([]any)
	var out []string
	for _, v := range vals {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// A caller's Connection header cannot take away the identity the gate decided: reverse_proxy
// drops every header the Connection header names as hop-by-hop, after the gate set Remote-*, so
// the gate removes the Remote-* names from it first (any case, any separator, in every Connection
// line and comma list), for oidc_auth and for the stock handler with the oidc provider alike.
// Other names still reach reverse_proxy as hop-by-hop, which shows the header is honoured.
func TestConnectionHeaderKeepsIdentity(t *testing.T) {
	g := startGateSites(t)
	kuma := g.token("kuma", "kuma-secret")
	bob := basic("bob", "pw-bob")
	for _, site := range []string{"gate", "stock"} {
		for name, c := range map[string]struct {
			cred    map[string]string
			conn    map[string]string
			want    map[string]string
			dropped string
		}{
			"basic, one list": {
				cred: bob,
				conn: map[string]string{"Connection": "Remote-User, Remote-Groups, Remote-Email, Remote-Name, X-Hop"},
				want: map[string]string{"Remote-User": "bob", "Remote-Groups": "dev", "Remote-Email": "bob@example.test", "Remote-Name": "Bob Builder"},
			},
			"basic, variants over several lines": {
				cred: bob,
				conn: map[string]string{"Connection": "keep-alive,remote-user ,X-Hop", "connection": "REMOTE-GROUPS,\tRemote-Email", "CONNECTION": ", Remote-Name,,Remote_User"},
				want: map[string]string{"Remote-User": "bob", "Remote-Groups": "dev", "Remote-Email": "bob@example.test", "Remote-Name": "Bob Builder"},
			},
			"bearer": {
				cred: map[string]string{"Authorization": "Bearer " + kuma},
				conn: map[string]string{"Connection": "Remote-Client-ID, X-Hop"},
				want: map[string]string{"Remote-Client-Id": "kuma"},
			},
		} {
			hdr := mergeHeaders(c.cred, c.conn)
			hdr["X-Hop"] = "hop-by-hop"
			resp, rec := g.raw("", "GET", g.host(site), "/x", hdr, "")
			if resp.StatusCode != 200 || rec == nil {
				t.Errorf("%s, %s: %d, want 200 from the upstream", site, name, resp.StatusCode)
				continue
			}
			for k, want := range c.want {
				if got := upstreamHeader(rec, k); len(got) != 1 || got[0] != want {
					t.Errorf("%s, %s: the upstream's %s = %q, want %q", site, name, k, got, want)
				}
			}
			if got := upstreamHeader(rec, "X-Hop"); got != nil {
				t.Errorf("%s, %s: X-Hop, named in Connection, reached the upstream: %q", site, name, got)
			}
		}
	}
}

// Basic credentials sent to a bypass path are not checked, counted or logged: twenty different
// usernames at /public leave the address free to sign in, and reach the upstream untouched; a
// user's of the users file are removed.
func TestBasicOnABypassPathIsNotASignIn(t *testing.T) {
	g := startGateSites(t)
	for _, site := range []string{"gate", "stock"} {
		for i := range 20 {
			cred := basic(fmt.Sprintf("guess-%s-%d", site, i), "nope")
			resp, rec := g.raw("127.0.0.2", "GET", g.host(site), "/public/x", cred, "")
			if resp.StatusCode != 200 {
				t.Fatalf("%s: Basic credentials on a bypass path: %d, want 200", site, resp.StatusCode)
			}
			if got := upstreamHeader(rec, "Authorization"); len(got) != 1 || got[0] != cred["Authorization"] {
				t.Fatalf("%s: the upstream's Authorization = %q, want the caller's", site, got)
			}
		}
		if resp, _ := g.raw("127.0.0.2", "GET", g.host(site), "/x", basic("bob", "pw-bob"), ""); resp.StatusCode != 200 {
			t.Errorf("%s: bob from the same address after the bypassed requests: %d, want 200", site, resp.StatusCode)
		}
	}
	if strings.Contains(g.s.log.String(), "guess-") {
		t.Error("a username sent to a bypass path was logged")
	}
	// the bypass path is still a bypass for a user: nothing is checked, so the upstream gets no
	// identity; nor does it get the credentials of a user of the users file (any password), which
	// the gate removes after a lookup of the username alone
	for _, site := range []string{"gate", "stock"} {
		for _, pw := range []string{"pw-bob", "wrong"} {
			resp, rec := g.raw("127.0.0.3", "GET", g.host(site), "/public/x", basic("bob", pw), "")
			if resp.StatusCode != 200 || upstreamHeader(rec, "Remote-User") != nil || upstreamHeader(rec, "Authorization") != nil {
				t.Errorf("%s: bob (%s) on the bypass path: %d, upstream %v", site, pw, resp.StatusCode, rec["headers"])
			}
		}
	}
}
