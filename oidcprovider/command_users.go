package oidcprovider

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// usersEditNote ends the help of every command that edits the users file.
const usersEditNote = `
Only the entry's lines change: comments, blank lines, the other users, key order and quoting stay
byte for byte. The file is replaced atomically (a temporary file beside it, with its owner and
mode, renamed over it) and only once the result reads back as a valid users file. A running
server checks the file every 2 seconds and takes the change by itself: no reload is needed.`

// usersPasswordNote describes where the password comes from and how it is hashed.
const usersPasswordNote = `
The password is read from a prompt (twice, without echo) when standard input is a terminal, and
otherwise from standard input (its first line); it is never taken from the command line. Its
digest is made as 'caddy oidc hash' makes it, with the same flags and Authelia's defaults
(argon2id, 3 iterations, 64 MiB, parallelism 4).`

func usersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Edit the users file: add people, change passwords, disable, list",
		Long: `Edits the users file (Authelia's users_database.yml; users_file in the Caddyfile) in place.

  caddy oidc users add <name> --file users.yml [--displayname D] [--email E]... [--group G]...
                                                [digest flags | --no-password]
  caddy oidc users passwd <name> --file users.yml [digest flags]
  caddy oidc users disable <name> --file users.yml [--enable]
  caddy oidc users enable <name> --file users.yml
  caddy oidc users list --file users.yml [--json]
  caddy oidc users totp add|remove <name> [--file users.yml] [admin flags]   (on the running server)
  caddy oidc users keys remove <name> [--file users.yml] [admin flags]       (on the running server)
  caddy oidc users invite <name> [--lifespan 72h] [--revoke] [admin flags]   (on the running server)

The digest flags are those of 'caddy oidc hash' (--algorithm argon2id by default); the password is
read from a prompt or standard input, never from the command line.
` + usersEditNote,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				fmt.Fprintf(c.ErrOrStderr(), "caddy oidc users: unknown command %q\n\n%s", args[0], c.UsageString())
				os.Exit(exitUsage)
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error {
			_ = c.Help()
			os.Exit(exitUsage)
			return nil
		},
	}
	cmd.AddCommand(usersAddCommand(), usersPasswdCommand(), usersDisableCommand("disable"),
		usersDisableCommand("enable"), usersListCommand(), usersTOTPCommand(), usersKeysCommand(), usersInviteCommand())
	return cmd
}

// userCommand builds a users subcommand that takes the user's name as its one argument.
func userCommand(name, short, long string, body func(cmd *cobra.Command, user string) error) *cobra.Command {
	cmd := subcommand("users "+name, short, long, func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return usagef("the user's name is required: caddy oidc users %s <name> --file users.yml", name)
		case len(args) > 1:
			return usagef("unexpected argument %q (one user at a time)", args[1])
		}
		return body(cmd, args[0])
	})
	cmd.Use = name + " <name>"
	cmd.Args = cobra.ArbitraryArgs
	return cmd
}

// usersFileFlag adds --file to cmd.
func usersFileFlag(cmd *cobra.Command, file *string) {
	cmd.Flags().StringVarP(file, "file", "f", "", "the users file, users_file in the Caddyfile (required)")
}

// hashFlags adds the digest flags of `caddy oidc hash` to cmd.
func hashFlags(cmd *cobra.Command, o *hashOptions) {
	f := cmd.Flags()
	f.StringVarP(&o.algorithm, "algorithm", "a", "argon2id", "argon2id, pbkdf2-sha512 (or pbkdf2), scrypt or bcrypt")
	f.StringVar(&o.variant, "variant", "", "the algorithm's variant (argon2: id, i, d; pbkdf2: sha512, sha384, sha256, sha224, sha1; bcrypt: standard, sha256)")
	f.IntVarP(&o.iterations, "iterations", "i", 0, "iterations (argon2 t, pbkdf2 rounds, scrypt log2 N)")
	f.IntVarP(&o.memory, "memory", "m", 0, "argon2 memory in KiB")
	f.IntVarP(&o.parallelism, "parallelism", "p", 0, "argon2 or scrypt parallelism")
	f.IntVarP(&o.keySize, "key-size", "k", 0, "argon2, pbkdf2 or scrypt key size in bytes")
	f.IntVarP(&o.saltSize, "salt-size", "s", 0, "salt size in bytes")
	f.IntVarP(&o.blockSize, "block-size", "r", 0, "scrypt block size")
	f.IntVarP(&o.cost, "cost", "c", 0, "bcrypt cost")
}

