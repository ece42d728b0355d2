package oidcprovider

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/boombuler/barcode/qr"
	"github.com/spf13/cobra"

	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// usersTOTPAdminNote ends the help of the commands that ask the running server for a device.
const usersTOTPAdminNote = `
The devices are in the server's store (Badger is locked by the running server, and PostgreSQL
may be shared by several), so the command asks the running server through its admin API, as
'caddy oidc sessions end' does. The admin address is found as 'caddy reload' finds it:
--address, else the admin address of --config, else Caddy's default (localhost:2019). <name> is
a username (in any letter case) or a mail address, as at the sign-in page; the directory's
spelling of the name is used. With --file, the users file is checked to hold <name> first.`

// usersTOTPCommand builds `caddy oidc users totp`: add and remove a person's TOTP device on the
// running server.
func usersTOTPCommand() *cobra.Command {
	cmd := groupCommand("users totp", "Give a person a TOTP device, or take it away, on the running server")
	cmd.Use = "totp"
	cmd.Long = `Adds or removes a person's authenticator app (TOTP device) on the running server.

  caddy oidc users totp add <name> [--file users.yml] [--force] [--invert] [admin flags] [--json]
  caddy oidc users totp remove <name> [--file users.yml] [admin flags] [--json]

With a notifier, people add their first device themselves at the portal, after a code sent to
them. Without one, the operator adds it with 'totp add' and hands the QR code or URI over.
` + usersTOTPAdminNote
	cmd.AddCommand(usersTOTPAddCommand(), usersTOTPRemoveCommand())
	return cmd
}

// userDeviceCommand builds a `users <group>` subcommand (users totp add, users keys remove) that
// takes the user's name as its one argument, with --file and the admin flags.
func userDeviceCommand(group, verb, short, long string, file, address, configFile, adapter *string, asJSON *bool,
	body func(cmd *cobra.Command, user string) error) *cobra.Command {
	cmd := subcommand("users "+group+" "+verb, short, long, func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return usagef("the user's name is required: caddy oidc users %s %s <name>", group, verb)
		case len(args) > 1:
			return usagef("unexpected argument %q (one user at a time)", args[1])
		}
		if *file != "" {
			if err := checkUsersFileHolds(*file, args[0], verb == "add"); err != nil {
				return err
			}
		}
		return body(cmd, args[0])
	})
	cmd.Use = verb + " <name>"
	cmd.Args = cobra.ArbitraryArgs
	cmd.Flags().StringVarP(file, "file", "f", "", "the users file (users_file in the Caddyfile), checked to hold <name> before the server is asked")
	adminFlags(cmd, address, configFile, adapter, asJSON)
	return cmd
}

// checkUsersFileHolds refuses, as a usage error and without asking the server, a name the users
// file does not hold (as a username in any letter case, or a mail address), or, when enabled is
// set, holds as a disabled user.
func checkUsersFileHolds(file, name string, enabled bool) error {
	data, err := readUsersFile(file, false)
	if err != nil {
		return err
	}
	db, err := users.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	u, err := db.Find(name)
	if errors.Is(err, users.ErrNotFound) {
		return usagef("%s has no user %q (a username, in any letter case, or a mail address): add them first with caddy oidc users add", file, name)
	} else if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if enabled && u.Disabled {
		return usagef("%s: %q is disabled: enable them first with caddy oidc users enable", file, u.Name)
	}
	return nil
}

