package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// deviceClients are the device clients of the device tests: "tv" (openid, refresh tokens),
// "gatecli" (the gateway scope for the secure site) and "short" (device codes live 3 s).
const deviceClients = `
lifespans {
	custom short {
		device_code 3s
	}
}
client tv {
	name "Living-room TV"
	public true
	grant_types urn:ietf:params:oauth:grant-type:device_code refresh_token
	scopes openid profile offline_access
	authorization_policy one_factor
}
client gatecli {
	name "Deploy CLI"
	public true
	grant_types urn:ietf:params:oauth:grant-type:device_code
	scopes authelia.bearer.authz
	audience https://secure.example.test:{portal_port}/
	authorization_policy one_factor
}
client short {
	public true
	grant_types urn:ietf:params:oauth:grant-type:device_code
	scopes openid
	lifespan short
	authorization_policy one_factor
}
`

// deviceConfig is x/oauth2's device flow for client at the portal site.
func deviceConfig(p *portalSite, client string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{ClientID: client, Scopes: scopes, Endpoint: oauth2.Endpoint{
		DeviceAuthURL: p.url("auth", "/api/oidc/device-authorization"),
		TokenURL:      p.url("auth", "/api/oidc/token"),
		AuthStyle:     oauth2.AuthStyleInParams,
	}}
}

