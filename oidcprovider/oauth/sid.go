package oauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// sidOf is the "sid" claim of the portal session ref (session.Ref, kept in Session.BrowserSession):
// the same for every client and every token of one sign-in, so a back-channel logout_token, an ID
// token and a JWT access token of that sign-in name the same session; keyed with the provider's
// HMAC secret, so the claim reveals nothing of the ref kept in the store. "" for "".
func (p *Provider) sidOf(ref string) string {
	if ref == "" {
		return ""
	}
	m := hmac.New(sha256.New, p.cfg.HMACSecret)
	m.Write([]byte("oidc sid\x00"))
	m.Write([]byte(ref))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}
