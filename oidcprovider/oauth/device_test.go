package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// deviceClients are a public device client "tv" (refresh tokens for offline access) and a
// confidential one, "cli".
func deviceClients() []clients.Config {
	return []clients.Config{
		{ID: "tv", Public: true, GrantTypes: []string{clients.GrantDeviceCode, clients.GrantRefreshToken},
			Scopes: []string{"openid", "offline_access", "profile"}},
		{ID: "cli", Secret: "$plaintext$cli-secret", GrantTypes: []string{clients.GrantDeviceCode},
			Scopes: []string{"openid", "profile"}},
	}
}

// postAs sends form to serve as client: a public client ("tv", "closed") by its client_id in
// the form, a confidential one ("cli", "app"…) with its secret in Basic credentials.
func (f *flowProvider) postAs(serve http.HandlerFunc, path, client string, form url.Values) (int, map[string]any) {
	f.t.Helper()
	if client != "tv" && client != "closed" {
		return f.post(serve, path, client, form)
	}
	form.Set("client_id", client)
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	serve(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

// deviceAuth asks the device authorization endpoint as client for scope.
func (f *flowProvider) deviceAuth(client, scope string) map[string]any {
	f.t.Helper()
	status, out := f.postAs(f.p.ServeDeviceAuthorization, PathDeviceAuthorization, client, url.Values{"scope": {scope}})
	if status != http.StatusOK {
		f.t.Fatalf("device authorization as %s: %d %v", client, status, out)
	}
	return out
}

// poll asks the token endpoint for the device code's tokens as client.
func (f *flowProvider) poll(client, deviceCode string) (int, map[string]any) {
	f.t.Helper()
	return f.postAs(f.p.ServeToken, PathToken, client, url.Values{"grant_type": {clients.GrantDeviceCode}, "device_code": {deviceCode}})
}

// answer records the person's answer to the user code, as the /device page does.
func (f *flowProvider) answer(userCode string, approve bool, ref string) error {
	f.t.Helper()
	code, ok := NormalUserCode(userCode)
	if !ok {
		f.t.Fatalf("user code %q is not one", userCode)
	}
	sig, rec, err := f.p.deviceByUserCode(context.Background(), code)
	if err != nil {
		f.t.Fatalf("user code %s: %v", userCode, err)
	}
	d := deviceDecision{Approved: approve}
	if approve {
		d = deviceDecision{Approved: true, Username: "john", Subject: "sub-john", AuthTime: time.Now(), AMR: []string{"pwd", "otp", "mfa"},
			TwoFactor: true, Scopes: rec.Scopes, Audience: rec.Audience, BrowserSession: ref}
	}
	return f.p.decideDevice(context.Background(), sig, rec, d)
}

func errorOf(out map[string]any) string { s, _ := out["error"].(string); return s }

func TestUserCodes(t *testing.T) {
	seen := map[rune]int{}
	for range 2000 {
		c := newUserCode()
		if len(c) != userCodeLength {
			t.Fatalf("user code %q has %d characters", c, len(c))
		}
		for _, r := range c {
			if strings.ContainsRune("01OIL", r) || !strings.ContainsRune(userCodeAlphabet, r) {
				t.Fatalf("user code %q has the character %q", c, r)
			}
			seen[r]++
		}
	}
	if len(seen) != len(userCodeAlphabet) || len(userCodeAlphabet) != 31 {
		t.Errorf("2000 codes used %d characters of %d", len(seen), len(userCodeAlphabet))
	}
	for r, n := range seen { // 16,000 characters: about 516 each; a biased draw strays far
		if n < 400 || n > 640 {
			t.Errorf("the character %q came %d times in 16,000, want about 516", r, n)
		}
	}
	for typed, want := range map[string]string{"WDJB-MJHT": "WDJBMJHT", "wdjb-mjht": "WDJBMJHT", "wdjbmjht": "WDJBMJHT", " WDJB MJHT ": "WDJBMJHT", "Wd-Jb-Mj-Ht": "WDJBMJHT"} {
		if got, ok := NormalUserCode(typed); !ok || got != want {
			t.Errorf("NormalUserCode(%q) = %q, %v; want %q", typed, got, ok, want)
		}
	}
	for _, typed := range []string{"", "WDJB-MJH", "WDJB-MJHTX", "WDJB-MJH0", "WDJB-MJHO", "WDJB-MJH1", "WDJB-MJHI", "WDJB-MJHL", "WDJB_MJHT", "WDJB-MJHÉ", strings.Repeat("A", 40)} {
		if got, ok := NormalUserCode(typed); ok {
			t.Errorf("NormalUserCode(%q) = %q, want no code", typed, got)
		}
	}
	if got := FormatUserCode("WDJBMJHT"); got != "WDJB-MJHT" {
		t.Errorf("FormatUserCode = %q", got)
	}
}

// The device authorization endpoint answers RFC 8628 §3.2, keeps no device code or user code in
// the store, and refuses clients without the grant, scopes they are not registered with, and
// public clients that send a secret.
func TestDeviceAuthorizationEndpoint(t *testing.T) {
	f := newFlowProvider(t, deviceClients()...)
	doc := f.p.discoveryDocument()
	if doc["device_authorization_endpoint"] != testIssuer+PathDeviceAuthorization || !slices.Contains(doc["grant_types_supported"].([]string), clients.GrantDeviceCode) {
		t.Errorf("discovery: %v, %v", doc["device_authorization_endpoint"], doc["grant_types_supported"])
	}
	out := f.deviceAuth("tv", "openid offline_access")
	dc, _ := out["device_code"].(string)
	uc, _ := out["user_code"].(string)
	if !strings.HasPrefix(dc, TokenPrefix+kindDevice+"_") || len(dc) < 60 {
		t.Errorf("device_code %q", dc)
	}
	if _, ok := NormalUserCode(uc); !ok || len(uc) != 9 || uc[4] != '-' {
		t.Errorf("user_code %q, want XXXX-XXXX", uc)
	}
	if out["verification_uri"] != testIssuer+PathDevice || out["verification_uri_complete"] != testIssuer+PathDevice+"?user_code="+uc {
		t.Errorf("verification URIs %v %v", out["verification_uri"], out["verification_uri_complete"])
	}
	if out["expires_in"] != float64(600) || out["interval"] != float64(5) {
		t.Errorf("expires_in %v, interval %v; want 600 and 5", out["expires_in"], out["interval"])
	}
	keys, err := f.kv.Keys(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	norm, _ := NormalUserCode(uc)
	raw := strings.TrimPrefix(dc, TokenPrefix+kindDevice+"_")
	for _, k := range keys {
		v, _ := f.kv.Get(t.Context(), k)
		for _, secret := range []string{raw, dc, norm, uc} {
			if strings.Contains(string(k), secret) || strings.Contains(string(v), secret) {
				t.Errorf("the store holds %q under %q", secret, k)
			}
		}
	}

	for _, c := range []struct {
		name, client, scope, want string
		status                    int
	}{
		{"client without the grant", "app", "openid", "unauthorized_client", http.StatusBadRequest},
		{"scope not registered", "tv", "openid email", "invalid_scope", http.StatusBadRequest},
		{"client_credentials client", "monitor", "", "unauthorized_client", http.StatusBadRequest},
	} {
		status, out := f.postAs(f.p.ServeDeviceAuthorization, PathDeviceAuthorization, c.client, url.Values{"scope": {c.scope}})
		if status != c.status || errorOf(out) != c.want {
			t.Errorf("%s: %d %v, want %d %s", c.name, status, out, c.status, c.want)
		}
	}
	status, out := f.postAs(f.p.ServeDeviceAuthorization, PathDeviceAuthorization, "tv", url.Values{"client_secret": {"x"}})
	if status != http.StatusUnauthorized || errorOf(out) != "invalid_client" {
		t.Errorf("public client with a secret: %d %v", status, out)
	}
	status, out = f.post(f.p.ServeDeviceAuthorization, PathDeviceAuthorization, "cli", url.Values{"scope": {"openid"}})
	if status != http.StatusOK {
		t.Errorf("confidential client: %d %v", status, out)
	}
	r := httptest.NewRequest(http.MethodPost, PathDeviceAuthorization, strings.NewReader("client_id=cli&scope=openid"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	f.p.ServeDeviceAuthorization(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("confidential client without its secret: %d %s", w.Code, w.Body)
	}
}

// The polling states of RFC 8628 §3.5: pending, slow_down (and the interval it raises), the
// tokens once approved (access, ID and refresh tokens, as the code flow gives them), once; a
// refusal; an expired code; another client's code; a code that is not ours.
func TestDevicePollingStates(t *testing.T) {
	f := newFlowProvider(t, deviceClients()...)
	out := f.deviceAuth("tv", "openid offline_access profile")
	dc, uc := out["device_code"].(string), out["user_code"].(string)

	if status, out := f.poll("tv", dc); status != http.StatusBadRequest || errorOf(out) != "authorization_pending" {
		t.Fatalf("first poll: %d %v, want authorization_pending", status, out)
	}
	if status, out := f.poll("tv", dc); status != http.StatusBadRequest || errorOf(out) != "slow_down" {
		t.Fatalf("poll at once again: %d %v, want slow_down", status, out)
	}
	sig, _ := f.p.deviceSignature(t.Context(), dc)
	if v, err := f.kv.Get(t.Context(), deviceIntervalKey(sig)); err != nil || string(v) != "10" {
		t.Errorf("interval after slow_down: %q %v, want 10 s", v, err)
	}
	if status, out := f.poll("tv", dc); errorOf(out) != "slow_down" {
		t.Errorf("third poll at once: %d %v, want slow_down", status, out)
	}
	// the poll's claim ends with the interval: a poll after it is pending again, not slow_down
	if err := f.kv.Delete(t.Context(), devicePollKey(sig)); err != nil {
		t.Fatal(err)
	}
	if _, out := f.poll("tv", dc); errorOf(out) != "authorization_pending" {
		t.Errorf("poll after the interval: %v, want authorization_pending", out)
	}
	// another client presenting the code gets nothing, and the code stays good
	if status, out := f.poll("cli", dc); status != http.StatusBadRequest || errorOf(out) != "invalid_grant" {
		t.Errorf("another client's poll: %d %v, want invalid_grant", status, out)
	}
	// a forged code with our prefix
	if _, out := f.poll("tv", TokenPrefix+kindDevice+"_AAAA.BBBB"); errorOf(out) != "invalid_grant" {
		t.Errorf("forged device code: %v", out)
	}

	if err := f.answer(uc, true, "ref-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.answer(uc, false, ""); err != errDeviceDecided {
		t.Errorf("a second answer: %v, want errDeviceDecided", err)
	}
	status, tok := f.poll("tv", dc)
	if status != http.StatusOK {
		t.Fatalf("poll after approval: %d %v", status, tok)
	}
	at, _ := tok["access_token"].(string)
	if !strings.HasPrefix(at, TokenPrefix+kindAccess+"_") || tok["token_type"] != "bearer" || tok["scope"] != "openid offline_access profile" {
		t.Errorf("token answer %v", tok)
	}
	if f.userinfo(at) != http.StatusOK {
		t.Error("userinfo refuses the device's access token")
	}
	if rt, _ := tok["refresh_token"].(string); !strings.HasPrefix(rt, TokenPrefix+kindRefresh+"_") {
		t.Errorf("no refresh token for offline_access: %v", tok)
	} else if status, out := f.postAs(f.p.ServeToken, PathToken, "tv", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); status != http.StatusOK || out["id_token"] == nil {
		t.Errorf("refreshing the device's token: %d %v", status, out)
	}
	idt, _ := tok["id_token"].(string)
	claims := jwtClaims(t, idt)
	if claims["sub"] != "sub-john" || claims["aud"] == nil || claims["azp"] != "tv" || claims["preferred_username"] != "john" || claims["at_hash"] == nil || claims["auth_time"] == nil {
		t.Errorf("ID token claims %v", claims)
	}
	if amr, _ := claims["amr"].([]any); len(amr) != 3 {
		t.Errorf("amr %v", claims["amr"])
	}
	if status, out := f.poll("tv", dc); status != http.StatusBadRequest || errorOf(out) != "invalid_grant" {
		t.Errorf("second redemption: %d %v, want invalid_grant", status, out)
	}

	// refused
	out = f.deviceAuth("tv", "openid")
	if err := f.answer(out["user_code"].(string), false, ""); err != nil {
		t.Fatal(err)
	}
	if status, out := f.poll("tv", out["device_code"].(string)); status != http.StatusBadRequest || errorOf(out) != "access_denied" {
		t.Errorf("refused: %d %v, want access_denied", status, out)
	}

	// expired (approved too late counts as expired)
	out = f.deviceAuth("tv", "openid")
	dc = out["device_code"].(string)
	sig, _ = f.p.deviceSignature(t.Context(), dc)
	rec, err := f.p.loadDevice(t.Context(), sig)
	if err != nil {
		t.Fatal(err)
	}
	rec.ExpiresAt = time.Now().Add(-time.Second)
	data, _ := json.Marshal(rec)
	if err := f.kv.Put(t.Context(), store.Entry{Key: deviceKey(sig), Value: data, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if status, out := f.poll("tv", dc); status != http.StatusBadRequest || errorOf(out) != "expired_token" {
		t.Errorf("expired: %d %v, want expired_token", status, out)
	}
}

// jwtClaims decodes a JWT's claims without checking it (the provider's tests check signatures).
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// Signing out of the portal session that approved a device ends the approval not yet collected
// (the device is refused) and the access tokens it did collect, as for the code flow.
func TestDeviceApprovalEndsWithItsSession(t *testing.T) {
	f := newFlowProvider(t, deviceClients()...)
	pending := f.deviceAuth("tv", "openid")
	collected := f.deviceAuth("tv", "openid")
	for _, out := range []map[string]any{pending, collected} {
		if err := f.answer(out["user_code"].(string), true, "ref-9"); err != nil {
			t.Fatal(err)
		}
	}
	status, tok := f.poll("tv", collected["device_code"].(string))
	if status != http.StatusOK {
		t.Fatalf("collecting: %d %v", status, tok)
	}
	if n, err := f.p.EndBrowserSession(t.Context(), "ref-9"); err != nil || n != 3 {
		t.Errorf("EndBrowserSession: %d, %v; want 3 (two approvals and an access token)", n, err)
	}
	if f.userinfo(tok["access_token"].(string)) != http.StatusUnauthorized {
		t.Error("the access token outlived the sign-out")
	}
	if status, out := f.poll("tv", pending["device_code"].(string)); status != http.StatusBadRequest || errorOf(out) != "access_denied" {
		t.Errorf("the approval of a signed-out session: %d %v, want access_denied", status, out)
	}
}

// Two nodes on one PostgreSQL database: of an approval and a refusal racing for one user code,
// exactly one stands; of two redemptions racing for one approved device code, exactly one gets
// tokens and the other invalid_grant.
func TestDeviceRacesAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	node := func() *flowProvider {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		return newFlowProviderOn(t, kv, deviceClients()...)
	}
	a, b := node(), node()
	for i := range 10 {
		out := a.deviceAuth("tv", "openid")
		uc, dc := out["user_code"].(string), out["device_code"].(string)
		var wg sync.WaitGroup
		var errs [2]error
		for j, n := range []*flowProvider{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); errs[j] = n.answer(uc, j == 0, "ref-race") }()
		}
		wg.Wait()
		stood := 0
		for _, err := range errs {
			switch err {
			case nil:
				stood++
			case errDeviceDecided:
			default:
				t.Fatalf("race %d: %v", i, err)
			}
		}
		if stood != 1 {
			t.Fatalf("race %d: %d answers stood, want exactly one", i, stood)
		}
		want := "access_denied"
		if errs[0] == nil {
			want = ""
		}
		var statuses [2]int
		var outs [2]map[string]any
		for j, n := range []*flowProvider{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); statuses[j], outs[j] = n.poll("tv", dc) }()
		}
		wg.Wait()
		if want == "access_denied" {
			if errorOf(outs[0]) != want || errorOf(outs[1]) != want {
				t.Fatalf("race %d: refused, yet the polls answered %v %v", i, outs[0], outs[1])
			}
			continue
		}
		ok := 0
		for j, s := range statuses {
			switch {
			case s == http.StatusOK:
				ok++
			case errorOf(outs[j]) != "invalid_grant":
				t.Errorf("race %d: a redemption answered %d %v", i, s, outs[j])
			}
		}
		if ok != 1 {
			t.Fatalf("race %d: %d redemptions got tokens (%v), want exactly one", i, ok, statuses)
		}
	}
}

// A password change or reset (RevokeUserTokens) after the person approved a device, before it
// collected its tokens, leaves the device nothing; a client's revocation cut-off ends its
// pending device codes.
func TestDeviceApprovalBeforeARevocation(t *testing.T) {
	f := newFlowProvider(t, deviceClients()...)
	cut, err := LoadClientCutoffs(t.Context(), f.kv)
	if err != nil {
		t.Fatal(err)
	}
	f.p.cfg.Cutoffs, f.p.storage.cutoffs = cut, cut
	out := f.deviceAuth("tv", "openid")
	if err := f.answer(out["user_code"].(string), true, "ref-1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := f.p.RevokeUserTokens(t.Context(), "john"); err != nil {
		t.Fatal(err)
	}
	if status, tok := f.poll("tv", out["device_code"].(string)); status != http.StatusBadRequest || errorOf(tok) != "invalid_grant" {
		t.Errorf("collecting after the user's revocation: %d %v, want invalid_grant", status, tok)
	}
	out = f.deviceAuth("tv", "openid")
	time.Sleep(10 * time.Millisecond)
	if err := cut.Set(t.Context(), f.kv, "tv", time.Now()); err != nil {
		t.Fatal(err)
	}
	if status, tok := f.poll("tv", out["device_code"].(string)); status != http.StatusBadRequest || errorOf(tok) != "invalid_grant" {
		t.Errorf("polling after the client's revocation: %d %v, want invalid_grant", status, tok)
	}
}
