package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// What an outsider tries against the hand-off, all refused: one code redeemed by many requests
// at once gives one session; the reserved path spelled otherwise is either refused (400) or
// not the gate's (no code taken, nothing upstream for a browser without a session); malformed
// starts and redemptions are never a server error; a return URL off the code's domain, with
// userinfo, another scheme or a backslash, never leaves it; no code is logged.
func TestCookieDomainsAttacksRefused(t *testing.T) {
	p := startCookieDomains(t)
	hc := p.client()
	portal, _ := p.signIn(hc, "john", "pw-john")
	if portal == "" {
		t.Fatal("no session at the portal")
	}
	get := func(method, target, cookies string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, target, nil)
		req.Header.Set("Accept", "text/html")
		if cookies != "" {
			req.Header.Set("Cookie", cookies)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	session := func(resp *http.Response) string {
		for _, c := range resp.Cookies() {
			if c.Name == "net_session" && c.Value != "" {
				return c.Value
			}
		}
		return ""
	}
	var codes []string
	code := func(redeem string) string {
		u, _ := url.Parse(redeem)
		c := u.Query().Get("code")
		codes = append(codes, c)
		return c
	}

	// one code, many requests at once: one session
	nonce, redeem := p.handoffCode(p.at("app.example.net", "/c"), portal)
	code(redeem)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []string
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s := session(get("GET", redeem, nonce)); s != "" {
				mu.Lock()
				won = append(won, s)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 {
		t.Errorf("one code redeemed at once by 16 requests gave %d sessions", len(won))
	}

	// the reserved path spelled otherwise
	for _, c := range []struct {
		path string
		want int // 400 refused; 302 not the gate's (a new hand-off begins); 303 the gate's
	}{
		{"/.portcullis%2fhandoff", 400}, {"/.portcullis%2Fhandoff", 400}, {"/.portcullis/./handoff", 400},
		{"/.portcullis/handoff%00", 400}, {"/.portcullis/handoff%2f", 400},
		{"//.portcullis/handoff", 302}, {"/.Portcullis/handoff", 302}, {"/.portcullis/handoff/", 302}, {"/.portcullis/handoff;x", 302},
		{"/%2eportcullis/handoff", 303},
	} {
		nonce, redeem := p.handoffCode(p.at("app.example.net", "/v"), portal)
		code(redeem)
		hits := p.up.hits.Load()
		resp := get("GET", strings.Replace(redeem, "/.portcullis/handoff", c.path, 1), nonce)
		if resp.StatusCode != c.want || p.up.hits.Load() != hits || (c.want != 303) != (session(resp) == "") {
			t.Errorf("%s: %d %s, session %v, upstream reached %v; want %d", c.path, resp.StatusCode, resp.Header.Get("Location"), session(resp) != "", p.up.hits.Load() != hits, c.want)
		}
		if c.want != 303 {
			if resp := get("GET", redeem, nonce); session(resp) == "" {
				t.Errorf("%s took the code: %d %s", c.path, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
	}

	// malformed starts, failures and redemptions: never a server error
	b := strings.Repeat("a", 43)
	for _, q := range []string{"", "?rd=", "?%zz", "?rd=%ff&b=x&l=1&exp=99999999999999999999&sig=",
		"?rd=javascript:alert(1)&b=" + b + "&l=1&exp=1&sig=x", "?rd=https://app.example.net/&rd=https://evil.example/&b=" + b + "&l=2&exp=-1&sig=%00",
		"?code=" + strings.Repeat("A", 52) + "&code=x&rd=" + strings.Repeat("%2F", 3000)} {
		for _, target := range []string{p.at("auth.example.test", "/handoff"+q), p.at("auth.example.test", "/handoff/failed"+q), p.at("app.example.net", "/.portcullis/handoff"+q)} {
			if resp := get("GET", target, "portcullis_session="+portal); resp.StatusCode >= 500 {
				t.Errorf("%s: %d", target, resp.StatusCode)
			}
		}
	}

	// the return URL given with a code stays on the code's domain
	for _, rd := range []string{"https://evil.example/", "https://app.example.org/", "//evil.example/", `https://evil.example\@app.example.net/`,
		"https://app.example.net@evil.example/", "http://app.example.net/", "javascript:alert(1)//app.example.net", "https://evil.example%2f.example.net/", "https://evil.example#.example.net"} {
		nonce, redeem := p.handoffCode(p.at("app.example.net", "/r"), portal)
		code(redeem)
		resp := get("GET", redeem[:strings.Index(redeem, "&rd=")]+"&rd="+url.QueryEscape(rd), nonce)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || session(resp) == "" || loc == nil || (loc.String() != "/" && (loc.Scheme != "https" || !strings.HasSuffix(loc.Hostname(), ".example.net"))) {
			t.Errorf("rd %q: %d %s", rd, resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	log := p.s.log.String()
	for _, c := range codes {
		if strings.Contains(log, c) {
			t.Errorf("a hand-off code is in the server's log")
		}
	}
	if strings.Contains(log, portal) {
		t.Error("the portal's session id is in the server's log")
	}
}

// A SameSite=Strict further domain in a real browser: the cookie the gate sets on a navigation
// begun at the portal is not sent on that navigation's redirect, so the gate answers with a page
// that moves on by itself; the browser lands on the page asked for, signed in, and the upstream
// sees neither the session nor the nonce cookie.
func TestCookieDomainsStrictInABrowser(t *testing.T) {
	exe := chromiumPath(t)
	p := startCookieDomainsWith(t, "same_site strict")
	a := newBrowser(t, exe, "10.0.0.33")
	a.do(chromedp.Navigate(p.at("app.example.net", `/strict?q="a'<b>`)))
	a.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	a.submit("button[type=submit]")
	a.waitUpstream() // the gate's page moves on by itself
	want := p.at("app.example.net", "/strict?q=%22a%27%3Cb%3E")
	if loc := a.location(); loc != want {
		t.Fatalf("after sign-in at %s, want %s", loc, want)
	}
	hdr := a.upstream()["headers"].(map[string]any)
	if got, _ := hdr["Remote-User"].([]any); len(got) != 1 || got[0] != "john" {
		t.Errorf("upstream Remote-User = %v", hdr["Remote-User"])
	}
	if c := fmt.Sprint(hdr["Cookie"]); strings.Contains(c, "_session") || strings.Contains(c, "handoff") {
		t.Errorf("a session or nonce cookie reached the upstream: %s", c)
	}
	jar, err := chromedp.Call(a.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{p.at("app.example.net", "/")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range jar.Cookies {
		if c.Name == "net_session" && c.SameSite != network.CookieSameSiteStrict {
			t.Errorf("example.net's session cookie: SameSite %s", c.SameSite)
		}
		if strings.Contains(c.Name, "handoff") {
			t.Errorf("the nonce cookie is left: %s", c.Name)
		}
	}
}
