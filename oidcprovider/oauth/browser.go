package oauth

import (
	"context"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// Portal is what the browser side of the flows needs from the sign-in portal: who is signed in,
// where to send a browser to sign in, and the pages it shows. The portal implements it (through
// the oidcprovider package's wiring), so the flows here know nothing of cookies or templates.
type Portal interface {
	// Current is the browser's live sign-in, or nil when it has none.
	Current(r *http.Request) *SignIn
	// SignInURL is the sign-in page that returns to rd (a URL at the issuer) once done; with
	// force it asks for the password even when the browser is signed in (prompt=login, max_age).
	SignInURL(rd string, force bool) string
	// SecondFactorURL is the second-factor page that returns to rd once done.
	SecondFactorURL(rd string) string
	// SignedOutURL is the portal's signed-out page.
	SignedOutURL() string
	// BrowserBinding is a value only this browser presents (given to it now if it has none), to
	// tie an authorization request to the browser that began it.
	BrowserBinding(w http.ResponseWriter, r *http.Request) string
	// CheckCSRF reports whether a form posted to the provider carries the browser's CSRF token
	// and comes from the portal's own origin.
	CheckCSRF(r *http.Request) bool
	// RenderConsent asks the signed-in person whether an application may use their account.
	RenderConsent(w http.ResponseWriter, r *http.Request, c *ConsentPage)
	// RenderSignOut asks the signed-in person to confirm an application's sign-out request.
	RenderSignOut(w http.ResponseWriter, r *http.Request, s *SignOutPage)
	// RenderError shows an error page; msg is shown as is (escaped).
	RenderError(w http.ResponseWriter, r *http.Request, status int, title, msg string)
	// EndSession ends the browser's session and removes its cookie.
	EndSession(w http.ResponseWriter, r *http.Request) error
}

// SignIn is a browser's live sign-in at the portal.
type SignIn struct {
	// Username names the user; Groups are their groups (for the client's authorization policy).
	Username string
	Groups   []string
	// AuthTime is when the user last gave their password.
	AuthTime time.Time
	// TwoFactor marks a sign-in that added a second factor.
	TwoFactor bool
	// AMR are the RFC 8176 authentication methods of the sign-in.
	AMR []string
	// Ref identifies the session (a hash, not the cookie), so signing out ends what it authorized.
	Ref string
}

// ConsentPage is what the consent page shows and posts back to PathConsent.
type ConsentPage struct {
	// Username is the signed-in user asked.
	Username string
	// ClientID and ClientName name the application.
	ClientID, ClientName string
	// Scopes and Audience are what the application asks for.
	Scopes, Audience []string
	// Flow names the saved authorization request the form answers (its "flow" field).
	Flow string
	// Remember, when positive, offers to remember the consent for that long.
	Remember time.Duration
	// FormAction are the origins the answer goes on to (the application's redirect URI).
	FormAction []string
}

// SignOutPage is what the sign-out confirmation shows; its form posts Params to Action.
type SignOutPage struct {
	// Username is the signed-in user.
	Username string
	// ClientName names the application that asks, "" when unknown.
	ClientName string
	// Action is the end_session_endpoint's URL; Params are the request's parameters.
	Action string
	Params url.Values
	// FormAction are the origins the answer goes on to (the post_logout_redirect_uri).
	FormAction []string
}

// Subjects gives each user their sub for a client's sector (pairwise where the client has a
// sector identifier).
type Subjects interface {
	Subject(ctx context.Context, username, sectorID string) (string, error)
}

// Consents are the users' remembered consents (consent_mode pre-configured).
type Consents interface {
	// Find reports a live consent of username to client for exactly these scopes and audience.
	Find(ctx context.Context, username, clientID string, scopes, audience []string, now time.Time) (bool, error)
	// Remember keeps a consent for lifetime.
	Remember(ctx context.Context, username, clientID string, scopes, audience []string, lifetime time.Duration, now time.Time) error
}

// ClientPolicy is the level a client's authorization_policy asks of the signed-in user s for
// request r: accesscontrol.Deny, OneFactor or TwoFactor.
type ClientPolicy func(r *http.Request, c *clients.Client, s *SignIn) accesscontrol.Policy

// FlowConfig is what the browser side of the flows is made of. Every field is required but
// Device.
type FlowConfig struct {
	// Portal is the sign-in portal.
	Portal Portal
	// Subjects, Consents and Policy are the users' subject identifiers, their remembered
	// consents and the clients' authorization policies.
	Subjects Subjects
	Consents Consents
	Policy   ClientPolicy
	// Device renders the /device page of the device authorization grant; without it the page
	// answers 404.
	Device DevicePages
}

// Flow serves the endpoints a browser visits in the flows: authorization (with its sign-in,
// second factor and consent), the consent form's answer, RP-initiated sign-out, and the device
// page of the device authorization grant. The user's claims come from the provider's People,
// which must be set.
type Flow struct {
	p      *Provider
	cfg    FlowConfig
	logger *zap.Logger
	// deviceGuesses counts the wrong user codes typed at /device on this node, in total;
	// guessAlarm is set while the warning that it ran out is fresh.
	deviceGuesses *clients.Limiter
	guessAlarm    atomic.Bool
}

// NewFlow serves the browser side of p's flows through cfg's portal.
func NewFlow(p *Provider, cfg FlowConfig) *Flow {
	return &Flow{p: p, cfg: cfg, logger: p.cfg.Logger, deviceGuesses: newDeviceGuesses()}
}
