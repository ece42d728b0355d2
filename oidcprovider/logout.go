package oidcprovider

import (
	"errors"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
)

// serveLogout is the end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0). With an
// id_token_hint that names the signed-in user it signs out at once; otherwise it asks the
// person to confirm (a link alone cannot sign anyone out). Afterwards the browser goes to the
// client's registered post_logout_redirect_uri (with state), or to the portal's signed-out
// page.
func (a *App) serveLogout(w http.ResponseWriter, r *http.Request, st *runtimeState) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	default:
		w.Header().Set("Allow", "GET, POST")
		st.portal.RenderError(w, r, http.StatusMethodNotAllowed, "This address takes GET or POST", "Sign out from the application again.")
		return
	}
	if err := r.ParseForm(); err != nil {
		st.portal.RenderError(w, r, http.StatusBadRequest, "This sign-out request cannot be completed", "Its parameters cannot be read.")
		return
	}
	lr, err := st.provider.ParseLogout(r.Context(), r.Form)
	var bad *oauth.ErrLogoutRequest
	if errors.As(err, &bad) {
		st.portal.RenderError(w, r, http.StatusBadRequest, "This sign-out request cannot be completed", bad.Reason)
		return
	} else if err != nil {
		st.portal.RenderError(w, r, http.StatusServiceUnavailable, "Try again in a moment", "The sign-in service is busy or restarting.")
		return
	}
	next := lr.RedirectURI
	if next == "" {
		next = st.portal.SignedOutURL()
	}
	_, sess, u := st.portal.Current(r)
	if sess == nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	confirmed := r.Method == http.MethodPost && st.portal.CheckCSRF(r)
	if !confirmed && lr.Subject != "" {
		sector := ""
		if lr.Client != nil {
			sector = lr.Client.SectorIdentifier()
		}
		if sub, err := st.subjects.Subject(u.Name, sector); err == nil && sub == lr.Subject {
			confirmed = true
		}
	}
	if !confirmed {
		params := url.Values{}
		for _, k := range []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales", "logout_hint"} {
			if v := r.Form.Get(k); v != "" {
				params.Set(k, v)
			}
		}
		name := ""
		var origins []string
		if lr.Client != nil {
			name = lr.Client.Config().Name
		}
		if u, err := url.Parse(lr.RedirectURI); err == nil && u.Host != "" {
			origins = []string{u.Scheme + "://" + u.Host}
		}
		st.portal.RenderSignOut(w, r, u, name, a.issuer+oauth.PathLogout, params, origins)
		return
	}
	if err := st.portal.EndSession(w, r); err != nil {
		st.portal.RenderError(w, r, http.StatusServiceUnavailable, "Try again in a moment", "The sign-in service is busy or restarting.")
		return
	}
	client := ""
	if lr.Client != nil {
		client = lr.Client.ID()
	}
	a.logger.Info("signed out by an application", zap.String("user", u.Name), zap.String("client_id", client))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next, http.StatusSeeOther)
}