func usersTOTPAddCommand() *cobra.Command {
	var (
		file, address, configFile, adapter string
		asJSON, force, invert              bool
	)
	cmd := userDeviceCommand("totp", "add", "Give a person a TOTP device and print its QR code, to hand over",
		`Makes a new TOTP secret for <name> on the running server and saves it at once as their device,
with the totp settings of the running config (issuer, algorithm, digits, period), then prints its
otpauth:// URI and the same URI as a QR code drawn in the terminal, for the operator to hand over.

This is how a person gets a first device where no notifier can send the code that an enrolment
at the portal asks for. The QR code and URI are the device's secret: hand them over privately (in
person, or over a channel only they read), never in a ticket or a group chat. The person scans
the code with an authenticator app, and then signs in with their password and the app's code.

The person must be in the directory and not disabled. One who has a device already is refused,
unless --force replaces it (the old device's codes stop working). The server logs the action,
never the secret. 'caddy oidc users totp remove' takes the device away again.

The QR code is drawn with light blocks for a terminal with a dark background; use --invert on a
light one. --json prints {"user", "uri"} instead.
`+usersTOTPAdminNote+`

Example:
  caddy oidc users totp add john --file /etc/caddy/users.yml --config /etc/caddy/Caddyfile`,
		&file, &address, &configFile, &adapter, &asJSON,
		func(cmd *cobra.Command, name string) error {
			var res totpAddAnswer
			if err := adminCall(address, configFile, adapter, adminTOTPAdd, totpAddRequest{User: name, Force: force}, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, struct {
					User string `json:"user"`
					URI  string `json:"uri"`
				}{res.User, res.URI})
			}
			code, err := renderQR(res.URI, invert)
			if err != nil {
				return err
			}
			replaced := ""
			if res.Replaced {
				replaced = " (it replaces the previous one, whose codes no longer work)"
			}
			digits := "6"
			if u, err := url.Parse(res.URI); err == nil && u.Query().Get("digits") != "" {
				digits = u.Query().Get("digits")
			}
			fmt.Fprintf(out, "Added a TOTP device for %s%s.\n\n%s\n%s\n\n", res.User, replaced, code, res.URI)
			fmt.Fprintf(out, "Hand this QR code or URI to %s privately (in person, or over a channel only they read):\n"+
				"anyone who has it can make their codes. Once they have scanned it with an authenticator app,\n"+
				"they sign in with their password and the app's %s-digit code.\n", res.User, digits)
			return nil
		})
	f := cmd.Flags()
	f.BoolVar(&force, "force", false, "replace the person's device if they have one (its codes stop working)")
	f.BoolVar(&invert, "invert", false, "draw the QR code's dark modules, for a terminal with a light background")
	return cmd
}

func usersTOTPRemoveCommand() *cobra.Command {
	var (
		file, address, configFile, adapter string
		asJSON                             bool
	)
	return userDeviceCommand("totp", "remove", "Take a person's TOTP device away on the running server",
		`Removes the TOTP device of <name> on the running server: its codes no longer sign in. A person
who has no other second factor then needs a new device ('caddy oidc users totp add') to reach
two_factor sites. A person who has no device is an error.
`+usersTOTPAdminNote+`

Example:
  caddy oidc users totp remove john --config /etc/caddy/Caddyfile`,
		&file, &address, &configFile, &adapter, &asJSON,
		func(cmd *cobra.Command, name string) error {
			var res totpRemoveRequest
			if err := adminCall(address, configFile, adapter, adminTOTPRemove, totpRemoveRequest{User: name}, &res); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed the TOTP device of %s\n", res.User)
			return nil
		})
}

// qrQuietZone is the light margin around a QR code, in modules (ISO/IEC 18004 asks for 4).
const qrQuietZone = 4

// renderQR draws content as a QR code (error correction level M) in text, two modules per
// character with the Unicode half blocks, quiet zone included. The blocks are the light modules,
// for a terminal that writes light on dark; invert draws the dark ones instead, for dark on light.
func renderQR(content string, invert bool) (string, error) {
	code, err := qr.Encode(content, qr.M, qr.Auto)
	if err != nil {
		return "", fmt.Errorf("drawing the QR code: %w", err)
	}
	n := code.Bounds().Dx()
	size := n + 2*qrQuietZone
	// drawn reports whether the module at x, y of the picture (quiet zone included) is a block
	drawn := func(x, y int) bool {
		if y >= size {
			return false // below the picture (an odd number of rows): the terminal's background
		}
		mx, my := x-qrQuietZone, y-qrQuietZone
		dark := false
		if mx >= 0 && my >= 0 && mx < n && my < n {
			r, _, _, _ := code.At(mx, my).RGBA()
			dark = r < 0x8000
		}
		return dark == invert
	}
	var b strings.Builder
	for y := 0; y < size; y += 2 {
		for x := range size {
			switch top, bottom := drawn(x, y), drawn(x, y+1); {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}
