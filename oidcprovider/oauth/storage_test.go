package oauth

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// statusPage is a target inside the monitor's audience.
var statusPage = audience.Target("https", "status.example.com", "/api/health")

// keysUnder counts the store's keys with prefix.
func (f *flowProvider) keysUnder(ctx context.Context, prefix string) int {
	f.t.Helper()
	keys, err := f.kv.Keys(ctx, []byte(prefix))
	if err != nil {
		f.t.Fatal(err)
	}
	return len(keys)
}

// rewriteWithoutExpiry stores a token's record again as earlier versions wrote code-flow tokens:
// JSON, issued at issued, without expiries and without a TTL.
func (f *flowProvider) rewriteWithoutExpiry(ctx context.Context, kind, sig string, issued time.Time) {
	f.t.Helper()
	_, rec, err := f.p.storage.load(ctx, kind, sig, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	rec.RequestedAt, rec.Session.ExpiresAt = issued, nil
	data, err := json.Marshal(rec)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.kv.Put(ctx, store.Entry{Key: tokenKey(kind, sig), Value: data}); err != nil {
		f.t.Fatal(err)
	}
}

// revoke posts token to the revocation endpoint as client.
func (f *flowProvider) revoke(client, token string) int {
	status, _ := f.post(f.p.ServeRevocation, PathRevocation, client, url.Values{"token": {token}})
	return status
}

// A client_credentials access token is one small binary record: no request index, no form.
// Tokens of the code flow keep both (fosite revokes them by request, and reads the code's
// form back). Revocation still ends the unindexed token, at once and at the gate.
func TestStoredTokenFootprint(t *testing.T) {
	ctx := t.Context()
	f := newFlowProvider(t)
	status, body := f.token("monitor", url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}, "audience": {"https://status.example.com/"}})
	if status != 200 {
		t.Fatalf("client_credentials: %d %v", status, body)
	}
	monitorToken := body["access_token"].(string)
	if n := f.keysUnder(ctx, "tok/"+kindAccess+"/"); n != 1 {
		t.Fatalf("%d access-token records, want 1", n)
	}
	if n := f.keysUnder(ctx, "req/"); n != 0 {
		t.Fatalf("a client_credentials token wrote %d request-index entries, want none", n)
	}
	sig := monitorToken[strings.LastIndex(monitorToken, ".")+1:]
	data, err := f.kv.Get(ctx, tokenKey(kindAccess, sig))
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
	if n := f.keysUnder(ctx, "req/"); n < 2 { // the code and the access token, the refresh token too
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
	if _, err := f.kv.Get(ctx, tokenKey(kindAccess, sig)); err == nil {
		t.Fatal("the revoked token's record is still stored")
	}
	if _, err := f.p.CheckBearer(t.Context(), monitorToken, statusPage); err == nil {
		t.Fatal("the gate still accepts the revoked token")
	}
}

// A client_credentials token presented for revocation under another kind's prefix is still
// ended: fosite finds it by its signature whatever the prefix, and answers 200.
func TestRevocationIgnoresThePrefix(t *testing.T) {
	f := newFlowProvider(t)
	for _, kind := range []string{kindRefresh, kindCode} {
		status, body := f.token("monitor", url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}, "audience": {"https://status.example.com/"}})
		if status != 200 {
			t.Fatalf("client_credentials: %d %v", status, body)
		}
		token := body["access_token"].(string)
		if _, err := f.p.CheckBearer(t.Context(), token, statusPage); err != nil {
			t.Fatalf("fresh token refused: %v", err)
		}
		disguised := TokenPrefix + kind + "_" + strings.TrimPrefix(token, TokenPrefix+kindAccess+"_")
		if status := f.revoke("monitor", disguised); status != 200 {
			t.Fatalf("revocation as %s: %d", kind, status)
		}
		if _, err := f.p.CheckBearer(t.Context(), token, statusPage); err == nil {
			t.Fatalf("revoked as %s, the token still passes the gate", kind)
		}
	}
}

// The access and refresh tokens of a code exchange carry their expiries (fosite sets them on
// the session before it reads the code a second time; reading it must not wipe them), so the
// store forgets them and the gate refuses them in time.
func TestCodeExchangeTokensExpire(t *testing.T) {
	ctx := t.Context()
	f := newFlowProvider(t)
	before := time.Now()
	status, body := f.exchange("app", f.authorize("app", nil), "")
	if status != 200 {
		t.Fatalf("exchange: %d %v", status, body)
	}
	for kind, tt := range map[string]fosite.TokenType{kindAccess: fosite.AccessToken, kindRefresh: fosite.RefreshToken} {
		prefix := TokenPrefix + kind + "_"
		var token string
		for _, v := range []any{body["access_token"], body["refresh_token"]} {
			if s, _ := v.(string); strings.HasPrefix(s, prefix) {
				token = s
			}
		}
		if token == "" {
			t.Fatalf("no %s in %v", kind, body)
		}
		_, rec, err := f.p.storage.load(ctx, kind, token[strings.LastIndex(token, ".")+1:], nil)
		if err != nil {
			t.Fatal(err)
		}
		exp := rec.Session.GetExpiresAt(tt)
		if exp.Before(before.Add(time.Hour-time.Minute)) || exp.After(time.Now().Add(time.Hour+time.Minute)) {
			t.Errorf("%s stored with expiry %v, want about an hour from now", kind, exp)
		}
	}
}

// A token record without an access expiry (earlier versions stored code-flow tokens so) lasts
// the access token lifespan from its issue at the gate, as fosite's own validation has it.
func TestGateExpiresRecordsWithoutExpiry(t *testing.T) {
	ctx := t.Context()
	f := newFlowProvider(t)
	_, body := f.token("monitor", url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}, "audience": {"https://status.example.com/"}})
	token := body["access_token"].(string)
	sig := token[strings.LastIndex(token, ".")+1:]
	for _, c := range []struct {
		issued time.Time
		valid  bool
	}{{time.Now().Add(-time.Minute), true}, {time.Now().Add(-2 * time.Hour), false}} {
		f.rewriteWithoutExpiry(ctx, kindAccess, sig, c.issued)
		f.p.cfg.Tokens.Forget(sig)
		if _, err := f.p.CheckBearer(t.Context(), token, statusPage); (err == nil) != c.valid {
			t.Errorf("issued %s ago without an expiry: gate error %v, want valid=%v", time.Since(c.issued).Round(time.Minute), err, c.valid)
		}
	}
}

// A refresh token record without an expiry (earlier versions stored code-flow refresh tokens
// so, and fosite reads that as unlimited) lasts the refresh token lifespan from its issue.
func TestRefreshRecordsWithoutExpiry(t *testing.T) {
	ctx := t.Context()
	f := newFlowProvider(t)
	for _, c := range []struct {
		issued time.Time
		valid  bool
	}{{time.Now().Add(-time.Minute), true}, {time.Now().Add(-2 * time.Hour), false}} {
		_, body := f.exchange("app", f.authorize("app", nil), "")
		rt, _ := body["refresh_token"].(string)
		sig := rt[strings.LastIndex(rt, ".")+1:]
		f.rewriteWithoutExpiry(ctx, kindRefresh, sig, c.issued)
		if status, body := f.refresh("app", rt); (status == 200) != c.valid {
			t.Errorf("refresh token issued %s ago without an expiry: %d %v, want valid=%v", time.Since(c.issued).Round(time.Minute), status, body, c.valid)
		}
	}
}
