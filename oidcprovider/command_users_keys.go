package oidcprovider

import (
	"fmt"

	"github.com/spf13/cobra"
)

// usersKeysCommand builds `caddy oidc users keys`: take away a person's security keys and
// passkeys on the running server.
func usersKeysCommand() *cobra.Command {
	cmd := groupCommand("users keys", "Take a person's security keys and passkeys away on the running server")
	cmd.Use = "keys"
	cmd.Long = `Removes a person's security keys and passkeys on the running server.

  caddy oidc users keys remove <name> [--file users.yml] [admin flags] [--json]

People add and remove their own keys on the account page. The operator removes them all when
one is lost or stolen and the person cannot sign in to remove it (a passkey signs in alone), or
before a name is given to someone else.
` + usersTOTPAdminNote
	cmd.AddCommand(usersKeysRemoveCommand())
	return cmd
}

func usersKeysRemoveCommand() *cobra.Command {
	var (
		file, address, configFile, adapter string
		asJSON                             bool
	)
	return userDeviceCommand("keys", "remove", "Remove every security key and passkey of a person on the running server",
		`Removes every security key and passkey of <name> on the running server and signs out the
person's sessions (with the tokens applications got through them): the keys no longer sign in or
serve as a second factor. The person adds new ones at the portal (or through an enrolment link,
'caddy oidc users invite'). A disabled person's keys may be removed too. A person who has no key
is an error.
`+usersTOTPAdminNote+`

Example:
  caddy oidc users keys remove john --config /etc/caddy/Caddyfile`,
		&file, &address, &configFile, &adapter, &asJSON,
		func(cmd *cobra.Command, name string) error {
			var res keysRemoveRequest
			if err := adminCall(address, configFile, adapter, adminKeysRemove, keysRemoveRequest{User: name}, &res); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed %d security key(s) or passkey(s) of %s and ended %d session(s)\n", res.Removed, res.User, res.SessionsEnded)
			return nil
		})
}
