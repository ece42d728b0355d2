package oidcprovider

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// defaultParameterEntropy is the least length of state and nonce (Authelia's and fosite's 8).
const defaultParameterEntropy = 8

// protocolClaims are in every ID token (or never chosen by a claims policy); listing one in a
// claims policy is a mistake.
var protocolClaims = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "jti", "at_hash", "c_hash", "sid"}

// policyClaims are the claims a claims policy may put in the ID token: those of the scopes
// (profile, email, phone, address, groups) and Authelia's rat.
var policyClaims = []string{
	"name", "given_name", "family_name", "middle_name", "nickname", "preferred_username", "profile", "picture", "website",
	"gender", "birthdate", "zoneinfo", "locale", "updated_at",
	"email", "email_verified", "alt_emails",
	"phone_number", "phone_number_verified",
	"address",
	"groups",
	"rat",
}

// provisionClientOptions checks the provider options the clients refer to or the authorization
// code flow reads: minimum_parameter_entropy, claims_policies and the authorization policy
// names (their rules are compiled by provisionClientPolicies, once the networks are known).
func (a *App) provisionClientOptions() error {
	switch e := a.MinimumParameterEntropy; {
	case e == 0:
		a.MinimumParameterEntropy = defaultParameterEntropy
	case e == -1:
		a.logger.Warn("minimum_parameter_entropy -1 turns off the length check of state and nonce; this is unsafe")
	case e < -1:
		return fmt.Errorf("minimum_parameter_entropy %d: use a length of at least %d, or -1 to turn the check off", e, defaultParameterEntropy)
	case e < defaultParameterEntropy:
		a.logger.Warn("minimum_parameter_entropy below 8 is unsafe", zap.Int("minimum_parameter_entropy", e))
	}
	for name, p := range a.ClaimsPolicies {
		if name == "" {
			return fmt.Errorf("claims_policy: a policy needs a name: claims_policy <name> { id_token email groups }")
		}
		for i, c := range p.IDToken {
			switch {
			case slices.Contains(protocolClaims, c):
				return fmt.Errorf("claims_policy %s: id_token: %s is always in the ID token; list only the claims of scopes, such as email, groups or name", name, c)
			case !slices.Contains(policyClaims, c):
				return fmt.Errorf("claims_policy %s: id_token: unknown claim %q (%s)", name, c, strings.Join(policyClaims, ", "))
			case slices.Contains(p.IDToken[:i], c):
				return fmt.Errorf("claims_policy %s: id_token: %s is listed twice", name, c)
			}
		}
	}
	for name := range a.AuthorizationPolicies {
		switch name {
		case "":
			return fmt.Errorf("authorization_policy: a policy needs a name: authorization_policy <name> { … }")
		case clients.PolicyOneFactor, clients.PolicyTwoFactor, "deny":
			return fmt.Errorf("authorization_policy %s: %s is a built-in policy name; pick another name", name, name)
		}
	}
	return nil
}

// clientSettings are the provider settings the clients' options are checked against.
func (a *App) clientSettings() clients.ProviderSettings {
	s := clients.ProviderSettings{EnablePKCEPlainChallenge: a.EnablePKCEPlainChallenge}
	for name := range a.AuthorizationPolicies {
		s.AuthorizationPolicies = append(s.AuthorizationPolicies, name)
	}
	for name := range a.ClaimsPolicies {
		s.ClaimsPolicies = append(s.ClaimsPolicies, name)
	}
	sort.Strings(s.AuthorizationPolicies)
	sort.Strings(s.ClaimsPolicies)
	for _, k := range a.fileKeys {
		if k.Retired {
			continue // a client cannot name it: it signs nothing
		}
		s.SigningKeys = append(s.SigningKeys, clients.SigningKey{ID: k.ID, Algorithm: k.Algorithm})
	}
	return s
}

// provisionClientPolicies compiles the authorization_policies against access_control's network
// definitions, beside the built-in one_factor and two_factor.
func (a *App) provisionClientPolicies() error {
	a.clientPolicies = map[string]*accesscontrol.ClientPolicy{
		clients.PolicyOneFactor: accesscontrol.FixedClientPolicy(accesscontrol.OneFactor),
		clients.PolicyTwoFactor: accesscontrol.FixedClientPolicy(accesscontrol.TwoFactor),
	}
	names := make([]string, 0, len(a.AuthorizationPolicies))
	for name := range a.AuthorizationPolicies {
		names = append(names, name)
	}
	sort.Strings(names) // the first mistake reported is the same every time
	for _, name := range names {
		p, err := accesscontrol.CompileClientPolicy(name, a.AuthorizationPolicies[name], a.networks)
		if err != nil {
			return err
		}
		a.clientPolicies[name] = p
	}
	return nil
}

// clientPolicy returns the authorization policy a client's AuthorizationPolicy names: one of the
// provider's authorization_policies, or the built-in one_factor or two_factor (policies without
// rules). ok is false for an unknown name, which provisioning does not let through.
func (a *App) clientPolicy(name string) (*accesscontrol.ClientPolicy, bool) {
	p, ok := a.clientPolicies[name]
	return p, ok
}

// idTokenClaimsPolicies are the claims_policies as the oauth package takes them: policy name →
// the claims the ID token may carry beside the protocol claims.
func (a *App) idTokenClaimsPolicies() map[string][]string {
	if len(a.ClaimsPolicies) == 0 {
		return nil
	}
	out := make(map[string][]string, len(a.ClaimsPolicies))
	for name, p := range a.ClaimsPolicies {
		out[name] = slices.Clone(p.IDToken)
		if out[name] == nil {
			out[name] = []string{}
		}
	}
	return out
}