// requireFile is the usage error for a missing --file.
func requireFile(file string) error {
	if file == "" {
		return usagef("--file is required: the users file (users_file in the Caddyfile)")
	}
	return nil
}

// readUsersFile reads the users file; a missing one reads as users.EmptyFile when create is set.
func readUsersFile(file string, create bool) ([]byte, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) && create {
		return []byte(users.EmptyFile), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the users file: %w", err)
	}
	return data, nil
}

// usersError makes a name the file does not hold, and an invalid name or value, usage errors.
func usersError(err error) error {
	if errors.Is(err, users.ErrNoSuchUser) || errors.Is(err, users.ErrInvalid) {
		return usageError{err}
	}
	return err
}

// checkHashFlags refuses digest flags newHasher refuses, or whose cost the users file refuses.
func checkHashFlags(o hashOptions) error {
	if _, err := newHasher(o); err != nil {
		return usageError{err}
	}
	if err := users.CheckCost(costPreview(o)); err != nil {
		return usageError{fmt.Errorf("the digest flags: %w", err)}
	}
	return nil
}

// readPasswordDigest reads a password as hash does and returns its digest, checked the way the
// users file is read.
func readPasswordDigest(cmd *cobra.Command, o hashOptions) (string, error) {
	if err := checkHashFlags(o); err != nil {
		return "", err
	}
	hasher, err := newHasher(o)
	if err != nil {
		return "", usageError{err}
	}
	password, err := readSecret(cmd.InOrStdin(), cmd.ErrOrStderr())
	if err != nil {
		return "", err
	}
	if strings.EqualFold(o.algorithm, "bcrypt") && len(password) > bcryptMaxSecret {
		return "", usagef("bcrypt reads only the first %d bytes of a password, so this %d-byte one would match any password that starts the same; use a shorter one or another algorithm", bcryptMaxSecret, len(password))
	}
	d, err := hasher.Hash(password)
	if err != nil {
		return "", fmt.Errorf("hashing the password: %w", err)
	}
	digest := d.Encode()
	if err := users.CheckCost(digest); err != nil {
		return "", usageError{fmt.Errorf("the digest flags: %w", err)}
	}
	if ok, err := verifyDigest(digest, password); err != nil || !ok {
		return "", fmt.Errorf("the digest does not verify (%v): please report this", err)
	}
	return digest, nil
}

// costPreview writes the cost parameters the flags ask for as a digest's prefix, for
// users.CheckCost to refuse before a costly hash is made (the defaults are newHasher's).
func costPreview(o hashOptions) string {
	or := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	switch alg := strings.ToLower(o.algorithm); {
	case strings.HasPrefix(alg, "argon2"):
		return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$", or(o.memory, 65536), or(o.iterations, 3), or(o.parallelism, 4))
	case strings.HasPrefix(alg, "pbkdf2"):
		return fmt.Sprintf("$pbkdf2-sha512$%d$", or(o.iterations, 310000))
	case alg == "scrypt":
		return fmt.Sprintf("$scrypt$ln=%d,r=%d,p=%d$", or(o.iterations, 16), or(o.blockSize, 8), or(o.parallelism, 1))
	case alg == "bcrypt":
		return fmt.Sprintf("$2b$%d$", or(o.cost, 12))
	}
	return ""
}

