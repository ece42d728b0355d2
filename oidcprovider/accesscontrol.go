package oidcprovider

import (
	"fmt"
	"slices"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

func (a *App) provisionAccessControl() error {
	cfg := accesscontrol.Config{}
	if a.AccessControl != nil {
		cfg = *a.AccessControl
	}
	a.defaultPol = accesscontrol.Deny
	if cfg.DefaultPolicy != "" {
		p, err := accesscontrol.ParsePolicy(cfg.DefaultPolicy)
		if err != nil {
			return fmt.Errorf("access_control: default_policy: %w", err)
		}
		a.defaultPol = p
	}
	nets, err := accesscontrol.ParseNetworks(cfg.Networks)
	if err != nil {
		return fmt.Errorf("access_control: %w", err)
	}
	a.networks = nets
	rules, err := a.CompileRules(cfg.Rules, "access_control", true)
	if err != nil {
		return err
	}
	a.globalRules = rules
	return nil
}

// CompileRules compiles rules against this app's network definitions and registered clients:
// besides accesscontrol's own checks, every "oauth2:client:<id>" subject must name a registered
// client with the client_credentials grant (only its tokens carry that subject). scope prefixes
// error messages ("access_control" for the global list; "" for a site's rules, whose module Caddy
// already names).
func (a *App) CompileRules(rules []accesscontrol.Rule, scope string, requireDomain bool) (*accesscontrol.RuleSet, error) {
	set, err := accesscontrol.Compile(rules, accesscontrol.CompileOptions{RequireDomain: requireDomain, Networks: a.networks, Scope: scope})
	if err != nil {
		return nil, err
	}
	prefix := ""
	if scope != "" {
		prefix = scope + ": "
	}
	for id, rule := range accesscontrol.SubjectClients(rules) {
		c, ok := a.clients[id]
		if !ok {
			return nil, fmt.Errorf("%s%s: subject: oauth2:client:%s names no registered client; add a 'client %s { … }' block to the oidc option", prefix, rule, id, id)
		}
		if !slices.Contains(c.GetGrantTypes(), clients.GrantClientCredentials) {
			return nil, fmt.Errorf("%s%s: subject: oauth2:client:%s matches only client_credentials tokens, and client %s has no client_credentials grant; match the people who sign in to it with user: or group: subjects, or add client_credentials to its grant_types", prefix, rule, id, id)
		}
	}
	return set, nil
}

// GlobalRules are the compiled global access_control rules.
func (a *App) GlobalRules() *accesscontrol.RuleSet { return a.globalRules }

// DefaultPolicy is the access_control default_policy (deny when not set).
func (a *App) DefaultPolicy() accesscontrol.Policy { return a.defaultPol }
