package oidcprovider

import (
	"fmt"

	"github.com/portcullis-auth/portcullis/accesscontrol"
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
