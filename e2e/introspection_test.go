package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// Introspection with real clients against the built binary: a public client (which proves
// nothing by its id) and a caller without credentials are refused with 401 invalid_client; a
// token's own client and a client configured as a resource server for it read whose the token
// is (username, the pairwise sub), any other confidential client only whether it is active and
// what it grants.
func TestIntrospectionCallersWithoutBrowser(t *testing.T) {
	s := startOIDCHTTPSite(t, "\t\tclient spa {\n\t\t\tpublic\n\t\t\tscopes openid profile\n"+
		"\t\t\tredirect_uris "+redirectURI("spa")+"\n\t\t\tauthorization_policy one_factor\n\t\t\tconsent_mode implicit\n\t\t}\n"+
		rpClient("sector-a", "sector_identifier_uri https://sector-a.example.test/")+
		rpClient("other")+
		"\t\tclient api {\n\t\t\tsecret \"$plaintext$api-secret\"\n\t\t\tgrant_types client_credentials\n\t\t\tresource_server_for sector-a spa\n\t\t}\n")
	introspection := s.issuer + "/api/oidc/introspection"
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")

	si := s.codeFlow(john, "sector-a", nil)
	sectorToken, pairwise := si.accessToken(), si.idToken.Subject
	a := s.authURL("spa", url.Values{"scope": {"openid profile"}})
	cb := john.authorize(a.url).callback()
	status, out := s.exchange("spa", "", cb.Get("code"), a.verifier)
	spaToken, _ := out["access_token"].(string)
	if status != http.StatusOK || spaToken == "" || sectorToken == "" {
		t.Fatalf("tokens: spa %d %v, sector-a %q", status, out, sectorToken)
	}

	t.Run("refused callers", func(t *testing.T) {
		for _, c := range []struct {
			name  string
			form  url.Values
			basic [2]string
		}{
			// curl -d client_id=spa -d token=…
			{"public client, another's token", url.Values{"client_id": {"spa"}, "token": {sectorToken}}, [2]string{}},
			{"public client, its own token", url.Values{"client_id": {"spa"}, "token": {spaToken}}, [2]string{}},
			{"no credentials", url.Values{"token": {sectorToken}}, [2]string{}},
		} {
			req, _ := http.NewRequest(http.MethodPost, introspection, strings.NewReader(c.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if c.basic[0] != "" {
				req.SetBasicAuth(c.basic[0], c.basic[1])
			}
			resp, err := s.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || body["error"] != "invalid_client" || body["active"] != nil || body["username"] != nil {
				t.Errorf("%s: %d %v, want 401 invalid_client", c.name, resp.StatusCode, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic realm=") {
				t.Errorf("%s: WWW-Authenticate %q, want a Basic challenge", c.name, got)
			}
		}
	})

	t.Run("what each caller sees", func(t *testing.T) {
		full := []string{"active", "client_id", "scope", "aud", "exp", "iat", "iss", "token_type", "sub", "username"}
		limited := full[:8]
		for _, c := range []struct {
			caller, token, owner string
			want                 []string
		}{
			{"sector-a", sectorToken, "sector-a", full}, // its own token
			{"api", sectorToken, "sector-a", full},      // resource_server_for sector-a
			{"api", spaToken, "spa", full},              // resource_server_for spa
			{"other", sectorToken, "sector-a", limited}, // any other confidential client
			{"other", spaToken, "spa", limited},
		} {
			status, body := form(t, s.hc, introspection, c.caller, c.caller+"-secret", url.Values{"token": {c.token}})
			if status != http.StatusOK || body["active"] != true || body["client_id"] != c.owner {
				t.Errorf("%s introspects %s's token: %d %v", c.caller, c.owner, status, body)
				continue
			}
			keys := make([]string, 0, len(body))
			for k := range body {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			want := slices.Sorted(slices.Values(c.want))
			if !slices.Equal(keys, want) {
				t.Errorf("%s introspects %s's token: %v, want exactly the keys %v", c.caller, c.owner, body, want)
			}
			if slices.Contains(c.want, "username") && body["username"] != "john" {
				t.Errorf("%s introspects %s's token: username %v, want john", c.caller, c.owner, body["username"])
			}
		}
		// the pairwise sub goes only where the token's client would see it
		if _, body := form(t, s.hc, introspection, "api", "api-secret", url.Values{"token": {sectorToken}}); body["sub"] != pairwise {
			t.Errorf("the resource server sees sub %v, want sector-a's pairwise %q", body["sub"], pairwise)
		}
	})
}
