package portal

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file holds what every page shares: the template data, rendering, the fixed notices
// and redirects. Each flow has its own file: signin.go, secondfactor.go, totp.go, webauthn.go,
// settings.go, consent.go, signout.go, device.go; oidc.go is what the provider's flows call.

// pageData is what every page template gets.
type pageData struct {
	Title      string
	CSRF       string
	Error      string
	Notice     string
	RD         string // the return URL, carried through the forms
	RM         string
	Username   string
	RememberMe bool // show the box
	User       *users.User
	Session    *session.Session
	TOTP       *totp.DeviceInfo
	Keys       []webauthn.Credential
	HasTOTP    bool // TOTP is enabled
	HasKeys    bool // WebAuthn is enabled
	// PasskeyLogin: the sign-in page offers passkeys (button and autofill)
	PasskeyLogin bool
	// Passkey: the registration page adds a passkey, not a security key
	Passkey     bool
	Enrolment   *totp.Enrolment
	QR          template.URL
	OTPAuth     template.URL // the enrolment's otpauth:// URI, which html/template would refuse
	Next        string       // for the password confirmation
	NeedsFirst  bool         // the second-factor page of a user with no device yet
	Consent     *consentView // the consent page
	Device      *deviceView  // the device page
	Action      string       // the sign-out form's target for an application's sign-out request
	Hidden      map[string]string
	ClientName  string   // the application asking to sign out
	FormAction  []string // origins a form on the page may end up at (an application's redirect)
	Consents    []consentItem
	HasConsents bool             // remembered consents are kept
	ForgotURL   string           // the sign-in page's "Forgot password?" link; "" hides it
	Reset       *resetView       // the password reset's pages
	Elevation   *elevationView   // the elevation page
	Invite      *inviteView      // the enrolment link's page
	Providers   []providerButton // the upstream identity providers' buttons
	Links       []linkItem       // the account page's linked identities
	Upstream    string           // the display name of the provider the session came through
}

func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, page string, d *pageData) {
	t := p.pages[page]
	d.CSRF = p.csrfToken(w, r)
	extra := d.FormAction
	if d.RD != "" && p.cfg.FormActionFor != nil {
		extra = append(extra, p.cfg.FormActionFor(r.Context(), d.RD)...)
	}
	if len(extra) > 0 {
		// the page's form leads, through redirects, to an application: Chrome checks every hop
		w.Header().Set("Content-Security-Policy", p.cspWithFormAction(extra))
	}
	d.HasTOTP, d.HasKeys = p.cfg.TOTP != nil, p.cfg.WebAuthn != nil
	d.PasskeyLogin = p.passkeyLogin()
	d.ForgotURL = p.forgotURL()
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", d); err != nil {
		p.cfg.Logger.Error("portal: rendering a page", zap.String("page", page), zap.Error(err))
		http.Error(w, "500 internal server error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// directoryDown is the page for a user directory (LDAP) that cannot be reached: 503, never a
// sign-in that skips it.
func (p *Portal) directoryDown(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "10")
	p.render(w, r, http.StatusServiceUnavailable, "error", &pageData{Title: "Sign-in is unavailable",
		Error: "The directory of users cannot be reached just now, so nobody can be signed in. Try again in a minute; if it lasts, tell the people who run this service."})
}

func (p *Portal) unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	p.render(w, r, http.StatusServiceUnavailable, "error", &pageData{Title: "Try again in a moment", Error: "The sign-in service is busy or restarting. Try again in a few seconds."})
}

// notices are the fixed messages a redirect may ask a page to show (never text from the URL).
var notices = map[string]string{
	"totp-added":        "Your authenticator app is set up.",
	"totp-removed":      "The authenticator app was removed.",
	"key-added":         "Your security key is registered.",
	"key-removed":       "The security key was removed.",
	"passkey-added":     "Your passkey is registered. You can sign in with it alone, and use it as a second factor.",
	"key-renamed":       "The name is changed.",
	"signed-out":        "You are signed out.",
	"consent-withdrawn": "The application will ask for your consent again.",
	"code-sent":         "Code sent. It may take a minute to arrive.",
	"password-changed":  "Your password is changed. Your other sessions and the applications you use are signed out.",
	"password-set":      "Your password is set.",
	"enrolled":          "Your account is set up. Sign in with what you added: your password and second factor, or your passkey.",
	"identity-linked":   "The account is linked: it can sign you in from now on.",
	"identity-unlinked": "The account is unlinked: it no longer signs you in.",
}

func redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// withRD appends the return URL (when safe) to a portal path.
func (p *Portal) withRD(rel, rd string) string {
	if rd = p.safeRedirect(rd); rd == "" {
		return p.base + rel
	}
	return p.base + rel + "?rd=" + url.QueryEscape(rd)
}
