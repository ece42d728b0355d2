package portal

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// pageData is what every page template gets.
type pageData struct {
	Title       string
	CSRF        string
	Error       string
	Notice      string
	RD          string // the return URL, carried through the forms
	RM          string
	Username    string
	RememberMe  bool // show the box
	User        *users.User
	Session     *session.Session
	TOTP        *totp.DeviceInfo
	Keys        []webauthn.Credential
	HasTOTP     bool // TOTP is enabled
	HasKeys     bool // WebAuthn is enabled
	Enrolment   *totp.Enrolment
	QR          template.URL
	OTPAuth     template.URL // the enrolment's otpauth:// URI, which html/template would refuse
	Next        string       // for the password confirmation
	NeedsFirst  bool         // the second-factor page of a user with no device yet
	Consent     *consentView // the consent page
	Action      string       // the sign-out form's target for an application's sign-out request
	Hidden      map[string]string
	ClientName  string   // the application asking to sign out
	FormAction  []string // origins a form on the page may end up at (an application's redirect)
	Consents    []consentItem
	HasConsents bool // remembered consents are kept
}

func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, page string, d *pageData) {
	t := p.pages[page]
	d.CSRF = p.csrfToken(w, r)
	extra := d.FormAction
	if d.RD != "" && p.cfg.FormActionFor != nil {
		extra = append(extra, p.cfg.FormActionFor(d.RD)...)
	}
	if len(extra) > 0 {
		// the page's form leads, through redirects, to an application: Chrome checks every hop
		w.Header().Set("Content-Security-Policy", p.cspWithFormAction(extra))
	}
	d.HasTOTP, d.HasKeys = p.cfg.TOTP != nil, p.cfg.WebAuthn != nil
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
	"signed-out":        "You are signed out.",
	"consent-withdrawn": "The application will ask for your consent again.",
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

// signInPage shows the sign-in form, or sends a signed-in browser on.
func (p *Portal) signInPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rd := p.safeRedirect(q.Get("rd"))
	if _, sess, _ := p.current(r); sess != nil && q.Get("prompt") != "login" {
		if rd != "" {
			redirect(w, r, rd)
			return
		}
		redirect(w, r, p.base+PathSettings)
		return
	}
	p.render(w, r, http.StatusOK, "signin", &pageData{Title: "Sign in", RD: rd, RM: q.Get("rm"), RememberMe: p.cfg.RememberMe > 0, Notice: notices[q.Get("notice")]})
}

// signIn checks the form: a new session (a new id) on success.
func (p *Portal) signIn(w http.ResponseWriter, r *http.Request) {
	username := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	rd := p.safeRedirect(r.PostFormValue("rd"))
	remember := r.PostFormValue("remember_me") != "" && p.cfg.RememberMe > 0
	again := &pageData{Title: "Sign in", RD: rd, RM: r.PostFormValue("rm"), Username: username, RememberMe: p.cfg.RememberMe > 0}
	if username == "" || password == "" {
		again.Error = "Enter your username and password."
		p.render(w, r, http.StatusBadRequest, "signin", again)
		return
	}
	ip := p.cfg.ClientIP(r)
	err := p.cfg.CheckPassword(r.Context(), username, password, ip)
	if r.Context().Err() != nil {
		return // the browser left; the attempt counted all the same
	}
	if errors.Is(err, ErrBadCredentials) {
		again.Error = "Incorrect username or password."
		p.render(w, r, http.StatusUnauthorized, "signin", again)
		return
	} else if err != nil {
		p.unavailable(w, r)
		return
	}
	u, ok := p.cfg.Users().Lookup(username)
	if !ok {
		p.unavailable(w, r)
		return
	}
	// a sign-in always starts a new session: an id planted in the browser before is worth nothing.
	// The session it replaces ends as a sign-out would, with what it authorized (OnSignOut):
	// the new session has another reference, so the replaced one's tokens would otherwise
	// outlive every later sign-out of this browser (a prompt=login sign-in, say).
	if c, err := r.Cookie(p.cfg.CookieName); err == nil {
		_ = p.endSession(c.Value)
	}
	id, sess, err := p.cfg.Sessions.Create(u.Name, session.OneFactor, remember)
	if err != nil {
		p.cfg.Logger.Error("portal: starting a session", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.setSession(w, id, sess)
	p.cfg.Logger.Info("signed in", zap.String("user", u.Name), zap.String("factor", "password"), zap.String("remote_ip", ip), zap.Bool("remember_me", sess.RememberMe))
	if rd != "" {
		redirect(w, r, rd)
		return
	}
	redirect(w, r, p.afterSignIn())
}

// secondFactorPage asks for a TOTP code or a security key.
func (p *Portal) secondFactorPage(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	_, sess, u := p.current(r)
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, rd))
		return
	}
	d := &pageData{Title: "Second factor", RD: rd, User: u, Session: sess}
	p.devices(u, d)
	d.NeedsFirst = d.TOTP == nil && len(d.Keys) == 0
	p.render(w, r, http.StatusOK, "secondfactor", d)
}