// pollDevice posts one token request for a device code as client, by hand, and returns the
// status and the answer's error code.
func pollDevice(t *testing.T, hc *http.Client, p *portalSite, client, deviceCode string) (int, string) {
	t.Helper()
	resp, err := hc.PostForm(p.url("auth", "/api/oidc/token"), url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {deviceCode}, "client_id": {client}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Error
}

// deviceError is the RFC 6749 error code of x/oauth2's failed device flow.
func deviceError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// The device authorization grant with the built binary: x/oauth2's DeviceAuth and
// DeviceAccessToken (which polls) as the device, chromium as the person, who opens the link,
// checks the code, signs in, reads the consent and allows; the tokens work at userinfo and, for
// a CLI with the gateway scope, at the gate. Refusing gives the device access_denied; a second
// redemption, another client's device code and an expired one are refused; polling too fast
// gets slow_down; wrong user codes lock an address out. The page is photographed in each state.
func TestDeviceFlowInABrowser(t *testing.T) {
	exe := chromiumPath(t)
	p := startPortalSiteWith(t, deviceClients)
	hc := p.client()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)

	// discovery
	resp, err := hc.Get(p.url("auth", "/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if doc["device_authorization_endpoint"] != p.url("auth", "/api/oidc/device-authorization") || !strings.Contains(func() string { b, _ := json.Marshal(doc["grant_types_supported"]); return string(b) }(), "urn:ietf:params:oauth:grant-type:device_code") {
		t.Errorf("discovery: %v, %v", doc["device_authorization_endpoint"], doc["grant_types_supported"])
	}

	tv := deviceConfig(p, "tv", "openid", "profile", "offline_access")
	da, err := tv.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if da.VerificationURI != p.url("auth", "/device") || da.VerificationURIComplete != da.VerificationURI+"?user_code="+da.UserCode || da.Interval != 5 || len(da.UserCode) != 9 {
		t.Errorf("device authorization: %+v", da)
	}
	type result struct {
		tok *oauth2.Token
		err error
	}
	polled := make(chan result, 1)
	wait := func(what string) result {
		t.Helper()
		select {
		case r := <-polled:
			return r
		case <-time.After(30 * time.Second * slow):
			t.Fatalf("%s: the device got no answer within 30 s", what)
			return result{}
		}
	}
	go func() {
		tok, err := tv.DeviceAccessToken(ctx, da)
		polled <- result{tok, err}
	}()

	a := newBrowser(t, exe, "10.0.0.1")
	a.do(chromedp.Navigate(da.VerificationURIComplete))
	if v, _ := chromedp.Run(a.ctx, chromedp.Evaluate[string](`document.getElementById("user_code").value`)); v != da.UserCode {
		t.Errorf("the link filled in %q, want %q", v, da.UserCode)
	}
	a.shoot("device-enter-prefilled")
	a.submit("button[type=submit]")
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/?rd=")) {
		t.Fatalf("after the code at %s, want the sign-in page", loc)
	}
	a.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	a.submit("button[type=submit]")
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/device?flow=")) {
		t.Fatalf("after the sign-in at %s, want the device page", loc)
	}
	body := a.text("main")
	for _, want := range []string{"Allow this device?", "Living-room TV", da.UserCode, "Know who you are", "Stay connected"} {
		if !strings.Contains(body, want) {
			t.Errorf("the consent lacks %q: %q", want, body)
		}
	}
	a.shoot("device-consent")
	select {
	case r := <-polled:
		t.Fatalf("the device got an answer before the person allowed it: %v %v", r.tok, r.err)
	default:
	}
	a.submit("button[value=approve]")
	if !strings.Contains(a.text("main"), "Go back to your device") {
		t.Errorf("after Allow: %q", a.text("main"))
	}
	a.shoot("device-approved")
	first := wait("after the approval")
	if first.err != nil {
		t.Fatalf("DeviceAccessToken: %v", first.err)
	}
	tok := first.tok
	if tok.RefreshToken == "" || tok.Extra("id_token") == nil || !strings.HasPrefix(tok.AccessToken, "portcullis_at_") {
		t.Errorf("tokens: refresh %q, id_token %v", tok.RefreshToken, tok.Extra("id_token"))
	}
	req, _ := http.NewRequest(http.MethodGet, p.url("auth", "/api/oidc/userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("userinfo with the device's token: %v %v", resp, err)
	} else {
		var info map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if info["preferred_username"] != "john" {
			t.Errorf("userinfo %v", info)
		}
	}
	if status, code := pollDevice(t, hc, p, "tv", da.DeviceCode); status != http.StatusBadRequest || code != "invalid_grant" {
		t.Errorf("a second redemption: %d %s, want invalid_grant", status, code)
	}

	// a CLI with the gateway scope: the signed-in person types the code on the bare page, and
	// the token passes the gate
	gate := deviceConfig(p, "gatecli", "authelia.bearer.authz")
	da2, err := gate.DeviceAuth(ctx, oauth2.SetAuthURLParam("audience", p.url("secure", "/")))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		tok, err := gate.DeviceAccessToken(ctx, da2)
		polled <- result{tok, err}
	}()
	a.do(chromedp.Navigate(da2.VerificationURI))
	a.shoot("device-enter")
	a.do(chromedp.SendKeys(chromedp.ID("user_code"), strings.ToLower(strings.ReplaceAll(da2.UserCode, "-", ""))))
	a.submit("button[type=submit]")
	if !strings.Contains(a.text("main"), "Deploy CLI") {
		t.Fatalf("consent for the CLI: %q at %s", a.text("main"), a.location())
	}
	a.submit("button[value=approve]")
	r := wait("the CLI")
	if r.err != nil {
		t.Fatalf("the CLI's DeviceAccessToken: %v", r.err)
	}
	req, _ = http.NewRequest(http.MethodGet, p.url("secure", "/api/deploy"), nil)
	req.Header.Set("Authorization", "Bearer "+r.tok.AccessToken)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the gate with the CLI's token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// refused
	da3, err := tv.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		tok, err := tv.DeviceAccessToken(ctx, da3)
		polled <- result{tok, err}
	}()
	a.do(chromedp.Navigate(da3.VerificationURIComplete))
	a.submit("button[type=submit]")
	a.submit("button[value=deny]")
	if !strings.Contains(a.text("main"), "got nothing") {
		t.Errorf("after Refuse: %q", a.text("main"))
	}
	a.shoot("device-denied")
	if r := wait("refused"); deviceError(r.err) != "access_denied" {
		t.Errorf("the refused device: %v %v, want access_denied", r.tok, r.err)
	}

	// polling too fast, by hand: pending, then slow_down
	da4, err := tv.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status, code := pollDevice(t, hc, p, "tv", da4.DeviceCode); status != http.StatusBadRequest || code != "authorization_pending" {
		t.Errorf("first poll: %d %s", status, code)
	}
	if status, code := pollDevice(t, hc, p, "tv", da4.DeviceCode); status != http.StatusBadRequest || code != "slow_down" {
		t.Errorf("a poll at once after: %d %s, want slow_down", status, code)
	}
	// another client's device code
	if status, code := pollDevice(t, hc, p, "gatecli", da4.DeviceCode); status != http.StatusBadRequest || code != "invalid_grant" {
		t.Errorf("another client's device code: %d %s, want invalid_grant", status, code)
	}
	// expired
	short := deviceConfig(p, "short", "openid")
	da5, err := short.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if da5.Expiry.IsZero() || time.Until(da5.Expiry) > 3*time.Second {
		t.Errorf("short's device code expires %v", da5.Expiry)
	}
	time.Sleep(3500 * time.Millisecond)
	if status, code := pollDevice(t, hc, p, "short", da5.DeviceCode); status != http.StatusBadRequest || code != "expired_token" {
		t.Errorf("an expired device code: %d %s, want expired_token", status, code)
	}

	// wrong user codes from another address: five are told so, then the address is locked out,
	// even for a right code
	g := newBrowser(t, exe, "10.0.0.9")
	wrong := "WDJB-MJHT"
	if wrong == da4.UserCode {
		wrong = "WDJB-MJHK"
	}
	for i := range 5 {
		g.do(chromedp.Navigate(p.url("auth", "/device")), chromedp.SendKeys(chromedp.ID("user_code"), wrong))
		g.submit("button[type=submit]")
		if msg := g.text(".error"); !strings.Contains(msg, "wrong or has expired") {
			t.Fatalf("wrong code %d: %q", i, msg)
		}
		if i == 0 {
			g.shoot("device-wrong-code")
		}
	}
	g.do(chromedp.Navigate(p.url("auth", "/device?user_code="+da4.UserCode)))
	g.submit("button[type=submit]")
	if msg := g.text(".error"); !strings.Contains(msg, "Too many wrong codes") {
		t.Errorf("a right code after five wrong ones: %q", msg)
	}
	g.shoot("device-locked")
	if !strings.Contains(p.s.log.String(), "an address typed too many wrong user codes") {
		t.Error("the lockout was not logged")
	}
	if strings.Contains(p.s.log.String(), da.DeviceCode) || strings.Contains(p.s.log.String(), tok.AccessToken) {
		t.Error("a device code or token reached the log")
	}
}
