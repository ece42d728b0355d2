package oidcprovider

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/portcullis-auth/portcullis/oidcprovider/importauthelia"
)

func importCommand() *cobra.Command {
	var (
		configFile, usersFile, issuer string
		asJSON                        bool
	)
	cmd := subcommand("import-authelia", "Print the Caddyfile equivalent to an Authelia configuration",
		`Reads an Authelia configuration.yml and prints the equivalent Caddyfile: the global oidc block
(issuer, HMAC secret, lifespans, PKCE and PAR policy, authorization and claims policies, clients
with their secret digests unchanged, the access_control networks and rules) and one site block per
domain the rules name, with oidc_auth and a reverse_proxy placeholder to fill in. Authelia's
storage.postgres becomes storage postgres { … }; its password is never written out: the output
reads it from {env.PORTCULLIS_DB_PASSWORD}, or from the secret file Authelia's template names.

Everything it cannot carry over is listed on standard error, one line per key path with the reason
(Duo, password policies and e-mailed checks; custom scopes and claims, CORS, request objects, JWT
client authentication and signed responses other than ID tokens and userinfo, which are not
available yet; signing keys, which Portcullis reads from files). When nothing is listed, the output
passes 'caddy validate'.

Example:
  caddy oidc import-authelia --config /etc/authelia/configuration.yml > Caddyfile`,
		func(cmd *cobra.Command, _ []string) error {
			if configFile == "" {
				return usagef("--config is required: Authelia's configuration.yml")
			}
			data, err := os.ReadFile(configFile)
			if err != nil {
				return fmt.Errorf("reading the Authelia configuration: %w", err)
			}
			res, err := importauthelia.Convert(data, importauthelia.Options{Issuer: issuer})
			if err != nil {
				return err
			}
			if usersFile != "" {
				if _, err := os.Stat(usersFile); err != nil {
					return fmt.Errorf("reading the users file: %w", err)
				}
				res.Leftovers = append(res.Leftovers, importauthelia.Leftover{Path: usersFile, NotNeeded: true,
					Why: "Portcullis reads this file as it is: point users_file at it"})
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprint(cmd.OutOrStdout(), res.Caddyfile)
			for _, l := range res.Leftovers {
				fmt.Fprintln(cmd.ErrOrStderr(), l)
			}
			return nil
		})
	f := cmd.Flags()
	f.StringVarP(&configFile, "config", "c", "", "Authelia's configuration.yml (required)")
	f.StringVar(&usersFile, "users", "", "Authelia's users_database.yml")
	f.StringVar(&issuer, "issuer", "", "the provider's URL (default: Authelia's session cookie authelia_url)")
	f.BoolVar(&asJSON, jsonFlag, false, jsonFlagDoc)
	return cmd
}
