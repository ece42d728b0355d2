package oidcprovider

import (
	"fmt"

	"github.com/spf13/cobra"
)

// usersInviteCommand builds `caddy oidc users invite`: a one-time enrolment link for a person,
// made by the running server, or its revocation.
func usersInviteCommand() *cobra.Command {
	var (
		file, address, configFile, adapter, lifespan string
		asJSON, revoke                               bool
	)
	cmd := userCommand("invite", "Print a one-time link for a person to set up their account",
		`Makes a one-time enrolment link for <name> on the running server and prints it. The person
opens it in a browser, presses Continue, and then sets a password (the current one is not asked
for: they may have none) and adds second factors (an authenticator app, a security key, a
passkey) on their account page, then signs in with them. No mail is needed, so this is how a new
person, or one added with --no-password, gets their first password and devices, and how an
operator hands someone a first device.

The link is a credential: hand it over privately (in person, or over a channel only they read).
It works once, until its lifespan ends (--lifespan, 72h by default, from 5m to 30d); opening it
only shows a page, so a mail or chat previewer that fetches it uses nothing up. A new invite for
the same person revokes their previous link, and --revoke revokes it without a new one; either
also ends the set-up a used link of theirs began (a leaked link's user is cut off). The
server keeps only a keyed digest of the link's token, and logs the invite (the person and the
expiry), never the link.

While the person sets up their account, their browser's session reaches nothing else: not the
protected sites, not the applications. It ends after 30 minutes, or when the link would have
expired, or when they press "Done — sign in".

The person must be in the directory and not disabled.
`+usersTOTPAdminNote+`

Examples:
  caddy oidc users invite john --config /etc/caddy/Caddyfile
  caddy oidc users invite john@example.com --lifespan 7d --file /etc/caddy/users.yml
  caddy oidc users invite john --revoke`,
		func(cmd *cobra.Command, name string) error {
			if file != "" {
				if err := checkUsersFileHolds(file, name, !revoke); err != nil {
					return err
				}
			}
			if revoke && cmd.Flags().Changed("lifespan") {
				return usagef("--lifespan makes no sense with --revoke")
			}
			var res inviteAnswer
			if err := adminCall(address, configFile, adapter, adminInvite, inviteRequest{User: name, Lifespan: lifespan, Revoke: revoke}, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case asJSON:
				return printJSON(out, res)
			case revoke:
				fmt.Fprintf(out, "Revoked the enrolment link of %s.\n", res.User)
				return nil
			}
			replaced := ""
			if res.Replaced {
				replaced = " It replaces the previous link, which no longer works."
			}
			fmt.Fprintf(out, "Enrolment link for %s, valid once until %s:%s\n\n%s\n\n", res.User, res.Expires.UTC().Format("2 Jan 2006 15:04 UTC"), replaced, res.Link)
			fmt.Fprintf(out, "Hand it to %s privately (in person, or over a channel only they read): whoever opens it\n"+
				"can set up this account. They set a password and a second factor, then sign in with them.\n", res.User)
			return nil
		})
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "the users file (users_file in the Caddyfile), checked to hold <name> before the server is asked")
	f.StringVar(&lifespan, "lifespan", "72h", "how long the link works: from 5m to 30d (Caddy's durations: 90m, 72h, 7d)")
	f.BoolVar(&revoke, "revoke", false, "revoke the person's link instead of making one")
	adminFlags(cmd, &address, &configFile, &adapter, &asJSON)
	return cmd
}
