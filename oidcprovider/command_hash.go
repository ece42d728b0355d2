package oidcprovider

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"strings"

	"github.com/go-crypt/crypt"
	"github.com/go-crypt/crypt/algorithm"
	"github.com/go-crypt/crypt/algorithm/argon2"
	"github.com/go-crypt/crypt/algorithm/bcrypt"
	"github.com/go-crypt/crypt/algorithm/pbkdf2"
	"github.com/go-crypt/crypt/algorithm/scrypt"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// hashOptions are the flags of `caddy oidc hash`, named and defaulted as Authelia's
// `authelia crypto hash generate` names them. A zero number means the algorithm's default.
type hashOptions struct {
	algorithm   string
	variant     string
	iterations  int
	memory      int
	parallelism int
	keySize     int
	saltSize    int
	blockSize   int
	cost        int
	random      bool
	length      int
	charset     string
	json        bool
}

// bcryptMaxSecret is the most bcrypt reads of a secret; the rest is ignored.
const bcryptMaxSecret = 72

// The character sets --charset offers for --random.
var randomCharsets = map[string]string{
	"alphanumeric": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
	"alphabetic":   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
	"numeric":      "0123456789",
	// rfc3986 is the unreserved set: safe in a URL, a form body and a shell without quoting.
	"rfc3986": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~",
}

func hashCommand() *cobra.Command {
	var o hashOptions
	cmd := subcommand("hash", "Make a digest of a client secret or a user password",
		`Prints a digest for a client's secret (client { secret "<digest>" }) or a user's password.

The secret is read from a prompt (twice, without echo) when standard input is a terminal, and
otherwise from standard input (its first line); it is never taken from the command line, where
other users of the machine could read it. With --random a secret is generated instead and printed
with its digest: give the secret to the client and put the digest in the Caddyfile.

Algorithms and their defaults (Authelia's):
  argon2id       --variant id, --iterations 3, --memory 65536 (KiB), --parallelism 4,
                 --key-size 32, --salt-size 16
  pbkdf2-sha512  --variant sha512 (or sha256, sha384, sha224, sha1), --iterations 310000,
                 --salt-size 16
  scrypt         --iterations 16 (log2 N), --block-size 8, --parallelism 1, --key-size 32,
                 --salt-size 16
  bcrypt         --variant standard (or sha256), --cost 12

Examples:
  caddy oidc hash --random
  printf '%s' "$SECRET" | caddy oidc hash --algorithm pbkdf2-sha512`,
		func(cmd *cobra.Command, _ []string) error { return runHash(cmd, o) })
	hashFlags(cmd, &o)
	f := cmd.Flags()
	f.BoolVar(&o.random, "random", false, "generate a random secret and print it with its digest")
	f.IntVar(&o.length, "length", 72, "length of the --random secret")
	f.IntVar(&o.length, "random.length", 72, "same as --length (Authelia's name)")
	f.StringVar(&o.charset, "charset", "alphanumeric", "characters of the --random secret: alphanumeric, alphabetic, numeric or rfc3986")
	f.BoolVar(&o.json, jsonFlag, false, jsonFlagDoc)
	return cmd
}

// hashResult is what hash prints with --json; Secret only with --random.
type hashResult struct {
	Secret string `json:"secret,omitempty"`
	Digest string `json:"digest"`
}

func runHash(cmd *cobra.Command, o hashOptions) error {
	hasher, err := newHasher(o)
	if err != nil {
		return usageError{err}
	}
	var secret string
	if o.random {
		if secret, err = randomSecret(o.length, o.charset); err != nil {
			return err
		}
	} else if secret, err = readSecret(cmd.InOrStdin(), cmd.ErrOrStderr()); err != nil {
		return err
	}
	if strings.EqualFold(o.algorithm, "bcrypt") && len(secret) > bcryptMaxSecret {
		return usagef("bcrypt reads only the first %d bytes of a secret, so this %d-byte one would match any secret that starts the same; use a shorter secret or another algorithm", bcryptMaxSecret, len(secret))
	}
	digest, err := hasher.Hash(secret)
	if err != nil {
		return fmt.Errorf("hashing: %w", err)
	}
	encoded := digest.Encode()
	// check the digest the way the provider will read it
	if ok, err := verifyDigest(encoded, secret); err != nil || !ok {
		return fmt.Errorf("the digest does not verify (%v): please report this", err)
	}
	res := hashResult{Digest: encoded}
	if o.random {
		res.Secret = secret
	}
	out := cmd.OutOrStdout()
	if o.json {
		return printJSON(out, res)
	}
	if o.random {
		fmt.Fprintf(out, "Random secret: %s\n", secret)
	}
	fmt.Fprintf(out, "Digest: %s\n", encoded)
	return nil
}

// verifyDigest checks secret against an encoded digest with go-crypt's default decoder, the one
// the provider reads client secrets with.
func verifyDigest(encoded, secret string) (bool, error) {
	dec, err := crypt.NewDefaultDecoder()
	if err != nil {
		return false, err
	}
	d, err := dec.Decode(encoded)
	if err != nil {
		return false, err
	}
	return d.Match(secret), nil
}

