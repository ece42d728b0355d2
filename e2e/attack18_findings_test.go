package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
)

// What an outsider got through in issue 18's features, found by an attack run against the built
// binary; each test failed before its fix and guards it now.

// Wrong user codes from a few dozen addresses (five each, within the per-address limit) use up
// the service-wide budget of 300 per 15 minutes, and then the device page refuses everyone,
// the person typing the right code their TV shows included: anyone with ~60 addresses (a small
// IPv6 range, a botnet, a proxy list) keeps every device sign-in of the service down, spending
// 20 requests a minute. The right code must still go through.
func TestAttack18DeviceGuessesLockEveryone(t *testing.T) {
	p := startPortalSiteWith(t, attackDeviceClients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for a := range 62 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			m := newVisitor(t, p, fmt.Sprintf("198.51.100.%d", a+1))
			for range 5 {
				typeUserCode(t, m, "ABCD-EFGH")
			}
		}()
	}
	wg.Wait()
	status, out := deviceAuthorize(t, p, "tv", "", url.Values{"scope": {"openid"}})
	uc, _ := out["user_code"].(string)
	if status != http.StatusOK || uc == "" {
		t.Fatalf("device authorization: %d %v", status, out)
	}
	john := newVisitor(t, p, "192.0.2.44")
	john.signIn("", "john", "pw-john")
	resp, page := typeUserCode(t, john, uc)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("john typing the right code from his own address after others' wrong guesses: %d (want 303 to the consent): %.200s", resp.StatusCode, pageError.FindString(page))
	}
}

// A public device client's device authorization endpoint has no limit: one address makes
// hundreds of device requests a second, each kept in the store (a request and a user code) for
// the device_code lifespan (10 minutes by default), so one machine fills the store with
// ~200,000 records in 10 minutes and, beside the guessing limits, nothing says who did it. A
// limit per address (and per client) should answer 429 or slow_down well before 300 a second.
func TestAttack18DeviceAuthorizationUnlimited(t *testing.T) {
	p := startPortalSiteWith(t, attackDeviceClients)
	ok := 0
	for range 300 {
		if status, _ := deviceAuthorize(t, p, "tv", "", url.Values{"scope": {"openid"}}); status == http.StatusOK {
			ok++
		}
	}
	if ok == 300 {
		t.Errorf("300 device authorizations in a row from one address for one public client: all 300 granted")
	}
}

// A JWT access token of a client that asked for no audience has aud [client_id], and with it the
// iss, sub, sid, amr and auth_time of the ID token: go-oidc (which, like most relying-party
// libraries, does not read typ) takes it for an ID token of that client. Whoever is handed the
// access token (any API the application calls with it) can present it where the application
// accepts an ID token (a hybrid or implicit answer, a mobile backend's "sign in with this ID
// token", an id_token_hint): cross-JWT confusion (RFC 8725 §2.8, §3.11). The access token's aud
// must never be a client id alone. This provider's own logout endpoint takes it as an
// id_token_hint too (it refuses only logout tokens, not the other JWTs it signs).
func TestAttack18JWTAccessTokenPassesAsIDToken(t *testing.T) {
	rs := writeRSAKey(t)
	s := startOIDCHTTPSite(t, fmt.Sprintf(`
		signing_key main-rs256 {
			algorithm RS256
			key_file %s
		}
`, rs)+rpClient("oidc-rp", "access_token_signed_response_alg RS256"))
	john := newVisitor(t, s.portalSite, "")
	got := s.codeFlow(john, "oidc-rp", nil)
	at := got.accessToken()
	if jwtHeader(t, at)["typ"] != "at+jwt" {
		t.Fatalf("not a JWT access token: %.40s", at)
	}
	if idt, err := s.provider.Verifier(&oidc.Config{ClientID: "oidc-rp"}).Verify(s.ctx, at); err == nil {
		t.Errorf("john's JWT access token verifies as an ID token of oidc-rp with go-oidc (sub %s, aud %v)", idt.Subject, idt.Audience)
	}
	// and at this provider's own logout endpoint, as an id_token_hint (which refuses a logout
	// token, but takes any other JWT it signed: an access token, a signed introspection or JARM
	// answer)
	logout := func(hint string) *http.Response {
		resp, _ := newVisitor(t, s.portalSite, "").do(http.MethodGet, s.issuer+"/api/oidc/logout?"+url.Values{"id_token_hint": {hint}, "client_id": {"oidc-rp"}}.Encode(), nil)
		return resp
	}
	bad, good, asHint := logout(at[:len(at)-4]+"AAAA"), logout(got.raw), logout(at)
	if bad.StatusCode == good.StatusCode {
		t.Fatalf("a bad hint and an ID token get the same answer (%d): cannot tell", bad.StatusCode)
	}
	if asHint.StatusCode != bad.StatusCode {
		t.Errorf("the logout endpoint takes john's JWT access token as an id_token_hint: %d %q (an ID token gets %d, a bad hint %d)",
			asHint.StatusCode, asHint.Header.Get("Location"), good.StatusCode, bad.StatusCode)
	}
}
