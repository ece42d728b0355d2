package oidcprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

func migrateCommand() *cobra.Command {
	var (
		from, toConfig, adapter string
		force, asJSON           bool
	)
	cmd := subcommand("migrate", "Copy a Badger store into the PostgreSQL store of a Caddyfile",
		`Copies every live record of a Badger store (the storage directory of one node) into the
PostgreSQL store that the oidc app of --to-config names (storage postgres { … }), so that moving
to more than one node logs nobody out: tokens, codes, sessions, consents, pairwise subjects,
second-factor devices, bans, the generated HMAC secret and signing key, and revocation cutoffs,
each with the time it had left to live. Placeholders ({env.*}, {file.*}) in the storage block are
resolved as the server resolves them.

Stop the Caddy that uses the Badger store first: the command refuses a store a running process
holds, so that nothing changes during the copy. Run it before the nodes first start on PostgreSQL.
It may be run again (it writes the same records again), but it refuses to write into a PostgreSQL
store that already holds records the Badger store does not (another HMAC secret or signing key, or
records a node wrote since): that is another provider's state, and mixing the two would keep both
providers' sessions alive under one secret. --force replaces that store's records with the Badger
store's.

Example:
  caddy oidc migrate --from /var/lib/caddy/.local/share/caddy/portcullis --to-config /etc/caddy/Caddyfile`,
		func(cmd *cobra.Command, _ []string) error {
			if from == "" || toConfig == "" {
				return usagef("--from (the Badger store's directory) and --to-config (the Caddyfile with storage postgres) are required")
			}
			cfg, err := migrationTarget(toConfig, adapter)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			logger := caddy.Log().Named("oidc.migrate")
			src, err := store.OpenReadOnly(from, logger)
			if errors.Is(err, store.ErrLocked) {
				return fmt.Errorf("the Badger store in %s is in use by a running Caddy: stop it first (caddy stop, or systemctl stop caddy), so that no record changes during the copy", from)
			}
			if err != nil {
				return err
			}
			defer src.Destruct()
			dst, err := postgres.Open(ctx, cfg, logger)
			if err != nil {
				return fmt.Errorf("opening the PostgreSQL store %s: %w", cfg.Identity(), err)
			}
			defer dst.Destruct()
			res, err := migrate(ctx, src, dst, force)
			if err != nil {
				return err
			}
			res.From, res.To = from, cfg.Identity()
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			res.print(cmd.OutOrStdout())
			return nil
		})
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the Badger store's directory (the storage directory; required)")
	f.StringVar(&toConfig, "to-config", "", "the config whose oidc app has storage postgres (required)")
	f.StringVarP(&adapter, "adapter", "a", "", "the config adapter (default: caddyfile for a file named Caddyfile*, else JSON)")
	f.BoolVar(&force, "force", false, "replace the records of a PostgreSQL store that holds another provider's")
	f.BoolVar(&asJSON, jsonFlag, false, jsonFlagDoc)
	return cmd
}

// migrationTarget reads the config file as caddy validate does (adapting a Caddyfile) and
// returns its oidc app's PostgreSQL storage, placeholders resolved and checked.
func migrationTarget(configFile, adapter string) (postgres.Config, error) {
	input, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return postgres.Config{}, fmt.Errorf("reading %s: %w", configFile, err)
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(caddy.RemoveMetaFields(input), &cfg); err != nil {
		return postgres.Config{}, fmt.Errorf("decoding %s: %w", configFile, err)
	}
	raw, ok := cfg.Apps[AppName]
	if !ok {
		return postgres.Config{}, fmt.Errorf("%s has no oidc app: add the global option oidc { … } with storage postgres { … }", configFile)
	}
	var app App
	if err := json.Unmarshal(raw, &app); err != nil {
		return postgres.Config{}, fmt.Errorf("%s: the oidc app: %w", configFile, err)
	}
	if app.Storage.Postgres == nil {
		return postgres.Config{}, fmt.Errorf("the oidc app of %s keeps its records in Badger, not PostgreSQL: add 'storage postgres { address … database … username … password … }' to its oidc block first (README: More than one node)", configFile)
	}
	pg, err := resolvePostgres(caddy.NewReplacer(), *app.Storage.Postgres, caddy.Log())
	if err != nil {
		return postgres.Config{}, err
	}
	if err := pg.Validate(); err != nil {
		return postgres.Config{}, fmt.Errorf("storage postgres: %w", err)
	}
	return pg, nil
}

// migration is what migrate did.
type migration struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Copied counts the records written, by kind (the first part of their key, e.g. "tok").
	Copied map[string]int `json:"copied"`
	// Expired counts the records that expired between the listing and their copy (not written).
	Expired int `json:"expired"`
	// Removed counts the records of the PostgreSQL store that --force deleted.
	Removed int `json:"removed"`
}

