package oidcprovider

import (
	"fmt"

	"github.com/spf13/cobra"
)

func sessionsCommand() *cobra.Command {
	cmd := groupCommand("sessions", "Act on the running server's sign-in sessions")
	var (
		user, address, configFile, adapter string
		asJSON                             bool
	)
	end := subcommand("sessions end", "End every sign-in session of a user on the running server",
		`Ends every sign-in session of --user on the running server, through its admin API (the
server holds the store, so the command asks it): every site the user reaches with the session
cookie sends them to the sign-in page on their next request. Use it for a stolen laptop or
cookie; to keep the user out, also disable them (caddy oidc users disable).

The admin address is found as 'caddy reload' finds it: --address, else the admin address of
--config, else Caddy's default (localhost:2019).

Example:
  caddy oidc sessions end --user john --config /etc/caddy/Caddyfile`,
		func(cmd *cobra.Command, _ []string) error {
			if user == "" {
				return usagef("--user is required")
			}
			var res endSessionsRequest
			if err := adminCall(address, configFile, adapter, "/oidc/sessions/end", endSessionsRequest{User: user}, &res); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Ended %d session(s) of %s\n", res.Ended, res.User)
			return nil
		})
	f := end.Flags()
	f.StringVar(&user, "user", "", "the username whose sessions end (required)")
	adminFlags(end, &address, &configFile, &adapter, &asJSON)
	cmd.AddCommand(end)
	return cmd
}
