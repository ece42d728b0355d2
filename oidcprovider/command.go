package oidcprovider

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// The `caddy oidc` command and its subcommands. They are registered from this module package, so
// a binary built with xcaddy has them too. Every subcommand exits 0 on success, 1 when the work
// failed (an unreadable file, a config that does not load) and 2 on a usage error (a bad flag, a
// missing argument); data goes to stdout (as JSON with --json), messages to stderr.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oidc",
		Usage: "<hash|keygen|check-policy|users|tokens|sessions|import-authelia|migrate> [flags]",
		Short: "Portcullis tools: digests, signing keys, access-control checks, users, token and session revocation, Authelia import, migration to PostgreSQL",
		Long: `
Tools for operating the Portcullis OpenID Connect provider and gateway.

  caddy oidc hash          a digest for a client secret or a user password
  caddy oidc keygen        a signing key for the provider (PEM, mode 0600)
  caddy oidc check-policy  what the gateway would decide for a request
  caddy oidc users         add, change, disable and list the people of the users file
  caddy oidc tokens revoke end a client's tokens on the running server
  caddy oidc sessions end  end a user's sign-in sessions on the running server
  caddy oidc import-authelia  the Caddyfile for an Authelia configuration.yml
  caddy oidc migrate       copy a Badger store into PostgreSQL, for more than one node

Run 'caddy oidc <command> --help' for a command's flags.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = func(c *cobra.Command, args []string) error {
				if len(args) > 0 {
					fmt.Fprintf(c.ErrOrStderr(), "caddy oidc: unknown command %q\n\n%s", args[0], c.UsageString())
					os.Exit(exitUsage)
				}
				return nil
			}
			cmd.RunE = func(c *cobra.Command, _ []string) error {
				_ = c.Help()
				os.Exit(exitUsage)
				return nil
			}
			cmd.AddCommand(hashCommand(), keygenCommand(), tokensCommand(), sessionsCommand(), importCommand(), usersCommand(), migrateCommand())
			for _, sub := range subcommands {
				cmd.AddCommand(sub())
			}
		},
	})
}

// subcommands are the oidc subcommands other packages add (the gateway's check-policy).
var subcommands []func() *cobra.Command

// AddCommand adds a subcommand to `caddy oidc`; call it from an init function. The command is
// built when Caddy builds its command tree, after every init has run.
func AddCommand(build func() *cobra.Command) { subcommands = append(subcommands, build) }

// Subcommand builds a `caddy oidc` subcommand with the conventions of the others: stray
// arguments and flag errors exit 2 with the usage, an error from body is printed as
// "caddy oidc <name>: <error>" and exits 1, or 2 when it is a UsageError.
func Subcommand(name, short, long string, body func(cmd *cobra.Command, args []string) error) *cobra.Command {
	return subcommand(name, short, long, body)
}

// UsageError wraps err as the caller's misuse (exit status 2).
func UsageError(err error) error { return usageError{err} }

// PrintJSON writes v as indented JSON, as the subcommands' --json output.
func PrintJSON(w io.Writer, v any) error { return printJSON(w, v) }

// Exit statuses of the oidc subcommands.
const (
	exitFailed  = 1
	exitUsage   = 2
	jsonFlag    = "json"
	jsonFlagDoc = "print the result as JSON"
)

// usageError marks an error as the caller's misuse: exit status 2.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// runCommand adapts a subcommand's body to cobra: it prints an error to stderr as
// "caddy oidc <name>: <error>" and exits with 2 for usage errors and 1 for the others.
func runCommand(name string, body func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := body(cmd, args)
		if err == nil {
			return nil
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "caddy oidc %s: %v\n", name, err)
		if errors.As(err, new(usageError)) {
			os.Exit(exitUsage)
		}
		os.Exit(exitFailed)
		return nil
	}
}

// subcommand builds a cobra command whose flag errors and stray arguments are usage errors.
func subcommand(name, short, long string, body func(cmd *cobra.Command, args []string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name[strings.LastIndexByte(name, ' ')+1:],
		Short: short,
		Long:  long,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q (every input is a flag)", args[0])
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          runCommand(name, body),
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.ErrOrStderr(), "caddy oidc %s: %v\n\n%s", name, err, c.UsageString())
		os.Exit(exitUsage)
		return nil
	})
	// cobra's argument check runs before RunE; route its error through the same exit status.
	args := cmd.Args
	cmd.Args = func(c *cobra.Command, a []string) error {
		if err := args(c, a); err != nil {
			fmt.Fprintf(c.ErrOrStderr(), "caddy oidc %s: %v\n", name, err)
			os.Exit(exitUsage)
		}
		return nil
	}
	return cmd
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