// devices fills in the user's devices.
func (p *Portal) devices(u *users.User, d *pageData) {
	if p.cfg.TOTP != nil {
		if info, err := p.cfg.TOTP.Info(u.Name); err == nil {
			d.TOTP = info
		}
	}
	if p.cfg.WebAuthn != nil {
		if keys, err := p.cfg.WebAuthn.List(u.Name); err == nil {
			d.Keys = keys
		}
	}
}

func (p *Portal) hasSecondFactor(u *users.User) bool {
	d := &pageData{}
	p.devices(u, d)
	return d.TOTP != nil || len(d.Keys) > 0
}

// elevate records a second factor: the session moves to a new id at level two.
func (p *Portal) elevate(w http.ResponseWriter, id string, u *users.User, factor, ip string) bool {
	newID, sess, err := p.cfg.Sessions.ElevateWith(id, session.TwoFactor, factor)
	if err != nil {
		p.cfg.Logger.Error("portal: elevating a session", zap.Error(err))
		return false
	}
	p.setSession(w, newID, sess)
	p.cfg.Logger.Info("second factor accepted", zap.String("user", u.Name), zap.String("factor", factor), zap.String("remote_ip", ip))
	return true
}

// checkTOTP checks a code from the second-factor page.
func (p *Portal) checkTOTP(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.PostFormValue("rd"))
	id, sess, u := p.current(r)
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, rd))
		return
	}
	if p.cfg.TOTP == nil {
		http.NotFound(w, r)
		return
	}
	addr := p.clientAddr(r)
	fail := func(msg string) {
		d := &pageData{Title: "Second factor", RD: rd, User: u, Session: sess, Error: msg}
		p.devices(u, d)
		p.render(w, r, http.StatusUnauthorized, "secondfactor", d)
	}
	attempt, allowed := p.begin(u.Name, addr)
	if !allowed {
		p.cfg.Logger.Info("second factor refused", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("reason", "banned"), zap.String("remote_ip", addr.String()))
		p.observe("totp", "banned", nil)
		fail("That code is not right. Wait for a new one and try again.")
		return
	}
	err := p.cfg.TOTP.Check(u.Name, strings.ReplaceAll(r.PostFormValue("code"), " ", ""), p.cfg.Now())
	if err != nil {
		reason := "wrong code"
		switch {
		case errors.Is(err, totp.ErrReplayed):
			reason = "code already used"
		case errors.Is(err, totp.ErrNoDevice):
			reason = "no device"
		case !errors.Is(err, totp.ErrWrongCode):
			p.cfg.Logger.Error("portal: checking a TOTP code", zap.Error(err))
			p.unavailable(w, r)
			return
		}
		p.cfg.Logger.Info("second factor refused", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("reason", reason), zap.String("remote_ip", addr.String()))
		p.observe("totp", "failure", attempt)
		fail("That code is not right. Wait for a new one and try again.")
		return
	}
	attempt.Succeeded()
	p.observe("totp", "success", nil)
	if !p.elevate(w, id, u, "totp", addr.String()) {
		p.unavailable(w, r)
		return
	}
	if rd != "" {
		redirect(w, r, rd)
		return
	}
	redirect(w, r, p.afterSignIn())
}

