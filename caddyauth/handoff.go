package caddyauth

import (
	"errors"
	"fmt"
	"html"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider"
)

// serveHandoff answers the reserved hand-off path (oidcprovider.HandoffPath) on a site under a
// further cookie domain: it takes the one-time code once, for this domain, from the browser that
// holds the hand-off's nonce cookie, sets the domain's session cookie and sends the browser to
// the return URL (on this domain, never elsewhere). A refused code sends the browser to the
// portal's page that says so. Nothing of this reaches the upstream.
func (g *gate) serveHandoff(w http.ResponseWriter, r *http.Request, o *outcome) error {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		g.app.GateDecided(o.site, "none", "bad_request")
		h.Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("the hand-off path answers GET only"))
	}
	q := r.URL.Query()
	rd := q.Get("rd")
	res, err := g.app.HandoffRedeem(r.Context(), o.t.access.Host, q.Get("code"), rd, r.Header)
	switch {
	case errors.Is(err, oidcprovider.ErrHandoffRefused):
		g.app.GateDecided(o.site, "none", "forbidden")
		g.logger.Info("hand-off refused: the code is unknown, expired, used, for another domain or not this browser's", zap.String("host", o.t.access.Host), zap.String("remote_ip", oidcprovider.ClientIP(r)))
		http.Redirect(w, r, g.app.HandoffFailedURL(rd), http.StatusSeeOther)
		return nil
	case err != nil:
		g.app.GateDecided(o.site, "none", "unavailable")
		h.Set("Retry-After", "1")
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	g.app.GateDecided(o.site, "none", "redirect")
	for _, c := range res.Cookies {
		http.SetCookie(w, c)
	}
	if res.Strict {
		// a SameSite=Strict cookie is not sent on a redirect that ends a navigation begun on
		// the portal's site: a page of this site moves on instead, in a navigation of its own
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'")
		loc := html.EscapeString(res.Location)
		_, _ = fmt.Fprintf(w, "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url=%s\"><title>Signed in</title><a href=\"%s\">Continue</a>\n", loc, loc)
		return nil
	}
	http.Redirect(w, r, res.Location, http.StatusSeeOther)
	return nil
}
