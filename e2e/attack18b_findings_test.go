package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Findings of the second attack pass on issue 18: each test fails until its defect is fixed.

// One application's back-channel receiver that hangs (each delivery to it runs into the 5 s
// timeout) holds up the logouts of every other application: a delivery round sends every due job
// through 4 senders and waits for all of them before the next round, so twelve sign-outs that
// each owe the hanging receiver a logout make the next person's logout to a quick receiver wait
// for three rounds of timeouts (~15 s), during which that application keeps the session alive.
func TestAttack18bBackchannelHeadOfLineBlocking(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var fastAt time.Time
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast" {
			mu.Lock()
			if fastAt.IsZero() {
				fastAt = time.Now()
			}
			mu.Unlock()
			return
		}
		select { // the hanging receiver
		case <-release:
		case <-time.After(60 * time.Second):
		}
	}))
	t.Cleanup(recv.Close)
	t.Cleanup(func() { close(release) })
	s := startOIDCHTTPSite(t, rpClient("bc-hang", "backchannel_logout_uri "+recv.URL+"/hang")+
		rpClient("bc-fast", "backchannel_logout_uri "+recv.URL+"/fast"))
	var users []*visitor
	for range 12 {
		v := newVisitor(t, s.portalSite, "")
		s.codeFlow(v, "bc-hang", nil)
		users = append(users, v)
	}
	john := newVisitor(t, s.portalSite, "")
	s.codeFlow(john, "bc-fast", nil)
	for _, v := range users {
		v.signOut()
	}
	// the first round (the first sign-outs) runs into its timeouts; the next takes up the rest:
	// three batches of four hanging deliveries
	time.Sleep(5500 * time.Millisecond)
	start := time.Now()
	john.signOut()
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		at := fastAt
		mu.Unlock()
		if !at.IsZero() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	at := fastAt
	mu.Unlock()
	if at.IsZero() {
		t.Fatal("the quick receiver never heard of john's sign-out")
	}
	if took := at.Sub(start); took > 3*time.Second {
		t.Errorf("the quick receiver heard of john's sign-out %s after it: another application's hanging receiver held the queue", took.Round(100*time.Millisecond))
	}
}

// A private_key_jwt client that names the endpoint it calls as the assertion's aud (as it may
// at the token, PAR, introspection and revocation endpoints) is refused at the device
// authorization endpoint: oauth.AssertionAudiences leaves that endpoint out, so a device client
// built on that rule cannot start the device flow (invalid_client, 401).
func TestAttack18bDeviceAuthorizationAudience(t *testing.T) {
	esKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&esKey.PublicKey)
	pubFile := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startOIDCHTTPSite(t, fmt.Sprintf(`
		client tvjwt {
			token_endpoint_auth_method private_key_jwt
			public_key k1 {
				algorithm ES256
				key_file %s
			}
			grant_types urn:ietf:params:oauth:grant-type:device_code
			scopes openid
			authorization_policy one_factor
		}
`, pubFile))
	da := s.issuer + "/api/oidc/device-authorization"
	status, out := postForm(t, s.hc, da, withAssertion(url.Values{"client_id": {"tvjwt"}, "scope": {"openid"}}, assertion(t, "tvjwt", esKey, "ES256", "k1", da, nil)), "")
	if status != http.StatusOK || out["device_code"] == nil {
		t.Errorf("an assertion whose aud is the device authorization endpoint: %d %v", status, out)
	}
}
