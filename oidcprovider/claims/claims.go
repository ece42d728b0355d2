// Package claims builds the OpenID Connect claims a user's granted scopes release, the
// authentication methods references (amr) of a sign-in, and keeps each user's subject
// identifier (sub) in the store.
//
// The claims per scope are Authelia's (its default claims strategy): profile, email, phone,
// address and groups. Which of them go into the ID token besides the userinfo response is the
// caller's choice; FilterIDToken applies a per-client claims policy.
package claims

import (
	"slices"
	"strings"

	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// Scope names with claims or meaning to the provider.
const (
	ScopeOpenID        = "openid"
	ScopeOfflineAccess = "offline_access"
	ScopeProfile       = "profile"
	ScopeEmail         = "email"
	ScopeAddress       = "address"
	ScopePhone         = "phone"
	ScopeGroups        = "groups"
)

// ScopesSupported lists the scopes the provider understands, for discovery's
// scopes_supported. Callers must not modify it.
var ScopesSupported = []string{
	ScopeOpenID, ScopeOfflineAccess, ScopeProfile, ScopeEmail, ScopeAddress, ScopePhone, ScopeGroups,
}

// protocolClaims are the claims of the ID token that no scope releases (OpenID Connect Core
// §2 and §3.1.3.6), plus Authelia's rat (requested-at) of the userinfo response.
var protocolClaims = []string{
	"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "jti",
	"at_hash", "c_hash", "sid", "rat",
}

// scopeClaims lists, per scope, every claim it can release, in the order the OpenID Connect
// specification lists them.
var scopeClaims = map[string][]string{
	ScopeProfile: {
		"name", "given_name", "family_name", "middle_name", "nickname", "preferred_username",
		"profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale",
	},
	ScopeEmail:   {"email", "email_verified", "alt_emails"},
	ScopePhone:   {"phone_number", "phone_number_verified"},
	ScopeAddress: {"address"},
	ScopeGroups:  {"groups"},
}

// Supported lists every claim the provider can serve, for discovery's claims_supported: the
// protocol claims and those of every scope in ScopesSupported. Callers must not modify it.
var Supported = func() []string {
	all := slices.Clone(protocolClaims)
	for _, scope := range ScopesSupported {
		all = append(all, scopeClaims[scope]...)
	}
	return all
}()

// ClaimsOf returns the claims scope can release (nil for a scope without claims, such as
// openid), for a consent page that explains what a scope shares.
func ClaimsOf(scope string) []string { return slices.Clone(scopeClaims[scope]) }

// ForScopes returns the claims of u that scopes release, as Authelia does:
//
//   - profile: name (the display name) and preferred_username (the username) always; given_name,
//     family_name, middle_name, nickname, profile, picture, website, gender, birthdate, zoneinfo
//     and locale when set. updated_at is never released: the users file does not record when a
//     user changed.
//   - email: email (the first address), email_verified (true: Authelia asserts the addresses of
//     its users file are verified) and alt_emails (the other addresses, only when there are
//     some). Nothing for a user without an address.
//   - phone: phone_number in RFC 3966 form (";ext=" and the extension when one is set) and
//     phone_number_verified (false), only when the user has a number.
//   - address: address, an object with formatted and the parts that are set, only when the user
//     has an address with at least one part.
//   - groups: groups, the user's groups ([] for none).
//
// Other scopes (openid, offline_access, unknown ones) release nothing. The map is new and
// belongs to the caller; a nil user releases nothing.
func ForScopes(u *users.User, scopes []string) map[string]any {
	out := map[string]any{}
	if u == nil {
		return out
	}
	for _, scope := range dedupe(scopes) {
		switch scope {
		case ScopeProfile:
			addProfile(out, u)
		case ScopeEmail:
			addEmail(out, u)
		case ScopePhone:
			if u.Profile.PhoneNumber != "" {
				out["phone_number"] = phoneRFC3966(u.Profile.PhoneNumber, u.Profile.PhoneExtension)
				out["phone_number_verified"] = false
			}
		case ScopeAddress:
			if a := address(u.Profile.Address); a != nil {
				out["address"] = a
			}
		case ScopeGroups:
			groups := make([]string, len(u.Groups))
			copy(groups, u.Groups)
			out["groups"] = groups
		}
	}
	return out
}

func dedupe(scopes []string) []string {
	seen := make(map[string]bool, len(scopes))
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func addProfile(out map[string]any, u *users.User) {
	name := u.DisplayName
	if name == "" {
		name = u.Name
	}
	out["name"] = name
	out["preferred_username"] = u.Name
	p := u.Profile
	for _, f := range []struct{ claim, value string }{
		{"given_name", p.GivenName},
		{"family_name", p.FamilyName},
		{"middle_name", p.MiddleName},
		{"nickname", p.Nickname},
		{"profile", p.Profile},
		{"picture", p.Picture},
		{"website", p.Website},
		{"gender", p.Gender},
		{"birthdate", p.Birthdate},
		{"zoneinfo", p.ZoneInfo},
		{"locale", p.Locale},
	} {
		if f.value != "" {
			out[f.claim] = f.value
		}
	}
}

func addEmail(out map[string]any, u *users.User) {
	if len(u.Emails) == 0 {
		return
	}
	out["email"] = u.Emails[0]
	out["email_verified"] = true
	if len(u.Emails) > 1 {
		out["alt_emails"] = slices.Clone(u.Emails[1:])
	}
}

// phoneRFC3966 appends the extension as RFC 3966's ext parameter, as Authelia does.
func phoneRFC3966(number, ext string) string {
	if ext == "" {
		return number
	}
	return number + ";ext=" + ext
}

// address is the address claim (OpenID Connect Core §5.1.1): the parts that are set, and
// formatted, the parts joined for display: the street address, then locality, region and
// postal code on one line, then the country, one line each.
func address(a *users.Address) map[string]any {
	if a == nil {
		return nil
	}
	out := map[string]any{}
	var lines []string
	if a.StreetAddress != "" {
		out["street_address"] = a.StreetAddress
		lines = append(lines, a.StreetAddress)
	}
	var middle []string
	for _, f := range []struct{ claim, value string }{
		{"locality", a.Locality}, {"region", a.Region}, {"postal_code", a.PostalCode},
	} {
		if f.value != "" {
			out[f.claim] = f.value
			middle = append(middle, f.value)
		}
	}
	if len(middle) > 0 {
		lines = append(lines, strings.Join(middle, " "))
	}
	if a.Country != "" {
		out["country"] = a.Country
		lines = append(lines, a.Country)
	}
	if len(lines) == 0 {
		return nil
	}
	out["formatted"] = strings.Join(lines, "\n")
	return out
}

// FilterIDToken returns the claims of all whose names are in allowed: a client's claims policy
// keeps the ID token minimal and leaves the rest to userinfo. A nil allowed keeps every claim;
// an empty non-nil one keeps none. It is meant for the scoped claims that ForScopes returns;
// the protocol claims (iss, sub, aud, …) are the caller's and are not filtered here. The map is
// new; the values are shared with all.
func FilterIDToken(all map[string]any, allowed []string) map[string]any {
	out := make(map[string]any, len(all))
	for k, v := range all {
		if allowed == nil || slices.Contains(allowed, k) {
			out[k] = v
		}
	}
	return out
}

// Authentication methods references (RFC 8176) that AMR returns.
const (
	AMRPassword     = "pwd"  // a password
	AMROTP          = "otp"  // a one-time password (TOTP)
	AMRHardwareKey  = "hwk"  // proof of possession of a hardware-secured key (WebAuthn)
	AMRUserPresence = "user" // a user presence test (every WebAuthn assertion the portal accepts)
	AMRPIN          = "pin"  // the authenticator verified the user (WebAuthn UV: PIN or biometric)
	AMRMultiFactor  = "mfa"  // two factors: a password and a second factor, or a passkey with user verification
)

// AMR returns the amr claim of a sign-in, in Authelia's order: pwd when a password was
// checked; otp for a TOTP code; for a WebAuthn assertion hwk and user (its user-presence flag,
// which every assertion the portal accepts carries), then pin when the authenticator also
// verified the user (userVerified; ignored without webauthn); and mfa last when two factors
// were used: a password and a second factor (TOTP or WebAuthn), or a WebAuthn assertion with
// user verification alone, which proves possession of the key and a PIN or biometric (RFC 8176
// section 2: a passkey sign-in). So a password and a TOTP code give ["pwd", "otp", "mfa"], and a
// passkey alone ["hwk", "user", "pin", "mfa"]. (Authelia counts only the password as a knowledge
// factor and has no passkey sign-in.) It returns nil when no method was used; the caller then
// leaves amr out.
func AMR(password, totp, webauthn bool, userVerified bool) []string {
	var amr []string
	if password {
		amr = append(amr, AMRPassword)
	}
	if totp {
		amr = append(amr, AMROTP)
	}
	if webauthn {
		amr = append(amr, AMRHardwareKey, AMRUserPresence)
		if userVerified {
			amr = append(amr, AMRPIN)
		}
	}
	if (password && (totp || webauthn)) || (webauthn && userVerified) {
		amr = append(amr, AMRMultiFactor)
	}
	return amr
}