func usersAddCommand() *cobra.Command {
	var (
		file string
		u    users.NewUser
		o    hashOptions
	)
	cmd := userCommand("add", "Add a person to the users file",
		`Adds an entry for <name> at the end of the users file, indented as its other entries are, with
the password's digest and the given display name, emails and groups. A name the file holds, or
one that differs from one it holds only in case, is refused. A missing file is created (mode
0600).
`+usersPasswordNote+`

With --no-password no password is asked for and the entry has no password key: a passkey-only
person, whom no password matches (at the portal or in Basic credentials at a gate). They sign in
with a passkey, added through an enrolment link ('caddy oidc users invite') or a session; they
may set a password later. Authelia's own loader requires the key, so such a file is Portcullis's
alone.
`+usersEditNote+`

Example:
  caddy oidc users add john --file /etc/caddy/users.yml --displayname "John Doe" \
    --email john@example.com --group admins --group dev
  caddy oidc users add pat --file /etc/caddy/users.yml --no-password --email pat@example.com`,
		func(cmd *cobra.Command, name string) error {
			if err := requireFile(file); err != nil {
				return err
			}
			u.Name = name
			if u.NoPassword {
				for _, f := range []string{"algorithm", "variant", "iterations", "memory", "parallelism", "key-size", "salt-size", "block-size", "cost"} {
					if cmd.Flags().Changed(f) {
						return usagef("--%s hashes a password, and --no-password gives none; leave one out", f)
					}
				}
			} else if err := checkHashFlags(o); err != nil {
				return err
			}
			data, err := readUsersFile(file, true)
			if err != nil {
				return err
			}
			if err := users.CheckNewUser(data, u); err != nil {
				return usersError(fmt.Errorf("%s: %w", file, err))
			}
			if !u.NoPassword {
				if u.Digest, err = readPasswordDigest(cmd, o); err != nil {
					return err
				}
			}
			if _, err := users.EditFile(file, true, func(data []byte) ([]byte, error) { return users.AddUser(data, u) }); err != nil {
				return usersError(fmt.Errorf("%s: %w", file, err))
			}
			if u.NoPassword {
				fmt.Fprintf(cmd.OutOrStdout(), "Added %s to %s, without a password: they sign in with a passkey\n", name, file)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Added %s to %s\n", name, file)
			return nil
		})
	usersFileFlag(cmd, &file)
	f := cmd.Flags()
	f.StringVar(&u.DisplayName, "displayname", "", "the display name (default: the name)")
	f.StringArrayVar(&u.Emails, "email", nil, "an email address, the first one primary (repeat for more)")
	f.StringArrayVar(&u.Groups, "group", nil, "a group (repeat for more)")
	f.BoolVar(&u.NoPassword, "no-password", false, "add a person without a password, who signs in with a passkey")
	hashFlags(cmd, &o)
	return cmd
}

func usersPasswdCommand() *cobra.Command {
	var (
		file string
		o    hashOptions
	)
	cmd := userCommand("passwd", "Change a person's password in the users file",
		`Replaces the password digest of <name> (exactly as the file writes it) with the digest of a new
password; only that value changes, in the quoting it had.
`+usersPasswordNote+"\n"+usersEditNote+`

Example:
  caddy oidc users passwd john --file /etc/caddy/users.yml`,
		func(cmd *cobra.Command, name string) error {
			if err := requireFile(file); err != nil {
				return err
			}
			if err := checkHashFlags(o); err != nil {
				return err
			}
			data, err := readUsersFile(file, false)
			if err != nil {
				return err
			}
			if err := users.CheckUser(data, name); err != nil {
				return usersError(fmt.Errorf("%s: %w", file, err))
			}
			digest, err := readPasswordDigest(cmd, o)
			if err != nil {
				return err
			}
			if _, err := users.EditFile(file, false, func(data []byte) ([]byte, error) { return users.SetPassword(data, name, digest) }); err != nil {
				return usersError(fmt.Errorf("%s: %w", file, err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Changed the password of %s in %s\n", name, file)
			return nil
		})
	usersFileFlag(cmd, &file)
	hashFlags(cmd, &o)
	return cmd
}

// usersDisableCommand builds `users disable` (with --enable) or `users enable`.
func usersDisableCommand(verb string) *cobra.Command {
	var (
		file   string
		enable bool
	)
	short, long := "Disable a person in the users file", `Sets disabled: true for <name> (exactly as the file writes it): the person can no longer sign
in, and their tokens can no longer be refreshed. The value changes in place, or the key is added
as the entry's first. With --enable, or as 'caddy oidc users enable', sets disabled: false (a
person without the key is enabled already, and the file is left as it is).`
	if verb == "enable" {
		short, long = "Enable a disabled person in the users file", `Sets disabled: false for <name> (exactly as the file writes it), as 'users disable --enable'
does: the person can sign in again. A person without a disabled: key is enabled already, and the
file is left as it is.`
	}
	cmd := userCommand(verb, short, long+"\n"+usersEditNote+`

Example:
  caddy oidc users `+verb+` john --file /etc/caddy/users.yml`,
		func(cmd *cobra.Command, name string) error {
			if err := requireFile(file); err != nil {
				return err
			}
			disabled := verb == "disable" && !enable
			changed, err := users.EditFile(file, false, func(data []byte) ([]byte, error) { return users.SetDisabled(data, name, disabled) })
			if err != nil {
				return usersError(fmt.Errorf("%s: %w", file, err))
			}
			state := map[bool]string{true: "disabled", false: "enabled"}[disabled]
			if !changed {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is %s already; %s is unchanged\n", name, state, file)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is %s in %s\n", name, state, file)
			return nil
		})
	usersFileFlag(cmd, &file)
	if verb == "disable" {
		cmd.Flags().BoolVar(&enable, "enable", false, "enable the person again (disabled: false)")
	}
	return cmd
}

// listedUser is one person as `users list --json` prints them; never the digest.
type listedUser struct {
	Name        string   `json:"name"`
	DisplayName string   `json:"displayname"`
	Emails      []string `json:"emails"`
	Groups      []string `json:"groups"`
	Disabled    bool     `json:"disabled"`
}

func usersListCommand() *cobra.Command {
	var (
		file   string
		asJSON bool
	)
	cmd := subcommand("users list", "List the people of the users file",
		`Lists the people of the users file, sorted by name: display name, emails, groups and whether
they are disabled (never the password digests). The file must read as the server reads it.

Example:
  caddy oidc users list --file /etc/caddy/users.yml --json`,
		func(cmd *cobra.Command, _ []string) error {
			if err := requireFile(file); err != nil {
				return err
			}
			data, err := readUsersFile(file, false)
			if err != nil {
				return err
			}
			db, err := users.Parse(data)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			list := []listedUser{}
			for _, name := range db.Names() {
				u, _ := db.Lookup(name)
				list = append(list, listedUser{Name: u.Name, DisplayName: u.DisplayName, Emails: nonNil(u.Emails),
					Groups: nonNil(u.Groups), Disabled: u.Disabled})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, list)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tDISPLAY NAME\tEMAILS\tGROUPS\tDISABLED")
			dash := func(list []string) string {
				if len(list) == 0 {
					return "-"
				}
				return strings.Join(list, ",")
			}
			for _, u := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.DisplayName, dash(u.Emails), dash(u.Groups),
					map[bool]string{true: "yes", false: "no"}[u.Disabled])
			}
			if err := w.Flush(); err != nil {
				return fmt.Errorf("writing the list: %w", err)
			}
			return nil
		})
	usersFileFlag(cmd, &file)
	cmd.Flags().BoolVar(&asJSON, jsonFlag, false, jsonFlagDoc)
	return cmd
}

func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}