// begin starts a regulated second-factor attempt: false when the user at addr is banned. The
// attempt is never nil (without a regulator it does nothing).
func (p *Portal) begin(user string, addr netip.Addr) (*regulation.Attempt, bool) {
	if p.cfg.Regulator == nil {
		return &regulation.Attempt{}, true
	}
	a, ok := p.cfg.Regulator.BeginSecondFactor(user, addr)
	if a == nil {
		a = &regulation.Attempt{}
	}
	return a, ok
}

// observe reports a second factor checked to OnSecondFactor.
func (p *Portal) observe(factor, result string, a *regulation.Attempt) {
	if p.cfg.OnSecondFactor != nil {
		p.cfg.OnSecondFactor(factor, result, a != nil && a.Banned)
	}
}

// writeJSON answers the WebAuthn script.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// jsonError is what the WebAuthn script shows.
func jsonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (p *Portal) webauthnLoginOptions(w http.ResponseWriter, r *http.Request) {
	id, _, u, ok := p.webauthnSession(w, r)
	if !ok {
		return
	}
	opts, err := p.cfg.WebAuthn.BeginLogin(u.Name, p.ceremonyKey(id))
	if errors.Is(err, webauthn.ErrNoDevice) {
		jsonError(w, http.StatusBadRequest, "You have no security key registered.")
		return
	} else if err != nil {
		p.cfg.Logger.Error("portal: starting a WebAuthn sign-in", zap.Error(err))
		jsonError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(opts)
}

func (p *Portal) webauthnLoginVerify(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	id, _, u, ok := p.webauthnSession(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		jsonError(w, http.StatusBadRequest, "The answer was too large.")
		return
	}
	addr := p.clientAddr(r)
	attempt, allowed := p.begin(u.Name, addr)
	if !allowed {
		p.observe("webauthn", "banned", nil)
		jsonError(w, http.StatusUnauthorized, "The security key was not accepted.")
		return
	}
	if err := p.cfg.WebAuthn.FinishLogin(u.Name, p.ceremonyKey(id), body); err != nil {
		p.cfg.Logger.Info("second factor refused", zap.String("user", u.Name), zap.String("factor", "webauthn"), zap.String("reason", err.Error()), zap.String("remote_ip", addr.String()))
		p.observe("webauthn", "failure", attempt)
		jsonError(w, http.StatusUnauthorized, "The security key was not accepted.")
		return
	}
	attempt.Succeeded()
	p.observe("webauthn", "success", nil)
	if !p.elevate(w, id, u, "webauthn", addr.String()) {
		jsonError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	to := rd
	if to == "" {
		to = p.afterSignIn()
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": to})
}

// settingsPage is the signed-in page: who, how, the devices, and sign-out.
func (p *Portal) settingsPage(w http.ResponseWriter, r *http.Request) {
	_, sess, u := p.current(r)
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, p.localURL(PathSettings)))
		return
	}
	d := &pageData{Title: "Your account", User: u, Session: sess, Notice: notices[r.URL.Query().Get("notice")]}
	p.devices(u, d)
	if p.cfg.Consents != nil {
		grants, err := p.cfg.Consents.List(u.Name, p.cfg.Now())
		if err != nil {
			p.unavailable(w, r)
			return
		}
		d.HasConsents = true
		for _, g := range grants {
			name := g.ClientID
			if p.cfg.ClientName != nil {
				name = p.cfg.ClientName(g.ClientID)
			}
			d.Consents = append(d.Consents, consentItem{ID: g.ID, Client: name, Scopes: strings.Join(g.Scopes, " "), Expires: g.ExpiresAt})
		}
	}
	p.render(w, r, http.StatusOK, "settings", d)
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
	if _, err := p.cfg.Consents.Withdraw(u.Name, r.PostFormValue("id")); err != nil {
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("consent withdrawn", zap.String("user", u.Name), zap.String("remote_ip", p.cfg.ClientIP(r)))
	redirect(w, r, p.base+PathSettings+"?notice=consent-withdrawn")
}

// fresh makes sure the session may change devices: the password given within five minutes,
// and, for a user who has a second factor, that factor too. Otherwise it answers (a password
// confirmation, or the second-factor page) and returns false.
func (p *Portal) fresh(w http.ResponseWriter, r *http.Request, sess *session.Session, u *users.User, back string) bool {
	now := p.cfg.Now()
	if now.Sub(sess.PasswordAt) > freshness {
		p.render(w, r, http.StatusOK, "confirm", &pageData{Title: "Confirm it is you", User: u, Next: back})
		return false
	}
	if p.hasSecondFactor(u) && (sess.Level < session.TwoFactor || now.Sub(sess.SecondFactorAt) > freshness) {
		redirect(w, r, p.base+PathSecondFactor+"?rd="+url.QueryEscape(p.localURL(back)))
		return false
	}
	return true
}

// deviceChange is the start of every page that adds or removes a device: the browser's session
// (else the sign-in page, coming back to back), the factor enabled (else 404), and the session
// fresh enough (else the password confirmation or the second-factor page). ok is false when it
// has answered.
func (p *Portal) deviceChange(w http.ResponseWriter, r *http.Request, back string, enabled bool) (string, *session.Session, *users.User, bool) {
	id, sess, u := p.current(r)
	switch {
	case sess == nil:
		redirect(w, r, p.withRD(PathSignIn, p.localURL(back)))
		return "", nil, nil, false
	case !enabled:
		http.NotFound(w, r)
		return "", nil, nil, false
	case !p.fresh(w, r, sess, u, back):
		return "", nil, nil, false
	}
	return id, sess, u, true
}

// settingsReturn is a portal settings path a confirmation may go back to.
func (p *Portal) settingsReturn(next string) string {
	switch next {
	case pathTOTPEnrol, pathKeyRegister, PathSettings:
		return next
	}
	return PathSettings
}

// confirmPassword records the password again before a device change.
func (p *Portal) confirmPassword(w http.ResponseWriter, r *http.Request) {
	id, sess, u := p.current(r)
	next := p.settingsReturn(r.PostFormValue("next"))
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, p.localURL(next)))
		return
	}
	err := p.cfg.CheckPassword(r.Context(), u.Name, r.PostFormValue("password"), p.cfg.ClientIP(r))
	if errors.Is(err, ErrBadCredentials) {
		p.render(w, r, http.StatusUnauthorized, "confirm", &pageData{Title: "Confirm it is you", User: u, Next: next, Error: "Incorrect password."})
		return
	} else if err != nil {
		p.unavailable(w, r)
		return
	}
	newID, sess, err := p.cfg.Sessions.ConfirmPassword(id)
	if err != nil {
		p.unavailable(w, r)
		return
	}
	p.setSession(w, newID, sess)
	redirect(w, r, p.base+next)
}

