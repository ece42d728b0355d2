package oidcprovider

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/claims"
	"github.com/portcullis-auth/portcullis/oidcprovider/consent"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
)

// deriveKey derives a 32-byte key for one purpose from the provider's secret.
func deriveKey(secret []byte, purpose string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, secret, nil, "portcullis "+purpose+" v1", 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the %s key: %w", purpose, err)
	}
	return k, nil
}

// startPortal builds the sessions, the second-factor devices and the portal on the open store.
func (a *App) startPortal(b *backend, st *runtimeState) error {
	ps := a.portal
	st.sessions = session.NewWithCache(ps.sessions, b.kv, b.sessions)
	cfg := portal.Config{
		Issuer:          a.issuerURL,
		CookieName:      ps.cookieName,
		CookieDomain:    ps.cookieDomain,
		SameSite:        ps.sameSite,
		Secure:          ps.secure,
		RememberMe:      ps.sessions.WithDefaults().RememberMe,
		DefaultRedirect: ps.defaultURL,
		Users:           st.users,
		Notifier:        a.notifier,
		CheckPassword:   a.checkPortalPassword,
		ClientIP:        ClientIP,
		Sessions:        st.sessions,
		Regulator:       st.guard.Regulator(),
		OnSecondFactor: func(factor, result string, banned bool) {
			a.metrics.signIn("portal", factor, result)
			if banned {
				a.metrics.banned()
			}
		},
		Logger:        a.logger.Named("portal"),
		FormActionFor: st.provider.FlowRedirectOrigins,
		OnSignOut: func(ctx context.Context, user, ref string) {
			n, err := st.provider.EndBrowserSession(ctx, ref)
			if err != nil {
				a.logger.Error("ending the tokens of a signed-out session", zap.String("user", user), zap.Error(err))
			} else if n > 0 {
				a.logger.Info("tokens of a signed-out session ended", zap.String("user", user), zap.Int("tokens", n))
			}
		},
		EndUserTokens: st.provider.RevokeUserTokens,
	}
	st.subjects = claims.NewSubjects(b.kv)
	st.consents = consent.NewStore(b.kv)
	cfg.Consents = st.consents
	cfg.ClientName = func(id string) string {
		if c, ok := a.client(id); ok {
			return c.Config().Name
		}
		return id
	}
	var err error
	if cfg.Key, err = deriveKey(st.secret, "portal"); err != nil {
		return err
	}
	if ps.totp != nil {
		sealer, err := totp.NewSealer(st.secret)
		if err != nil {
			return fmt.Errorf("totp: %w", err)
		}
		if cfg.TOTP, err = totp.NewDevices(*ps.totp, b.kv, sealer); err != nil {
			return fmt.Errorf("totp: %w", err)
		}
		st.totp = cfg.TOTP
	}
	if ps.webauthn != nil {
		handles, err := deriveKey(st.secret, "webauthn user handle")
		if err != nil {
			return err
		}
		if cfg.WebAuthn, err = webauthn.New(*ps.webauthn, b.kv, handles); err != nil {
			return fmt.Errorf("webauthn: %w", err)
		}
		cfg.PasskeyLogin = ps.passkeyLogin
		st.webauthn = cfg.WebAuthn
	}
	cfg.PasswordReset = a.portalPasswordReset(b.kv, cfg.Notifier != nil)
	// checked by Provision
	cfg.Elevation, _ = a.IdentityValidation.elevation()
	cfg.Store = b.kv
	if cfg.Handoff, err = a.startHandoffs(b, st); err != nil {
		return err
	}
	if err := a.startFederation(b.kv, st.secret, &cfg); err != nil {
		return err
	}
	if st.portal, err = portal.New(cfg); err != nil {
		return err
	}
	st.flow = a.newFlow(st)
	return nil
}

// checkPortalPassword checks a sign-in at the portal exactly as Basic credentials are checked:
// the same regulation, digest limits and remembered verifications.
func (a *App) checkPortalPassword(ctx context.Context, username, password, ip string) error {
	_, err := a.checkPassword(ctx, username, password, ip, "portal")
	if errors.Is(err, ErrBadCredentials) {
		return fmt.Errorf("%w", portal.ErrBadCredentials)
	}
	return err
}

// servePortal serves a portal page at rel, and reports whether rel was one.
func (a *App) servePortal(w http.ResponseWriter, r *http.Request, rel string) bool {
	if a.directory == nil {
		return false
	}
	st := a.running()
	if st == nil || st.portal == nil {
		// a portal path while the store is closed: 503, as the protocol endpoints answer
		if portalPath(rel) {
			w.Header().Set("Retry-After", "5")
			http.Error(w, "503 service unavailable: the sign-in service is starting or stopping", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	if !st.portal.Handles(rel) {
		return false
	}
	if !st.backend.trusted() {
		storeUnreachable(w, r, st)
		return true
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, oauth.MaxFormBytes)
	}
	st.portal.ServeHTTP(w, r, rel)
	return true
}

// storeUnreachable answers a browser page 503 with Retry-After while the shared store's database
// cannot be reached: the portal and the browser flows read the session there on every request.
func storeUnreachable(w http.ResponseWriter, r *http.Request, st *runtimeState) {
	w.Header().Set("Retry-After", "5")
	st.portal.RenderError(w, r, http.StatusServiceUnavailable, "Try again in a moment", "The sign-in service cannot reach its database. Try again in a few seconds.")
}

// portalPath reports a path the portal would serve, without a running portal.
func portalPath(rel string) bool {
	var p portal.Portal
	return p.Handles(rel)
}
