package oidcprovider

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
or 4096; ES256, ES384, ES512. An existing file is left alone unless --force is given.

To rotate, list the new key first and keep the old one with 'retired' (it stays in the JWKS and
signs nothing) until the longest access-token or ID-token lifespan has passed; then remove it.`,
		func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out is required: the file to write the key to")
			}
			pemData, key, err := keys.Generate(alg, bits)
			if err != nil {
				return usageError{err}
			}
			if err := writeKeyFile(out, pemData, force); err != nil {
				return err
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

// writeKeyFile writes a private key to path with mode 0600. The key goes to a new file in the
// same directory first (created exclusively, so nothing else can hold it open), which then takes
// path's place: by hard link when path must not exist, by rename with force. A symlink or another
// user's file at path is replaced, never written through, and nobody holding the old file open
// reads the new key.
func writeKeyFile(path string, data []byte, force bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".keygen-*.pem")
	if err != nil {
		return fmt.Errorf("writing the key: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing the key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing the key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing the key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the key: %w", err)
	}
	if force {
		if err := os.Rename(name, path); err != nil {
			return fmt.Errorf("writing the key: %w", err)
		}
		return nil
	}
	if err := os.Link(name, path); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; choose another file or pass --force to replace it", path)
	} else if err != nil {
		return fmt.Errorf("writing the key: %w", err)
	}
	return nil
}
