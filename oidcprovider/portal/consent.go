package portal

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// This file is consent: the consent page in words for people (shown for the provider's
// authorization flow) and the remembered consents a user withdraws on the signed-in page.

// Consent is what an application asks of a user, for the consent page.
type Consent struct {
	// ClientID and ClientName name the application.
	ClientID, ClientName string
	// Scopes and Audience are what it asks for.
	Scopes, Audience []string
	// Flow names the saved authorization request the form answers.
	Flow string
	// Remember, when positive, offers to remember the consent for that long.
	Remember time.Duration
	// FormAction are the origins the answer goes on to (the application's redirect URI).
	FormAction []string
}

// consentView is what the consent page shows: the request in words for people.
type consentView struct {
	ClientID, ClientName string
	Scopes               []scopeView
	Audience             []string
	Flow                 string
	Remember             string // "1 week"; "" offers no remembering
}

// scopeView is one scope on the consent page.
type scopeView struct {
	// Name is the scope; Description says what it allows; Claims lists what it reveals.
	Name, Description, Claims string
}

// scopeGatewayCall is the gateway's scope (clients.ScopeBearerAuthz, which portal does not
// import for one string; a test keeps the two equal).
const scopeGatewayCall = "authelia.bearer.authz"

// scopeDescriptions say what each scope lets an application do, for the consent page.
var scopeDescriptions = map[string]string{
	"openid":         "Know who you are",
	"profile":        "See your name and profile",
	"email":          "See your email address",
	"groups":         "See the groups you belong to",
	"address":        "See your postal address",
	"phone":          "See your phone number",
	"offline_access": "Stay connected while you are away (refresh tokens)",
	"offline":        "Stay connected while you are away (refresh tokens)",
	scopeGatewayCall: "Call the sites this gateway protects as you",
}

// scopeClaims are the claims each scope reveals, in words, for the consent page.
var scopeClaims = map[string][]string{
	"openid":  {"an account identifier"},
	"profile": {"name", "username", "given and family name", "picture", "locale"},
	"email":   {"email address"},
	"groups":  {"group names"},
	"address": {"postal address"},
	"phone":   {"phone number"},
}

// view puts c in words.
func (c *Consent) view() *consentView {
	v := &consentView{
		ClientID:   c.ClientID,
		ClientName: c.ClientName,
		Audience:   c.Audience,
		Flow:       c.Flow,
		Remember:   humanDuration(c.Remember),
	}
	for _, s := range c.Scopes {
		d, ok := scopeDescriptions[s]
		if !ok {
			d = "Use the scope “" + s + "”"
		}
		v.Scopes = append(v.Scopes, scopeView{Name: s, Description: d, Claims: strings.Join(scopeClaims[s], ", ")})
	}
	return v
}

// humanDuration writes d for people: "1 week", "3 days", "12 hours", else Go's form; "" for
// none.
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d <= 0:
		return ""
	case d%(7*24*time.Hour) == 0:
		return plural(int64(d/(7*24*time.Hour)), "week")
	case d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return plural(int64(d/time.Minute), "minute")
	}
	return d.String()
}

// RenderConsent asks username whether an application may use their account.
func (p *Portal) RenderConsent(w http.ResponseWriter, r *http.Request, username string, c *Consent) {
	p.secureHeaders(w)
	p.render(w, r, http.StatusOK, "consent", &pageData{Title: "Allow access?", User: p.named(username), Consent: c.view(), FormAction: c.FormAction})
}

// consentItem is a remembered consent on the signed-in page.
type consentItem struct {
	ID, Client, Scopes string
	Expires            time.Time
}

// consentWithdraw withdraws one of the user's remembered consents: the application will ask
// again.
func (p *Portal) consentWithdraw(w http.ResponseWriter, r *http.Request) {
	_, sess, u := p.current(r)
	if sess == nil || p.cfg.Consents == nil {
		redirect(w, r, p.withRD(PathSignIn, p.localURL(PathSettings)))
		return
	}
	if _, err := p.cfg.Consents.Withdraw(r.Context(), u.Name, r.PostFormValue("id")); err != nil {
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("consent withdrawn", zap.String("user", u.Name), zap.String("remote_ip", p.cfg.ClientIP(r)))
	redirect(w, r, p.base+PathSettings+"?notice=consent-withdrawn")
}
