package portal

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"
)

// This file is the portal's side of the hand-off to further cookie domains (the protocol is in
// session/handoff.go): the gate of a site under such a domain sends a browser here with a signed
// start; with a live session (after a sign-in, and a second factor when the site asks for one)
// the portal mints a one-time code and sends the browser to the gate's reserved path with it.

// Handoff is the portal's part of the hand-off to further cookie domains.
type Handoff struct {
	// Domains are the further cookie domains (example.org), none of them the issuer's.
	Domains []string
	// Key checks the gates' signed starts (session.SignBegin).
	Key []byte
	// Codes keeps the one-time codes.
	Codes *session.Handoffs
	// GatePath is the gates' reserved path where a code is redeemed.
	GatePath string
}

// Paths of the hand-off's pages.
const (
	// PathHandoff is where a gate of a further cookie domain sends a browser without a session.
	PathHandoff = "/handoff"
	// PathHandoffFailed is the page a gate sends a browser to when it refuses a hand-off code.
	PathHandoffFailed = "/handoff/failed"
)

// handoffDomain is the further cookie domain covering host (lower case), or "".
func (p *Portal) handoffDomain(host string) string {
	if p.cfg.Handoff == nil {
		return ""
	}
	for _, d := range p.cfg.Handoff.Domains {
		if host == d || strings.HasSuffix(host, "."+d) {
			return d
		}
	}
	return ""
}

// handoff answers a gate's signed start: a one-time code for the browser's session, on its way
// to the gate that asked, or first the sign-in (and the second factor) that gives it a session.
func (p *Portal) handoff(w http.ResponseWriter, r *http.Request) {
	h := p.cfg.Handoff
	if h == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	rd, binding, level, sig := q.Get("rd"), q.Get("b"), q.Get("l"), q.Get("sig")
	exp, _ := strconv.ParseInt(q.Get("exp"), 10, 64)
	u, _ := url.Parse(p.safeRedirect(rd))
	domain := ""
	if u != nil && u.Host != "" {
		domain = p.handoffDomain(strings.ToLower(u.Hostname()))
	}
	if domain == "" || len(binding) != 43 || (level != "1" && level != "2") || !session.CheckBegin(h.Key, rd, binding, level, exp, sig, p.cfg.Now()) {
		p.cfg.Logger.Info("hand-off refused: a start that no gate signed, or too old", zap.String("remote_ip", p.cfg.ClientIP(r)))
		p.handoffFailed(w, r, p.safeRedirect(rd))
		return
	}
	self := p.localURL(PathHandoff) + "?" + url.Values{"rd": {rd}, "b": {binding}, "l": {level}, "exp": {q.Get("exp")}, "sig": {sig}}.Encode()
	id, sess, _ := p.current(r)
	switch {
	case sess == nil:
		redirect(w, r, p.base+PathSignIn+"?rd="+url.QueryEscape(self))
		return
	case level == "2" && sess.Level < session.TwoFactor:
		redirect(w, r, p.base+PathSecondFactor+"?rd="+url.QueryEscape(self))
		return
	}
	code, err := h.Codes.Mint(r.Context(), &session.Handoff{Domain: domain, Binding: binding, Origin: session.IDHash(id), Session: *sess})
	if err != nil {
		p.cfg.Logger.Error("portal: minting a hand-off code", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("session handed off to another cookie domain", zap.String("user", sess.User), zap.String("domain", domain), zap.String("remote_ip", p.cfg.ClientIP(r)))
	target := url.URL{Scheme: u.Scheme, Host: u.Host, Path: h.GatePath, RawQuery: url.Values{"code": {code}, "rd": {rd}}.Encode()}
	w.Header().Set("Referrer-Policy", "no-referrer")
	redirect(w, r, target.String())
}

// handoffFailed is the page of a refused hand-off, with a way back to rd ("" for none).
func (p *Portal) handoffFailed(w http.ResponseWriter, r *http.Request, rd string) {
	p.render(w, r, http.StatusBadRequest, "error", &pageData{Title: "This sign-in link has expired",
		Error: "This sign-in link has expired or was already used — go back and try again.", Next: rd})
}
