package clients

import (
	"net"
	"net/url"
	"strings"
)

// checkBackchannel checks backchannel_logout_uri and backchannel_logout_session_required
// (OpenID Connect Back-Channel Logout 1.0): an absolute https URI (http only on a loopback
// host: localhost, *.localhost, 127.0.0.0/8, ::1), without a fragment or user info, on a client
// that signs people in (only those get ID tokens, so only those have sessions to end): signsIn
// is true for the authorization_code, implicit and device_code grants. A public
// client may have one: a logout token is signed by the provider and asks nothing of the
// client's credentials, and a public client with a server side (a native app's companion, a
// single-page app's back end) can take it.
func checkBackchannel(cfg *Config, signsIn bool) error {
	fail := func(opt, f string, a ...any) error { return configError(cfg.ID, opt, f, a...) }
	s := cfg.BackchannelLogoutURI
	if s == "" {
		if cfg.BackchannelLogoutSessionRequired {
			return fail("backchannel_logout_session_required", "needs backchannel_logout_uri, the address that receives the logout tokens; add 'backchannel_logout_uri https://app.example.com/backchannel-logout' or remove the option")
		}
		return nil
	}
	if !signsIn {
		return fail("backchannel_logout_uri", "only a client that signs people in (the authorization_code, implicit or device_code grant) gets ID tokens and so has sessions to be told about; add 'grant_types authorization_code' or remove backchannel_logout_uri")
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "":
		return fail("backchannel_logout_uri", "%q is not an absolute URI such as https://app.example.com/backchannel-logout", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fail("backchannel_logout_uri", "%q may not carry a fragment; remove the part from '#'", s)
	case u.User != nil:
		return fail("backchannel_logout_uri", "%q may not carry user info; remove the part before '@' (the logout token is signed, the receiver needs no password)", s)
	case u.Scheme == "https":
	case u.Scheme == "http" && IsLoopbackHost(u.Hostname()):
	case u.Scheme == "http":
		return fail("backchannel_logout_uri", "%q must use https (http only for localhost and loopback addresses); use https://%s%s", s, u.Host, u.RequestURI())
	default:
		return fail("backchannel_logout_uri", "%q must be an https URL such as https://app.example.com/backchannel-logout", s)
	}
	return nil
}

// IsLoopbackHost reports whether h (a URL's host name, without port or brackets) is localhost,
// a name under .localhost, or a loopback address (127.0.0.0/8, ::1): where the issuer, a
// back-channel logout URI and a jwks_uri may use http.
func IsLoopbackHost(h string) bool {
	h = strings.ToLower(h)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// BackchannelLogout is the client's backchannel_logout_uri ("" without one) and whether it
// declared that it needs the session's sid (backchannel_logout_session_required; Portcullis
// sends sid in every logout token either way).
func (c *Client) BackchannelLogout() (uri string, sessionRequired bool) {
	return c.cfg.BackchannelLogoutURI, c.cfg.BackchannelLogoutSessionRequired
}