// newHasher builds the go-crypt hasher the flags describe.
func newHasher(o hashOptions) (algorithm.Hash, error) {
	positive := func(name string, v int) error {
		if v < 0 {
			return fmt.Errorf("--%s must be positive, got %d", name, v)
		}
		return nil
	}
	for name, v := range map[string]int{"iterations": o.iterations, "memory": o.memory, "parallelism": o.parallelism,
		"key-size": o.keySize, "salt-size": o.saltSize, "block-size": o.blockSize, "cost": o.cost} {
		if err := positive(name, v); err != nil {
			return nil, err
		}
	}
	// a key or salt beyond these sizes protects nothing more and makes every check (and the
	// users file) larger and slower
	if o.keySize > maxKeySize {
		return nil, fmt.Errorf("--key-size %d: use at most %d bytes (32 is the default and plenty)", o.keySize, maxKeySize)
	}
	if o.saltSize != 0 && (o.saltSize < minSaltSize || o.saltSize > maxSaltSize) {
		return nil, fmt.Errorf("--salt-size %d: use %d to %d bytes (16 is the default)", o.saltSize, minSaltSize, maxSaltSize)
	}
	if o.memory > math.MaxUint32 {
		return nil, fmt.Errorf("--memory must be at most %d KiB, got %d", uint32(math.MaxUint32), o.memory)
	}
	or := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	variant := strings.ToLower(o.variant)
	switch alg := strings.ToLower(o.algorithm); alg {
	case "argon2id", "argon2":
		if alg == "argon2id" && variant != "" && variant != "id" {
			return nil, fmt.Errorf("--algorithm argon2id takes --variant id, not %q (use --algorithm argon2)", o.variant)
		}
		if variant == "" {
			variant = "id"
		}
		if variant != "id" && variant != "i" && variant != "d" {
			return nil, fmt.Errorf("argon2 --variant is id, i or d, not %q", o.variant)
		}
		h, err := argon2.New(argon2.WithVariantName("argon2"+variant), argon2.WithT(or(o.iterations, 3)),
			argon2.WithM(uint32(or(o.memory, 65536))), argon2.WithP(or(o.parallelism, 4)),
			argon2.WithK(or(o.keySize, 32)), argon2.WithS(or(o.saltSize, 16)))
		return h, wrapHasherErr("argon2", err)
	case "pbkdf2", "pbkdf2-sha512", "pbkdf2-sha384", "pbkdf2-sha256", "pbkdf2-sha224", "pbkdf2-sha1":
		if v, ok := strings.CutPrefix(alg, "pbkdf2-"); ok {
			if variant != "" && variant != v {
				return nil, fmt.Errorf("--algorithm %s contradicts --variant %s", alg, o.variant)
			}
			variant = v
		}
		if variant == "" {
			variant = "sha512"
		}
		opts := []pbkdf2.Opt{pbkdf2.WithVariantName(variant), pbkdf2.WithIterations(or(o.iterations, 310000)),
			pbkdf2.WithSaltLength(or(o.saltSize, 16))}
		if o.keySize != 0 {
			opts = append(opts, pbkdf2.WithKeyLength(o.keySize))
		}
		h, err := pbkdf2.New(opts...)
		return h, wrapHasherErr("pbkdf2", err)
	case "scrypt":
		h, err := scrypt.New(scrypt.WithLN(or(o.iterations, 16)), scrypt.WithR(or(o.blockSize, 8)),
			scrypt.WithP(or(o.parallelism, 1)), scrypt.WithK(or(o.keySize, 32)), scrypt.WithS(or(o.saltSize, 16)))
		return h, wrapHasherErr("scrypt", err)
	case "bcrypt":
		if variant == "" {
			variant = "standard"
		}
		h, err := bcrypt.New(bcrypt.WithVariantName(variant), bcrypt.WithIterations(or(o.cost, 12)))
		return h, wrapHasherErr("bcrypt", err)
	default:
		return nil, fmt.Errorf("unknown --algorithm %q (use argon2id, pbkdf2-sha512, scrypt or bcrypt)", o.algorithm)
	}
}

func wrapHasherErr(alg string, err error) error {
	if err != nil {
		return fmt.Errorf("%s parameters: %w", alg, err)
	}
	return nil
}

// randomSecret draws length characters uniformly from the named charset with crypto/rand.
func randomSecret(length int, charset string) (string, error) {
	chars, ok := randomCharsets[charset]
	if !ok {
		return "", usagef("unknown --charset %q (use alphanumeric, alphabetic, numeric or rfc3986)", charset)
	}
	if length < 16 || length > 1024 {
		return "", usagef("--length must be between 16 and 1024, got %d", length)
	}
	b := make([]byte, length)
	limit := big.NewInt(int64(len(chars)))
	for i := range b {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return "", fmt.Errorf("reading random bytes: %w", err)
		}
		b[i] = chars[n.Int64()]
	}
	return string(b), nil
}

// Bounds of the digest flags and of a secret read from standard input.
const (
	maxKeySize  = 128
	minSaltSize = 8
	maxSaltSize = 128
	maxSecret   = 4096
)

// readSecret prompts twice without echo when stdin is a terminal, and otherwise reads the first
// line of stdin (without its line ending). An empty secret is refused.
func readSecret(in io.Reader, prompt io.Writer) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Enter the secret: ")
		first, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("reading the secret: %w", err)
		}
		fmt.Fprint(prompt, "Confirm the secret: ")
		second, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("reading the secret: %w", err)
		}
		if string(first) != string(second) {
			return "", errors.New("the two entries differ")
		}
		if len(first) == 0 {
			return "", usagef("the secret is empty")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, maxSecret+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the secret from standard input: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case line == "":
		return "", usagef("no secret on standard input (pipe it in)")
	case len(line) > maxSecret:
		return "", usagef("the secret on standard input is longer than %d bytes", maxSecret)
	}
	return line, nil
}