// totpEnrolPage shows a new secret as a QR code and a URI, and asks for a code from it.
func (p *Portal) totpEnrolPage(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	id, sess, u, ok := p.deviceChange(w, r, pathTOTPEnrol, p.cfg.TOTP != nil)
	if !ok {
		return
	}
	e, err := p.cfg.TOTP.StartEnrolment(u.Name, p.ceremonyKey(id))
	if err != nil {
		p.cfg.Logger.Error("portal: starting a TOTP enrolment", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.render(w, r, http.StatusOK, "totp", &pageData{Title: "Add an authenticator app", User: u, Session: sess, RD: rd, Enrolment: e,
		QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QR)), OTPAuth: template.URL(e.URI)})
}

// totpEnrol confirms an enrolment with a code from the new device.
func (p *Portal) totpEnrol(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.PostFormValue("rd"))
	id, sess, u, ok := p.deviceChange(w, r, pathTOTPEnrol, p.cfg.TOTP != nil)
	if !ok {
		return
	}
	err := p.cfg.TOTP.FinishEnrolment(u.Name, p.ceremonyKey(id), strings.ReplaceAll(r.PostFormValue("code"), " ", ""), p.cfg.Now())
	switch {
	case errors.Is(err, totp.ErrWrongCode):
		p.render(w, r, http.StatusBadRequest, "error", &pageData{Title: "That code is not right", Error: "The code did not match the new secret. Scan the QR code again and enter the code your app shows now.", Next: p.withRD(pathTOTPEnrol, rd)})
		return
	case errors.Is(err, totp.ErrNoEnrolment):
		redirect(w, r, p.withRD(pathTOTPEnrol, rd))
		return
	case err != nil:
		p.cfg.Logger.Error("portal: saving a TOTP device", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("second factor added", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("remote_ip", p.cfg.ClientIP(r)))
	if rd != "" && sess.Level < session.TwoFactor {
		redirect(w, r, p.withRD(PathSecondFactor, rd))
		return
	}
	redirect(w, r, p.base+PathSettings+"?notice=totp-added")
}

func (p *Portal) totpRemove(w http.ResponseWriter, r *http.Request) {
	_, _, u, ok := p.deviceChange(w, r, PathSettings, p.cfg.TOTP != nil)
	if !ok {
		return
	}
	if err := p.cfg.TOTP.Remove(u.Name); err != nil && !errors.Is(err, totp.ErrNoDevice) {
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("second factor removed", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("remote_ip", p.cfg.ClientIP(r)))
	redirect(w, r, p.base+PathSettings+"?notice=totp-removed")
}

// keyRegisterPage shows the security-key registration (the script runs the ceremony).
func (p *Portal) keyRegisterPage(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	_, sess, u, ok := p.deviceChange(w, r, pathKeyRegister, p.cfg.WebAuthn != nil)
	if !ok {
		return
	}
	p.render(w, r, http.StatusOK, "webauthn", &pageData{Title: "Add a security key", User: u, Session: sess, RD: rd})
}

// webauthnSession is the session of a request of the WebAuthn script, with WebAuthn enabled;
// otherwise it answers the script (401 or 404) and ok is false.
func (p *Portal) webauthnSession(w http.ResponseWriter, r *http.Request) (string, *session.Session, *users.User, bool) {
	id, sess, u := p.current(r)
	if sess == nil {
		jsonError(w, http.StatusUnauthorized, "Your session has ended. Sign in again.")
		return "", nil, nil, false
	}
	if p.cfg.WebAuthn == nil {
		jsonError(w, http.StatusNotFound, "Security keys are not enabled.")
		return "", nil, nil, false
	}
	return id, sess, u, true
}

// deviceSession is the session of a JSON device request that may change devices.
func (p *Portal) deviceSession(w http.ResponseWriter, r *http.Request) (string, *session.Session, *users.User, bool) {
	id, sess, u, ok := p.webauthnSession(w, r)
	if !ok {
		return "", nil, nil, false
	}
	now := p.cfg.Now()
	if now.Sub(sess.PasswordAt) > freshness || (p.hasSecondFactor(u) && (sess.Level < session.TwoFactor || now.Sub(sess.SecondFactorAt) > freshness)) {
		jsonError(w, http.StatusForbidden, "Confirm it is you again: reload the page.")
		return "", nil, nil, false
	}
	return id, sess, u, true
}

func (p *Portal) keyRegisterOptions(w http.ResponseWriter, r *http.Request) {
	id, _, u, ok := p.deviceSession(w, r)
	if !ok {
		return
	}
	opts, err := p.cfg.WebAuthn.BeginRegistration(u.Name, u.DisplayName, p.ceremonyKey(id))
	if err != nil {
		p.cfg.Logger.Error("portal: starting a WebAuthn registration", zap.Error(err))
		jsonError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(opts)
}

func (p *Portal) keyRegisterVerify(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	id, sess, u, ok := p.deviceSession(w, r)
	if !ok {
		return
	}
	var in struct {
		Name       string          `json:"name"`
		Credential json.RawMessage `json:"credential"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in.Credential) == 0 {
		jsonError(w, http.StatusBadRequest, "The browser's answer could not be read.")
		return
	}
	cred, err := p.cfg.WebAuthn.FinishRegistration(u.Name, u.DisplayName, p.ceremonyKey(id), in.Name, in.Credential)
	if err != nil {
		p.cfg.Logger.Info("security key not registered", zap.String("user", u.Name), zap.String("reason", err.Error()))
		jsonError(w, http.StatusBadRequest, "The security key could not be registered. Try again.")
		return
	}
	p.cfg.Logger.Info("second factor added", zap.String("user", u.Name), zap.String("factor", "webauthn"), zap.String("name", cred.Name), zap.String("remote_ip", p.cfg.ClientIP(r)))
	to := p.base + PathSettings + "?notice=key-added"
	if rd != "" && sess.Level < session.TwoFactor {
		to = p.withRD(PathSecondFactor, rd)
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": to})
}

func (p *Portal) keyRemove(w http.ResponseWriter, r *http.Request) {
	_, _, u, ok := p.deviceChange(w, r, PathSettings, p.cfg.WebAuthn != nil)
	if !ok {
		return
	}
	err := p.cfg.WebAuthn.Remove(u.Name, r.PostFormValue("id"))
	if err != nil && !errors.Is(err, webauthn.ErrNoDevice) {
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("second factor removed", zap.String("user", u.Name), zap.String("factor", "webauthn"), zap.String("remote_ip", p.cfg.ClientIP(r)))
	redirect(w, r, p.base+PathSettings+"?notice=key-removed")
}

// signOutPage asks to confirm (a link cannot sign anyone out).
func (p *Portal) signOutPage(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	_, sess, u := p.current(r)
	if sess == nil {
		p.render(w, r, http.StatusOK, "signedout", &pageData{Title: "Signed out", RD: rd})
		return
	}
	p.render(w, r, http.StatusOK, "signout", &pageData{Title: "Sign out", User: u, Session: sess, RD: rd})
}

// endSession ends the session of id and tells OnSignOut.
func (p *Portal) endSession(id string) error {
	sess, err := p.cfg.Sessions.Get(id)
	if err := p.cfg.Sessions.End(id); err != nil {
		return err
	}
	if err == nil && p.cfg.OnSignOut != nil && sess.Ref() != "" {
		p.cfg.OnSignOut(sess.User, sess.Ref())
	}
	return nil
}

// signOut ends the session on the server and removes the cookie.
func (p *Portal) signOut(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.PostFormValue("rd"))
	if c, err := r.Cookie(p.cfg.CookieName); err == nil {
		if sess, err := p.cfg.Sessions.Get(c.Value); err == nil {
			p.cfg.Logger.Info("signed out", zap.String("user", sess.User), zap.String("remote_ip", p.cfg.ClientIP(r)))
		}
		if err := p.endSession(c.Value); err != nil {
			p.unavailable(w, r)
			return
		}
	}
	p.clearSession(w)
	if rd != "" {
		redirect(w, r, rd)
		return
	}
	redirect(w, r, p.base+PathSignIn+"?notice=signed-out")
}
