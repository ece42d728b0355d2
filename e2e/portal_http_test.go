package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in at the portal with a plain HTTP client, as a browser's form would, and returns
// the session cookie's value ("" when the portal refused) and the status of the answer.
func (p *portalSite) signIn(hc *http.Client, user, password string) (string, int) {
	p.t.Helper()
	resp, err := hc.Get(p.url("auth", "/"))
	if err != nil {
		p.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(page)
	if m == nil {
		p.t.Fatalf("no CSRF field on the sign-in page: %.300s", page)
	}
	var csrf *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "portcullis_session_csrf") {
			csrf = c
		}
	}
	if csrf == nil {
		p.t.Fatal("no CSRF cookie from the sign-in page")
	}
	form := url.Values{"csrf": {string(m[1])}, "username": {user}, "password": {password}}
	req, _ := http.NewRequest("POST", p.url("auth", "/"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", strings.TrimSuffix(p.url("auth", ""), "/"))
	req.AddCookie(csrf)
	resp, err = hc.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "portcullis_session" && c.Value != "" {
			return c.Value, resp.StatusCode
		}
	}
	return "", resp.StatusCode
}

// An operator ends a user's sessions on the running server with caddy oidc sessions end; the
// portal's sign-ins and failures show in the metrics.
func TestSessionsEndAndSignInMetrics(t *testing.T) {
	p := startPortalSite(t)
	hc := p.client()
	first, status := p.signIn(hc, "john", "pw-john")
	if first == "" || status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d, no session", status)
	}
	second, _ := p.signIn(hc, "john", "pw-john")
	if _, status := p.signIn(hc, "john", "wrong"); status != http.StatusUnauthorized {
		t.Errorf("a wrong password: %d, want 401", status)
	}
	for _, s := range []string{first, second} {
		if resp := getWithCookie(t, hc, p.url("secure", "/"), s); resp.StatusCode != http.StatusOK {
			t.Fatalf("a fresh session: %d", resp.StatusCode)
		}
	}
	m := scrape(t, http.DefaultClient, p.admin)
	for series, want := range map[string]float64{
		`portcullis_sign_ins_total{factor="password",result="success",via="portal"}`: 2,
		`portcullis_sign_ins_total{factor="password",result="failure",via="portal"}`: 1,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}

	// a config reload keeps the sessions (the store and its session cache outlive the config)
	cfg, err := os.ReadFile(p.s.config)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://localhost:%d/load", p.admin), strings.NewReader(strings.Replace(string(cfg), "inactivity 5m", "inactivity 6m", 1)))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", err, resp)
	}
	resp.Body.Close()
	// while the configs are swapped a connection may be dropped or answered 503
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest("GET", p.url("secure", "/"), nil)
		req.Header.Set("Accept", "text/html")
		req.AddCookie(&http.Cookie{Name: "portcullis_session", Value: first})
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if (err == nil && resp.StatusCode != http.StatusServiceUnavailable) || time.Now().After(deadline) {
			t.Fatalf("a session after a config reload: %v %v, want 200", resp, err)
		}
	}
	out, errOut, code := command(t, "", "sessions", "end", "--user", "john", "--address", fmt.Sprintf("localhost:%d", p.admin), "--json")
	if code != 0 {
		t.Fatalf("sessions end: exit %d: %s", code, errOut)
	}
	var res struct {
		User  string `json:"user"`
		Ended int    `json:"ended"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.User != "john" || res.Ended != 2 {
		t.Errorf("sessions end answered %q (%v), want john and 2", out, err)
	}
	for _, s := range []string{first, second} {
		if resp := getWithCookie(t, hc, p.url("secure", "/"), s); resp.StatusCode != http.StatusFound {
			t.Errorf("an ended session: %d, want 302 to the portal", resp.StatusCode)
		}
	}
	if _, _, code := command(t, "", "sessions", "end", "--address", fmt.Sprintf("localhost:%d", p.admin)); code != 2 {
		t.Errorf("sessions end without --user: exit %d, want 2", code)
	}
	if strings.Contains(p.s.log.String(), first) || strings.Contains(p.s.log.String(), "pw-john") {
		t.Error("a session id or a password reached the log")
	}
}
