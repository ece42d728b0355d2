package oidcprovider

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
)

// keygenResult is what keygen prints with --json.
type keygenResult struct {
	File      string `json:"file"`
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
}

func keygenCommand() *cobra.Command {
	var (
		out, alg   string
		bits       int
		force, asJ bool
	)
	cmd := subcommand("keygen", "Make a signing key for the provider",
		`Writes a new private key as PKCS#8 PEM to --out, readable by its owner only (mode 0600), and
prints the key id the provider derives for it. Use it as

	oidc {
		signing_key {
			algorithm <algorithm>
			key_file <file>
		}
	}

Algorithms: RS256 (default), RS384, RS512, PS256, PS384, PS512 with --bits 2048 (default), 3072
or 4096; ES256, ES384, ES512. An existing file is left alone unless --force is given.`,
		func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out is required: the file to write the key to")
			}
			pemData, key, err := keys.Generate(alg, bits)
			if err != nil {
				return usageError{err}
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(out, flags, 0o600)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s exists; choose another file or pass --force to replace it", out)
			} else if err != nil {
				return fmt.Errorf("writing the key: %w", err)
			}
			// an existing file replaced with --force keeps its mode; a key must not stay readable
			if err := f.Chmod(0o600); err != nil {
				f.Close()
				return fmt.Errorf("writing the key: %w", err)
			}
			if _, err := f.Write(pemData); err != nil {
				f.Close()
				return fmt.Errorf("writing the key: %w", err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return fmt.Errorf("writing the key: %w", err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("writing the key: %w", err)
			}
			res := keygenResult{File: out, KeyID: key.ID, Algorithm: key.Algorithm}
			if asJ {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote %s key to %s\nKey ID: %s\n", res.Algorithm, res.File, res.KeyID)
			return nil
		})
	f := cmd.Flags()
	f.StringVarP(&out, "out", "o", "", "file to write the PEM private key to (required)")
	f.StringVarP(&alg, "algorithm", "a", "RS256", "signing algorithm: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or ES512")
	f.IntVarP(&bits, "bits", "b", 2048, "RSA key size: 2048, 3072 or 4096")
	f.BoolVar(&force, "force", false, "replace --out if it exists")
	f.BoolVar(&asJ, jsonFlag, false, jsonFlagDoc)
	return cmd
}
