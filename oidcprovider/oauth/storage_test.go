package oauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// statusPage is a target inside the monitor's audience.
var statusPage = audience.Target("https", "status.example.com", "/api/health")

// keysUnder counts the store's keys with prefix.
func (f *flowProvider) keysUnder(prefix string) int {
	f.t.Helper()
	keys, err := f.kv.Keys([]byte(prefix))
	if err != nil {
		f.t.Fatal(err)
	}
	return len(keys)
}

// revoke posts token to the revocation endpoint as client.
func (f *flowProvider) revoke(client, token string) int {
	r := httptest.NewRequest(http.MethodPost, PathRevocation, strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(client, client+"-secret")
	w := httptest.NewRecorder()
	f.p.ServeRevocation(w, r)
	return w.Code
}

// A client_credentials access token is one small binary record: no request index, no form.
// Tokens of the code flow keep both (fosite revokes them by request, and reads the code's
// form back). Revocation still ends the unindexed token, at once and at the gate.
func TestStoredTokenFootprint(t *testing.T) {
	f := newFlowProvider(t)
	status, body := f.token("monitor", url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}, "audience": {"https://status.example.com/"}})
	if status != 200 {
		t.Fatalf("client_credentials: %d %v", status, body)
	}
	monitorToken := body["access_token"].(string)
	if n := f.keysUnder("tok/" + kindAccess + "/"); n != 1 {
		t.Fatalf("%d access-token records, want 1", n)
	}
	if n := f.keysUnder("req/"); n != 0 {
		t.Fatalf("a client_credentials token wrote %d request-index entries, want none", n)
	}
	sig := monitorToken[strings.LastIndex(monitorToken, ".")+1:]
	data, err := f.kv.Get(tokenKey(kindAccess, sig))
	if err != nil {
		t.Fatal(err)
	}
	var rec tokenRecord
	if err := unmarshalRecord(data, &rec); err != nil {
		t.Fatal(err)
	}
	if data[0] != recordVersion1 || len(data) > 160 || rec.Form != nil || rec.ClientID != "monitor" || !rec.Session.ClientCredentials {
		t.Fatalf("record of %d bytes (version %#x): %+v", len(data), data[0], rec)
	}
	if _, err := f.p.CheckBearer(t.Context(), monitorToken, statusPage); err != nil {
		t.Fatalf("the gate refuses the fresh token: %v", err)
	}

	code := f.authorize("app", nil)
	if status, body := f.exchange("app", code, ""); status != 200 {
		t.Fatalf("exchange: %d %v", status, body)
	}
	if n := f.keysUnder("req/"); n < 2 { // the code and the access token, the refresh token too
		t.Fatalf("the code flow's tokens wrote %d request-index entries, want them indexed", n)
	}

	if status := f.revoke("app", monitorToken); status == 200 {
		t.Fatal("another client revoked the monitor's token")
	}
	if _, err := f.p.CheckBearer(t.Context(), monitorToken, statusPage); err != nil {
		t.Fatalf("a refused revocation ended the token: %v", err)
	}
	if status := f.revoke("monitor", monitorToken); status != 200 {
		t.Fatalf("revocation: %d", status)
	}
	if _, err := f.kv.Get(tokenKey(kindAccess, sig)); err == nil {
		t.Fatal("the revoked token's record is still stored")
	}
	if _, err := f.p.CheckBearer(t.Context(), monitorToken, statusPage); err == nil {
		t.Fatal("the gate still accepts the revoked token")
	}
}