func (m *migration) print(w io.Writer) {
	total := 0
	for _, n := range m.Copied {
		total += n
	}
	fmt.Fprintf(w, "Copied %d record(s) from %s to %s\n", total, m.From, m.To)
	for _, kind := range slices.Sorted(maps.Keys(m.Copied)) {
		fmt.Fprintf(w, "  %-12s %d\n", kind, m.Copied[kind])
	}
	if m.Expired > 0 {
		fmt.Fprintf(w, "Left out %d record(s) that expired during the copy\n", m.Expired)
	}
	if m.Removed > 0 {
		fmt.Fprintf(w, "Removed %d record(s) the PostgreSQL store held and the Badger store did not (--force)\n", m.Removed)
	}
}

// migrateBatch is how many records one transaction writes.
const migrateBatch = 500

// metaPrefix holds the provider's generated secrets and keys.
var metaPrefix = []byte("meta/")

// migrate copies every live record of src into dst, each with the time it has left. It first
// compares the two: when dst holds a meta/ record (secret, key) that src lacks or holds with
// another value, or any record src does not hold, dst is another provider's store, and migrate
// refuses unless force, which deletes those records and overwrites the rest.
func migrate(ctx context.Context, src *store.Badger, dst store.KV, force bool) (*migration, error) {
	srcKeys := map[string]bool{}
	srcMeta := map[string][]byte{}
	if err := src.Each(ctx, func(k, v []byte, _ time.Time) error {
		srcKeys[string(k)] = true
		if bytes.HasPrefix(k, metaPrefix) {
			srcMeta[string(k)] = v
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading the Badger store: %w", err)
	}
	dstKeys, err := dst.Keys(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("listing the PostgreSQL store: %w", err)
	}
	var differs []string // the meta records that differ
	var extra [][]byte   // the records only dst holds
	for _, k := range dstKeys {
		if bytes.HasPrefix(k, metaPrefix) {
			v, err := dst.Get(ctx, k)
			if errors.Is(err, store.ErrNotFound) {
				continue // expired since the listing
			}
			if err != nil {
				return nil, fmt.Errorf("reading the PostgreSQL store: %w", err)
			}
			if sv, ok := srcMeta[string(k)]; !ok || !bytes.Equal(sv, v) {
				differs = append(differs, string(k))
			}
		}
		if !srcKeys[string(k)] {
			extra = append(extra, k)
		}
	}
	res := &migration{Copied: map[string]int{}}
	if len(differs) > 0 || len(extra) > 0 {
		if !force {
			return nil, refusal(differs, len(extra))
		}
		for chunk := range slices.Chunk(extra, migrateBatch) {
			if err := dst.Delete(ctx, chunk...); err != nil {
				return nil, fmt.Errorf("removing the PostgreSQL store's own records: %w", err)
			}
		}
		res.Removed = len(extra)
	}

	batch := make([]store.Entry, 0, migrateBatch)
	kinds := make([]string, 0, migrateBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := dst.Put(ctx, batch...); err != nil {
			return fmt.Errorf("writing to the PostgreSQL store: %w", err)
		}
		for _, k := range kinds {
			res.Copied[k]++
		}
		batch, kinds = batch[:0], kinds[:0]
		return nil
	}
	err = src.Each(ctx, func(k, v []byte, expiresAt time.Time) error {
		var ttl time.Duration
		if !expiresAt.IsZero() {
			if ttl = time.Until(expiresAt); ttl <= 0 {
				res.Expired++
				return nil
			}
		}
		batch = append(batch, store.Entry{Key: k, Value: v, TTL: ttl})
		kind, _, _ := strings.Cut(string(k), "/")
		kinds = append(kinds, kind)
		if len(batch) == migrateBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// refusal explains why migrate will not write into a store that holds another provider's state.
func refusal(differs []string, extra int) error {
	var what []string
	for _, k := range differs {
		switch string(k) {
		case string(keyHMACSecret):
			what = append(what, "another HMAC secret")
		case string(keySigningKey):
			what = append(what, "another signing key")
		default:
			what = append(what, "another "+k)
		}
	}
	if extra > 0 {
		what = append(what, fmt.Sprintf("%d record(s) the Badger store does not hold", extra))
	}
	return fmt.Errorf("the PostgreSQL store already holds %s: a node has run on it (or another provider uses it), and copying would mix two providers' records. "+
		"Copy into an empty database or schema before any node starts on it, or pass --force to replace its records with the Badger store's (its own sessions and tokens end)",
		strings.Join(what, ", "))
}
